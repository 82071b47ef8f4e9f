"""Benchmark: voice activity detectors on the lab's labelled speech, clean and in four noises.

For each detector (the tutorial's, as written and with its clock fixed; labkit's with a fixed
threshold and its best adaptive configuration; webrtcvad modes 0-3; Silero through onnxruntime)
and each condition (clean; white, pink, hum and babble noise at 20, 10, 5 and 0 dB SNR) it reports
the metrics of :mod:`labkit.vadeval`, plus the speed of labkit's streaming detector in 20 ms chunks.

Targets (issue #3), evaluated from the measurements in the JSON's ``targets``:

* labkit's best configuration has an F1 at least that of webrtcvad's best mode for that
  condition, at every condition of 5 dB SNR or more (clean included);
* its F1 is at least 0.95 on clean audio and at every 20 dB condition;
* its median end-of-speech latency is at most min_silence + one 20 ms chunk at every condition of
  5 dB SNR or more;
* the streaming detector runs at least 1000x faster than real time on one core.

Where Silero beats labkit's best, the JSON lists it under ``silero_ahead``: a finding, not a failure.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ..speechdata import CONDITIONS, SAMPLE_RATE, condition_audio, load_clean
from ..vad import VADConfig, VoiceActivityDetector
from ..vadeval import (BEST_CONFIG, DEFAULT_SEGMENTATION, all_detectors, false_alarms_per_minute, score)

BEST = "labkit (best: adaptive)"
CHUNK_MS = 20
QUICK_CONDITIONS = (("clean", None), ("white", 10), ("babble", 5))


def streaming_speed(config: VADConfig, seconds: float = 300.0, chunk_ms: int = CHUNK_MS) -> dict:
    """Real-time factor of the streaming detector: ``seconds`` of speech-like audio in ``chunk_ms`` chunks."""
    clean, _ = load_clean()
    reps = int(np.ceil(seconds * SAMPLE_RATE / clean.size))
    audio = np.tile(clean, reps)[: int(seconds * SAMPLE_RATE)]
    n = SAMPLE_RATE * chunk_ms // 1000
    chunks = [audio[i:i + n] for i in range(0, audio.size, n)]
    vad = VoiceActivityDetector(config)
    t0 = time.process_time()
    for chunk in chunks:
        vad.process(chunk)
    cpu = time.process_time() - t0
    return {"audio_s": seconds, "chunk_ms": chunk_ms, "cpu_s": round(cpu, 3),
            "x_real_time": round(seconds / cpu), "us_per_chunk": round(1e6 * cpu / len(chunks), 2)}


def run(quick: bool = False) -> dict:
    clean, utterances = load_clean()
    detectors, missing = all_detectors()
    conditions = QUICK_CONDITIONS if quick else CONDITIONS
    print(f"VAD benchmark: {len(detectors)} detectors x {len(conditions)} conditions "
          f"({clean.size / SAMPLE_RATE:.0f} s of speech each)", file=sys.stderr, flush=True)
    rows = []
    for noise, snr in conditions:
        mixture, noise_only = condition_audio(noise, snr, clean, utterances)
        label = noise if snr is None else f"{noise} {snr} dB"
        for det in detectors:
            detection = det.run(mixture)
            row = {"detector": det.name, "noise": noise, "snr_db": snr, **score(detection, utterances, mixture.size),
                   "x_real_time": round(mixture.size / SAMPLE_RATE / max(detection.cpu_s, 1e-9))}
            row["false_alarms_per_min"] = (false_alarms_per_minute(det.run(noise_only), noise_only.size)
                                           if noise_only is not None else None)
            rows.append(row)
        best = next(r for r in rows if r["detector"] == BEST and r["noise"] == noise and r["snr_db"] == snr)
        print(f"  {label:14} labkit best F1 {best['f1']:.3f}", file=sys.stderr, flush=True)
    speed = streaming_speed(BEST_CONFIG, seconds=60 if quick else 300)
    speed_fixed = streaming_speed(VADConfig(**DEFAULT_SEGMENTATION), seconds=60 if quick else 300)
    return {
        "benchmark": "vad",
        "description": __doc__.strip().splitlines()[0],
        "setup": {"sample_rate": SAMPLE_RATE, "audio_s_per_condition": round(clean.size / SAMPLE_RATE, 2),
                  "utterances": len(utterances), "frame_metrics_ms": 10, "segmentation": DEFAULT_SEGMENTATION,
                  "best_config": {k: v for k, v in BEST_CONFIG.__dict__.items()}, "cpus": os.cpu_count(),
                  "conditions": [{"noise": n, "snr_db": s} for n, s in conditions]},
        "missing_peers": missing,
        "results": rows,
        "speed": {"best_config": speed, "fixed_threshold": speed_fixed},
        "targets": _targets(rows, speed),
        "silero_ahead": _silero_ahead(rows),
    }


def _targets(rows: list[dict], speed: dict) -> dict:
    best = {(r["noise"], r["snr_db"]): r for r in rows if r["detector"] == BEST}
    webrtc: dict = {}
    for r in rows:
        if r["detector"].startswith("webrtcvad"):
            key = (r["noise"], r["snr_db"])
            if key not in webrtc or r["f1"] > webrtc[key]["f1"]:
                webrtc[key] = r
    vs_webrtc = [{"noise": n, "snr_db": s, "labkit_f1": best[(n, s)]["f1"], "webrtc_best_f1": w["f1"],
                  "webrtc_best_mode": w["detector"], "margin": round(best[(n, s)]["f1"] - w["f1"], 4),
                  "met": best[(n, s)]["f1"] >= w["f1"]}
                 for (n, s), w in webrtc.items() if s is None or s >= 5]
    # the same against the one webrtcvad mode with the best mean F1 over those conditions
    modes = {r["detector"] for r in rows if r["detector"].startswith("webrtcvad")}
    keys = [(x["noise"], x["snr_db"]) for x in vs_webrtc]
    mean_f1 = {m: np.mean([r["f1"] for r in rows if r["detector"] == m and (r["noise"], r["snr_db"]) in keys])
               for m in modes}
    overall = max(mean_f1, key=mean_f1.get) if mean_f1 else None
    vs_overall = [{"noise": n, "snr_db": s, "labkit_f1": best[(n, s)]["f1"], "webrtc_f1": r["f1"],
                   "met": best[(n, s)]["f1"] >= r["f1"]}
                  for r in rows if r["detector"] == overall for (n, s) in [(r["noise"], r["snr_db"])] if (n, s) in keys]
    high = [{"noise": n, "snr_db": s, "f1": r["f1"], "met": r["f1"] >= 0.95}
            for (n, s), r in best.items() if s is None or s == 20]
    bound = DEFAULT_SEGMENTATION["min_silence_ms"] + CHUNK_MS
    latency = [{"noise": n, "snr_db": s, "median_ms": r["end_latency_ms_median"], "max_ms": r["end_latency_ms_max"],
                "met": r["end_latency_ms_median"] is not None and r["end_latency_ms_median"] <= bound}
               for (n, s), r in best.items()]
    latency_scope = [x for x in latency if x["snr_db"] is None or x["snr_db"] >= 5]
    return {
        "f1_vs_webrtc_best_mode_per_condition_at_snr_5_or_more": {
            "met": all(x["met"] for x in vs_webrtc) if vs_webrtc else None,
            "met_in": f"{sum(x['met'] for x in vs_webrtc)} of {len(vs_webrtc)}", "conditions": vs_webrtc},
        "f1_vs_webrtc_best_overall_mode_at_snr_5_or_more": {
            "mode": overall, "met": all(x["met"] for x in vs_overall) if vs_overall else None,
            "met_in": f"{sum(x['met'] for x in vs_overall)} of {len(vs_overall)}", "conditions": vs_overall},
        "f1_at_least_0.95_clean_and_20db": {"met": all(x["met"] for x in high), "conditions": high},
        "end_latency_median_within_min_silence_plus_chunk_at_snr_5_or_more": {
            "bound_ms": bound, "met": all(x["met"] for x in latency_scope),
            "note": "at 0 dB the noise is as loud as the talker; with babble, utterances merge and their ends "
                    "cannot be seen (those rows are listed too, outside the target)",
            "conditions": latency},
        "speed_at_least_1000x_real_time": {"x_real_time": speed["x_real_time"], "met": speed["x_real_time"] >= 1000},
    }


def _silero_ahead(rows: list[dict]) -> list[dict]:
    best = {(r["noise"], r["snr_db"]): r["f1"] for r in rows if r["detector"] == BEST}
    return [{"noise": r["noise"], "snr_db": r["snr_db"], "silero_f1": r["f1"], "labkit_f1": best[(r["noise"], r["snr_db"])],
             "gap": round(r["f1"] - best[(r["noise"], r["snr_db"])], 4)}
            for r in rows if r["detector"].startswith("silero") and r["f1"] > best[(r["noise"], r["snr_db"])]]
