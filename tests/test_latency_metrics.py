"""Latency metrics on synthetic streams with known answers."""

import pytest

from labkit.latency import summarize
from labkit.latency.metrics import InvalidStream, goodput, request_metrics
from labkit.tutorial import tutorial_tokens_per_second


def test_known_stream():
    # first content at 0.5 s, then one token every 0.1 s: 11 tokens, last at 1.5 s
    arrivals = [0.5 + 0.1 * k for k in range(11)]
    m = request_metrics(arrivals)
    assert m.n_tokens == 11 and m.ttft_s == 0.5 and m.e2e_s == pytest.approx(1.5)
    assert len(m.itl_s) == 10 and all(g == pytest.approx(0.1) for g in m.itl_s)
    assert m.tpot_s == pytest.approx(0.1) and m.decode_tokens_per_s == pytest.approx(10.0)
    assert m.tutorial_tokens_per_s == pytest.approx(11 / 1.5)          # ~7.3, not the 10/s decode rate
    assert tutorial_tokens_per_second(["x"] * 11, 0.0, 1.5) == pytest.approx(m.tutorial_tokens_per_s)


def test_empty_role_chunk_is_not_the_first_token():
    m = request_metrics([0.2, 0.6, 0.7], texts=["", "Hel", "lo"])
    assert m.ttft_s == 0.6 and m.n_tokens == 2 and m.tutorial_tokens_per_s == pytest.approx(3 / 0.7)


def test_edge_cases():
    one = request_metrics([0.3])
    assert (one.n_tokens, one.ttft_s, one.e2e_s, one.itl_s, one.tpot_s, one.decode_tokens_per_s) == (1, 0.3, 0.3, (), None, None)
    none = request_metrics([])
    assert none.n_tokens == 0 and none.ttft_s is None and none.tpot_s is None
    with pytest.raises(InvalidStream):
        request_metrics([0.5, 0.4])
    with pytest.raises(InvalidStream):
        request_metrics([-0.1, 0.2])
    with pytest.raises(InvalidStream):
        request_metrics([0.1, 0.2], texts=["a"])


def test_per_gap_itl_and_mean_tpot_differ_in_spread_not_mean():
    arrivals = [0.1, 0.11, 0.12, 0.5, 0.51]            # a stall in the middle
    m = request_metrics(arrivals)
    assert max(m.itl_s) == pytest.approx(0.38) and m.tpot_s == pytest.approx(0.41 / 4)
    assert sum(m.itl_s) / len(m.itl_s) == pytest.approx(m.tpot_s)


def test_goodput():
    fast = request_metrics([0.1, 0.12, 0.14])
    slow_start = request_metrics([0.9, 0.92])
    slow_flow = request_metrics([0.1, 0.5, 0.9])
    assert goodput([fast, slow_start, slow_flow], ttft_slo_s=0.5, tpot_slo_s=0.05) == pytest.approx(1 / 3)
    assert goodput([request_metrics([])], ttft_slo_s=1, tpot_slo_s=1) == 0.0
    assert goodput([], ttft_slo_s=1, tpot_slo_s=1) == 0.0


def test_summaries():
    s = summarize([1, 2, 3, 4, 100], scale=1000)
    assert s["count"] == 5 and s["p50"] == 3000 and s["max"] == 100_000
    assert summarize([])["count"] == 0 and summarize([None, 2.0])["count"] == 1
