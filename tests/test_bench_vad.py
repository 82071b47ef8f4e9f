"""The VAD benchmark runs and reports every detector, metric and target (values are not asserted:
targets are read from its JSON, never enforced by timed tests)."""

import json
import subprocess
import sys

from labkit.bench.vad import SERVER_DATED
from labkit.vadeval import BEST_CONFIG, LabkitDetector, TutorialDetector, score
from labkit.speechdata import condition_audio, load_clean


def test_vad_benchmark_reports_the_held_out_comparison(tmp_path):
    """The reduced grid (``--quick``) of the held-out benchmark; the full grid is ``bench vad``."""
    out = tmp_path / "vad.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "vad", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    detectors = {r["detector"] for r in data["results"]}
    assert {"labkit (default: sub-band SNR)", "labkit (RMS, fixed threshold)", "labkit (RMS, adaptive floor)",
            "webrtcvad mode 0", "webrtcvad mode 3", "silero (onnx)"} <= detectors | set(data["missing_peers"])
    for row in data["results"]:
        assert {"precision", "recall", "f1", "found", "onset_error_ms_median", "offset_error_ms_median",
                "end_latency_ms_median", "false_alarms_per_min", "x_real_time"} <= set(row)
        assert (row["false_alarms_per_min"] is None) == (row["noise"] == "clean")
        assert row["utterances"] == 24                                   # six held-out recordings
    assert {(r["noise"], r["snr_db"]) for r in data["results"]} == {("clean", None), ("pink", 10), ("babble", 5)}
    assert data["setup"]["set"]["name"] == "heldout"
    assert set(data["targets"]) == {"f1_vs_webrtc_best_mode_per_condition_at_snr_5_or_more",
                                    "mean_f1_within_0.05_of_silero_at_snr_5_or_more", "speed_at_least_1000x_real_time"}
    assert all(isinstance(t["met"], bool) for t in data["targets"].values())
    per_condition = {c["condition"]: c for c in data["targets_per_condition"]}
    assert set(per_condition) == {"clean", "pink 10 dB", "babble 5 dB"}           # every condition >= 5 dB
    assert all(c["met"] == (c["labkit_f1"] >= c["webrtc_best_f1"]) for c in per_condition.values())
    print(json.dumps({k: (v["met"], v.get("met_in") or v.get("value")) for k, v in data["targets"].items()}))
    fixed = next(r for r in data["results"] if r["detector"] == "labkit (RMS, fixed threshold)" and r["noise"] == "pink")
    default = next(r for r in data["results"] if r["detector"] == "labkit (default: sub-band SNR)" and r["noise"] == "pink")
    assert default["f1"] > fixed["f1"] + 0.1         # the lesson's point, measured on unseen audio
    turns = {(r["noise"], r["snr_db"]): r for r in data["realtime_turns"]}
    assert set(turns) == {(n, s) for n in ("pink", "babble") for s in (20, 10, 5)}
    for row in turns.values():                       # --quick: two draws of each noise
        assert row["draws"] == 2 and row["utterances_draw_0"] == 24 and row["utterances_all_draws"] == 48
        assert row["exact_draw_0"] <= 24 and row["exact_all_draws"] <= 48
    assert turns[("pink", 10)]["exact_draw_0"] == 24         # what tests/test_realtime_vad_noise.py asserts
    peers = {(r["detector"], r["noise"]): r for r in data["peer_turns"]}
    names = {d for d, _ in peers}
    assert SERVER_DATED in names and not any(d.startswith("labkit (RMS") for d in names)
    assert {"webrtcvad mode 3", "silero (onnx)"} <= names | set(data["missing_peers"])
    assert set(peers) == {(d, n) for d in names for n in ("pink", "babble")}     # every detector, both noises
    for row in peers.values():
        assert row["snr_db"] == 10 and row["draws"] == 2
        assert row["utterances_draw_0"] == 24 and row["utterances_all_draws"] == 48
        assert row["exact_draw_0"] + sum(row["faults_draw_0"].values()) == 24
        assert row["exact_draw_0"] <= row["exact_all_draws"] <= 48
    assert peers[(SERVER_DATED, "pink")]["exact_draw_0"] == 24   # offline at 16 kHz too
    if "silero (onnx)" in names:                                 # babble is voices: Silero runs turns together
        assert peers[("silero (onnx)", "babble")]["faults_draw_0"]["merged"] >= 12


def test_metrics_separate_a_good_detector_from_a_broken_one():
    clean, utterances = load_clean()
    noisy, _ = condition_audio("white", 10, clean, utterances)
    good = score(LabkitDetector(BEST_CONFIG).run(noisy), utterances, noisy.size)
    broken = score(TutorialDetector(False).run(noisy), utterances, noisy.size)
    assert good["f1"] > 0.9 and good["found"] == len(utterances) and good["ends_never_reported"] == 0
    assert broken["ends_never_reported"] >= 1 and broken["precision"] < 0.8
    assert 400 <= good["end_latency_ms_median"] <= 520


def test_eagerness_trades_turn_end_latency_for_cut_offs():
    from labkit.bench.vad import eagerness

    rows = {r["eagerness"]: r for r in eagerness("pink", 10)}
    assert rows["high"]["turn_end_latency_ms_median"] < rows["medium"]["turn_end_latency_ms_median"] \
        < rows["low"]["turn_end_latency_ms_median"]
    assert rows["high"]["utterances_cut_off"] > rows["low"]["utterances_cut_off"] == 0
    assert rows["low"]["utterances_merged_with_the_next"] > rows["medium"]["utterances_merged_with_the_next"]
