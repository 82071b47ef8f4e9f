"""The VAD benchmark runs and reports every detector, metric and target (values are not asserted:
targets are read from its JSON, never enforced by timed tests)."""

import json
import subprocess
import sys

from labkit.vadeval import BEST_CONFIG, LabkitDetector, TutorialDetector, score
from labkit.speechdata import condition_audio, load_clean


def test_vad_benchmark_writes_the_full_comparison(tmp_path):
    out = tmp_path / "vad.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "vad", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    detectors = {r["detector"] for r in data["results"]}
    assert {"tutorial (as written)", "tutorial (clock fixed)", "labkit (fixed threshold)", "labkit (best: adaptive)",
            "webrtcvad mode 0", "webrtcvad mode 3", "silero (onnx)"} <= detectors | set(data["missing_peers"])
    for row in data["results"]:
        assert {"precision", "recall", "f1", "found", "onset_error_ms_median", "end_latency_ms_median",
                "false_alarms_per_min", "x_real_time"} <= set(row)
        assert (row["false_alarms_per_min"] is None) == (row["noise"] == "clean")
    assert len({(r["noise"], r["snr_db"]) for r in data["results"]}) == 17          # clean + 4 noises x 4 SNRs
    assert set(data["targets"]) >= {"f1_at_least_0.95_clean_and_20db", "speed_at_least_1000x_real_time"}
    assert all(isinstance(t["met"], bool) for t in data["targets"].values())
    print(json.dumps({k: (v["met"], v.get("met_in")) for k, v in data["targets"].items()}))
    assert data["speed"]["best_config"]["x_real_time"] > 0


def test_metrics_separate_a_good_detector_from_a_broken_one():
    clean, utterances = load_clean()
    noisy, _ = condition_audio("white", 10, clean, utterances)
    good = score(LabkitDetector(BEST_CONFIG).run(noisy), utterances, noisy.size)
    broken = score(TutorialDetector(False).run(noisy), utterances, noisy.size)
    assert good["f1"] > 0.9 and good["found"] == len(utterances) and good["ends_never_reported"] == 0
    assert broken["ends_never_reported"] >= 1 and broken["precision"] < 0.8
    assert 400 <= good["end_latency_ms_median"] <= 520
