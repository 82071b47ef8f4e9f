"""Benchmark-style rerun of the tuning-set search behind labkit's default VAD (several minutes).

``python -m labkit bench vad-tune --json tune.json`` runs :func:`labkit.vadtune.tune` from the
documented starting point, then :func:`labkit.vadtune.tune_end_correction`, then
:func:`labkit.vadtune.tune_resume` (on the Realtime replica, eight noise draws), then
:func:`labkit.vadtune.fit_tail_model` (the weak-tail model and its threshold, 48 draws), on the tuning
set only, and reports what it chooses next to the shipped default and model.
"""

from __future__ import annotations

from dataclasses import replace

from ..vad import VADConfig
from ..vadeval import DEFAULT_SEGMENTATION
from ..vadtail import TAIL_MODEL
from ..vadtune import TAIL_DRAWS, fit_tail_model, tune, tune_end_correction, tune_resume

#: Where the search starts: where an earlier run of the same search (on the same tuning set) ended,
#: with the envelope shortened to 100 ms (a longer one delays every turn's end).
START = dict(start_snr_db=9.0, stop_snr_db=6.0, bands=8, envelope_ms=100, floor_window_ms=5000, floor_bias_db=0.0,
             transient_ms=40, transient_hz=1200.0,
             floor_statistic="mean", min_level_dbfs=-75.0)


def run(quick: bool = False) -> dict:
    start = VADConfig(**START, **DEFAULT_SEGMENTATION)
    config, mean_f1 = tune(start, max_passes=1 if quick else 3)
    config, share = tune_end_correction(config)
    resume, table = tune_resume(draws=2 if quick else 8)
    model, weak_tail_p, tail_report = fit_tail_model(draws=4 if quick else TAIL_DRAWS)
    config = replace(config, **resume, weak_tail_p=weak_tail_p)
    default = VADConfig(**DEFAULT_SEGMENTATION)
    differs = {k: {"chosen": v, "default": default.__dict__[k]} for k, v in config.__dict__.items()
               if default.__dict__[k] != v}
    return {"benchmark": "vad-tune", "description": __doc__.strip().splitlines()[0],
            "chosen": dict(config.__dict__), "mean_f1_on_tuning_set": round(mean_f1, 4),
            "ends_within_150_ms_on_tuning_set": round(share, 4), "differs_from_the_shipped_default": differs,
            "resume_rule_on_the_tuning_replica": [{"changes": c, "exact": e, "utterances": u, "mean_end_error_ms": m}
                                                  for c, e, u, m in table],
            "weak_tail_model": {"fitted": model.__dict__, "shipped": TAIL_MODEL.__dict__, **tail_report},
            "targets": {"the shipped default is what the search chooses": {"met": not differs, "value": len(differs)},
                        "the shipped weak-tail model is what the fit gives": {"met": model == TAIL_MODEL,
                                                                              "value": model == TAIL_MODEL}}}
