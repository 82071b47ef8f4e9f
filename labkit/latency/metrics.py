"""Per-request latency metrics from a token stream with arrival times. Pure: numbers in, numbers out.

Definitions (the ones serving benchmarks such as vLLM's and NVIDIA's GenAI-Perf use):

* **TTFT**, time to first token: from sending the request to the first chunk *with content*;
* **E2E**, end-to-end latency: from sending the request to the last token;
* **ITL**, inter-token latency, *per gap*: every gap between consecutive tokens (a list);
* **TPOT**, time per output token: ``(E2E - TTFT) / (n - 1)``, the mean of the gaps; some tools call
  this number "ITL" too, which is why both are reported, with names;
* **decode rate**: ``(n - 1) / (E2E - TTFT)`` tokens per second once the stream has started.

The source tutorial's ``tokens_per_second`` divides the number of *chunks* by the *total* time,
TTFT included: it mixes the wait with the flow and is neither number above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["RequestMetrics", "request_metrics", "goodput", "InvalidStream"]


class InvalidStream(ValueError):
    """Arrival times that cannot describe a stream (negative, or going backwards)."""


@dataclass(frozen=True)
class RequestMetrics:
    n_tokens: int
    ttft_s: float | None
    e2e_s: float | None
    itl_s: tuple[float, ...]                 # every gap, in order
    tpot_s: float | None                     # mean gap: None with fewer than two tokens
    decode_tokens_per_s: float | None
    tutorial_tokens_per_s: float | None      # chunks / total time, as the tutorial computes it

    def as_dict(self) -> dict:
        d = asdict(self)
        d["itl_s"] = list(self.itl_s)
        return d


def request_metrics(arrivals: Sequence[float], *, texts: Sequence[str] | None = None,
                    chunks: int | None = None) -> RequestMetrics:
    """Metrics of one request from the arrival times (seconds since it was sent) of its tokens.

    ``texts`` (same length) lets empty chunks, like the role-only first chunk, be left out of TTFT;
    ``chunks`` is how many chunks arrived in all, for the tutorial's figure.
    """
    times = list(arrivals)
    if texts is not None:
        if len(texts) != len(times):
            raise InvalidStream("texts and arrivals differ in length")
        content = [t for t, text in zip(times, texts) if text]
    else:
        content = times
    if any(t < 0 for t in times):
        raise InvalidStream("an arrival time is negative: times are seconds since the request was sent")
    if any(b < a for a, b in zip(times, times[1:])):
        raise InvalidStream("arrival times go backwards: tokens must be in the order they arrived")
    n = len(content)
    if n == 0:
        return RequestMetrics(0, None, None, (), None, None, None)
    ttft, e2e = content[0], content[-1]
    gaps = tuple(b - a for a, b in zip(content, content[1:]))
    tpot = (e2e - ttft) / (n - 1) if n > 1 else None
    decode = (n - 1) / (e2e - ttft) if n > 1 and e2e > ttft else None
    total_chunks = chunks if chunks is not None else len(times)
    tutorial = total_chunks / e2e if e2e > 0 else None
    return RequestMetrics(n, ttft, e2e, gaps, tpot, decode, tutorial)


def goodput(results: Sequence[RequestMetrics], *, ttft_slo_s: float, tpot_slo_s: float) -> float:
    """Share of requests that met both service-level objectives (a request with one token has no TPOT
    and is judged on TTFT alone; a request with none fails)."""
    if not results:
        return 0.0
    ok = sum(1 for r in results if r.ttft_s is not None and r.ttft_s <= ttft_slo_s
             and (r.tpot_s is None or r.tpot_s <= tpot_slo_s))
    return ok / len(results)
