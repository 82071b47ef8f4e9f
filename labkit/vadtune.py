"""How labkit's default detector was tuned: a coordinate search on the *tuning* set only.

``python -m labkit bench vad --tune`` reruns it and prints the chosen parameters; the held-out set
(:mod:`labkit.speechsets`) is never read here. The objective is the mean frame F1 over the tuning
conditions at 5 dB SNR or more (clean included); each step tries every value of one parameter with
the others fixed, keeps the best if it gains at least :data:`MIN_GAIN` (smaller differences are
a few frames of this set, and a longer envelope or window costs turn-ending latency), and the
search stops when a full pass changes nothing. Then :func:`tune_end_correction` dates the ends.

:func:`realtime_turns` is the tuning-set replica of the Realtime noisy-room test
(``tests/test_realtime_vad_noise.py``): the same sessions' audio at 24 kHz, through the same pure
session machine the server runs, scored by :func:`exact_turns` as the test scores them. A change to
how turns are segmented is chosen on it (and on :func:`objective`'s frame F1), never on the test's
held-out audio. With ``draws``, each noise is also drawn afresh (other seeds): one draw is 240
utterances, too few to tell rules apart that differ by a turn or two (:func:`tune_resume` uses eight).
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, replace

import numpy as np

from . import speechsets
from .audio.pcm import resample
from .realtime import RealtimeSession
from .speechdata import SAMPLE_RATE as SPEECH_RATE
from .vad import SpeechEnd, VADConfig, VoiceActivityDetector
from .vadtail import MEASURES, TailModel, WeakTail
from .vadeval import DEFAULT_SEGMENTATION, LabkitDetector, detection_counts, pooled

__all__ = ["SEARCH_SPACE", "MIN_GAIN", "tune", "tune_end_correction", "objective", "REPLICA_CONDITIONS",
           "TURN_TOLERANCE_MS", "REPLICA_PREFIX_MS", "REPLICA_SILENCE_MS", "REPLICA_APPEND_MS", "REALTIME_RATE",
           "SESSION_UPDATE", "session_turns", "FATES", "utterance_fates", "exact_turns", "turn_faults", "detector_turns",
           "realtime_turns", "replica_audio", "replica_results", "ReplicaResult",
           "RESUME_GRID", "RESUME_DRAWS", "RESUME_TIE_TURNS", "tune_resume",
           "TAIL_DRAWS", "TAIL_THRESHOLDS", "TAIL_L2", "TailExample", "tail_examples", "fit_logistic", "fit_tail_model"]

#: A parameter changes only for at least this much mean F1.
MIN_GAIN = 0.001

#: The values tried for each parameter of the spectral detector.
SEARCH_SPACE = {
    "start_snr_db": (6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0),
    "stop_snr_db": (3.0, 4.0, 5.0, 6.0, 7.0, 8.0),
    "floor_statistic": ("mean", "min"),
    "floor_bias_db": (-1.0, 0.0, 1.0, 3.0),
    "envelope_ms": (60, 100, 140, 200),
    "floor_window_ms": (2000, 3000, 4000, 5000),
    "bands": (8, 12, 16),
    "band_hi_hz": (4000.0, 5000.0, 6000.0, 7000.0),
    "floor_subwindows": (5, 10),
    "floor_span": (1, 2),
    "floor_steady_ratio": (0.0, 1.3, 1.6, 2.0),
    "floor_steady_drop_db": (4.0, 8.0, 14.0),
    "min_level_dbfs": (-90.0, -75.0),
    "transient_ms": (20, 40, 60, 80),
    "transient_hz": (0.0, 600.0, 1200.0, 1800.0),
}


def _conditions(min_snr: float = 5):
    return [c for c in speechsets.CONDITIONS if c[1] is None or c[1] >= min_snr]


def objective(config: VADConfig, runs: dict) -> tuple[float, dict]:
    """Mean F1 over the conditions in ``runs`` (``{condition: speechsets.condition(...)}``)."""
    detector = LabkitDetector(config, chunk_ms=60_000)
    f1 = {}
    for cond, recordings in runs.items():
        parts = [detection_counts(detector.run(mix), utts, mix.size) for mix, _noise, utts in recordings]
        f1[cond] = pooled(parts)["f1"]
    return float(np.mean(list(f1.values()))), f1


def tune(start: VADConfig | None = None, *, max_passes: int = 3, log=sys.stderr) -> tuple[VADConfig, float]:
    tuning = speechsets.load("tuning")
    runs = {c: speechsets.condition(tuning, *c) for c in _conditions()}
    best = start or VADConfig(**DEFAULT_SEGMENTATION)
    best_score, _ = objective(best, runs)
    print(f"start: mean F1 {best_score:.4f}", file=log, flush=True)
    for _pass in range(max_passes):
        changed = False
        for name, values in SEARCH_SPACE.items():
            for value in values:
                if getattr(best, name) == value:
                    continue
                try:
                    candidate = replace(best, **{name: value})
                except ValueError:                  # e.g. stop above start
                    continue
                score, _ = objective(candidate, runs)
                if score >= best_score + MIN_GAIN:
                    best, best_score, changed = candidate, score, True
                    print(f"  {name}={value}: mean F1 {score:.4f}", file=log, flush=True)
        if not changed:
            break
    return best, best_score


#: The end-date corrections tried once the other parameters are chosen (ms).
END_CORRECTIONS = (0, 40, 80, 120, 160, 180)


def tune_end_correction(config: VADConfig, *, tolerance_ms: float = 150.0, log=sys.stderr) -> tuple[VADConfig, float]:
    """The correction that dates utterance ends best on the tuning set: the largest share of ends
    within ``tolerance_ms`` of the truth, over the tuning conditions at 5 dB SNR or more (what a
    turn-taking server needs: each turn's end in the right place, not a good average)."""
    tuning = speechsets.load("tuning")
    runs = {c: speechsets.condition(tuning, *c) for c in _conditions()}
    best = None
    for ms in END_CORRECTIONS:
        candidate = replace(config, end_correction_ms=ms)
        detector = LabkitDetector(candidate, chunk_ms=60_000)
        offsets = [x for recordings in runs.values() for mix, _noise, utts in recordings
                   for x in detection_counts(detector.run(mix), utts, mix.size)["offsets"]]
        share = float(np.mean(np.abs(offsets) <= tolerance_ms))
        print(f"  end_correction_ms={ms}: {share:.3f} of ends within {tolerance_ms:g} ms", file=log, flush=True)
        if best is None or share > best[1]:
            best = (candidate, share)
    return best


# -- the Realtime noisy-room test, replicated on the tuning set -------------------------------------

#: The conditions of the replica: clean, the test's noises (pink, babble) at 20, 10 and 5 dB, and the
#: other stationary noises (white, hum, fan) at the test's 10 dB: 240 utterances.
REPLICA_CONDITIONS = (("clean", None), ("pink", 20), ("pink", 10), ("pink", 5), ("babble", 20), ("babble", 10),
                      ("babble", 5), ("white", 10), ("hum", 10), ("fan", 10))
#: How far a turn's start and end may be from the labels (after undoing prefix padding and silence).
TURN_TOLERANCE_MS = 150
#: The test's server VAD settings and its append size.
REPLICA_PREFIX_MS, REPLICA_SILENCE_MS, REPLICA_APPEND_MS = 300, 500, 100
REALTIME_RATE = 24_000
#: the client's ``session.update`` of the replica and of the test it replicates: server VAD, no replies
SESSION_UPDATE = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
    "turn_detection": {"type": "server_vad", "create_response": False, "prefix_padding_ms": REPLICA_PREFIX_MS,
                       "silence_duration_ms": REPLICA_SILENCE_MS}}}}}


def session_turns(audio_24k: np.ndarray, vad_changes: dict | None = None) -> list[tuple[float, float]]:
    """The turns (s) server VAD reports for one recording (int16, 24 kHz), as the test reads them:
    ``speech_started``'s ``audio_start_ms`` plus the prefix padding, ``speech_stopped``'s
    ``audio_end_ms`` minus the silence wait. The pure :class:`~labkit.realtime.RealtimeSession` the
    server runs is driven with the test's client events; ``vad_changes`` (VADConfig fields) retunes
    its detector after the ``session.update``, to try a candidate rule before it becomes a default."""
    session = RealtimeSession("gpt-realtime")
    session.receive(json.dumps(SESSION_UPDATE))
    if vad_changes:
        session.input.restart_vad(replace(session.input.vad.config, **vad_changes))
    n = REALTIME_RATE * REPLICA_APPEND_MS // 1000
    turns, started = [], None
    for i in range(0, audio_24k.size, n):
        chunk = base64.b64encode(audio_24k[i:i + n].tobytes()).decode()
        events, _orders = session.receive(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        for event in events:
            if event["type"] == "input_audio_buffer.speech_started":
                started = event["audio_start_ms"]
            elif event["type"] == "input_audio_buffer.speech_stopped":
                turns.append(((started + REPLICA_PREFIX_MS) / 1000, (event["audio_end_ms"] - REPLICA_SILENCE_MS) / 1000))
                started = None
    if started is not None:                     # never ended: a turn to the end of the audio (never exact)
        turns.append(((started + REPLICA_PREFIX_MS) / 1000, audio_24k.size / REALTIME_RATE))
    return turns


#: how a labelled utterance fares against the turns reported (:func:`utterance_fates`)
FATES = ("exact", "missed", "split", "merged", "boundary")


def _overlapping(turns, start: float, end: float) -> list:
    return [(s, e) for s, e in turns if s < end and e > start]


def utterance_fates(turns, labels, tolerance_ms: float = TURN_TOLERANCE_MS) -> list[str]:
    """Per labelled utterance ``(start_s, end_s)``, one of :data:`FATES`: ``exact`` (exactly one turn
    overlaps it, that turn overlaps no other utterance, and both its boundaries are within
    ``tolerance_ms`` of the labels); else ``missed`` (no turn overlaps it), ``split`` (several do),
    ``merged`` (its one turn overlaps another utterance too) or ``boundary`` (a boundary is off)."""
    fates = []
    for true_start, true_end in labels:
        hits = _overlapping(turns, true_start, true_end)
        if not hits:
            fates.append("missed")
        elif len(hits) > 1:
            fates.append("split")
        elif len(_overlapping(labels, *hits[0])) > 1:
            fates.append("merged")
        elif max(abs(hits[0][0] - true_start), abs(hits[0][1] - true_end)) * 1000 <= tolerance_ms:
            fates.append("exact")
        else:
            fates.append("boundary")
    return fates


def exact_turns(turns, labels, tolerance_ms: float = TURN_TOLERANCE_MS) -> list[bool]:
    """Per labelled utterance: whether it became an exact turn (:func:`utterance_fates`)."""
    return [fate == "exact" for fate in utterance_fates(turns, labels, tolerance_ms)]


def turn_faults(turns, labels, tolerance_ms: float = TURN_TOLERANCE_MS) -> dict:
    """How many labelled utterances meet each of :data:`FATES` (the counts add up to ``len(labels)``)."""
    fates = utterance_fates(turns, labels, tolerance_ms)
    return {fate: fates.count(fate) for fate in FATES}


def detector_turns(detector, recordings) -> dict:
    """:func:`turn_faults` of an offline detector (``detector.run(samples).segments``, as
    :mod:`labkit.vadeval`'s detectors give them) summed over ``recordings`` (``[(samples, labels)]``),
    with the turns it reported (``"turns"``) and the utterances (``"utterances"``)."""
    totals = dict.fromkeys((*FATES, "turns", "utterances"), 0)
    for samples, labels in recordings:
        turns = detector.run(samples).segments
        for fate, n in turn_faults(turns, labels).items():
            totals[fate] += n
        totals["turns"] += len(turns)
        totals["utterances"] += len(labels)
    return totals


def realtime_turns(name: str = "tuning", conditions=REPLICA_CONDITIONS, vad_changes: dict | None = None,
                   draws: int = 1) -> dict:
    """``{condition: (exact, utterances, turns)}`` of :func:`session_turns` over a speech set's
    sessions (``"tuning"``; the held-out set only to check the replica agrees with the test), under
    the first ``draws`` recordings of each noise (:func:`labkit.speechsets.condition`'s ``draw``)."""
    return {cond: (sum(r.exact for r in results), sum(r.utterances for r in results), sum(r.turns for r in results))
            for cond, results in replica_results(name, conditions, vad_changes, draws).items()}


@dataclass(frozen=True)
class ReplicaResult:
    """One session of the replica under one noise draw: its utterances, how many became exact turns,
    the turns reported, and each utterance's end error (ms; 500 where it is not one turn: split,
    merged or missed)."""
    draw: int
    exact: int
    utterances: int
    turns: int
    end_errors_ms: tuple


def replica_audio(name: str = "tuning", conditions=REPLICA_CONDITIONS, draws: int = 1) -> dict:
    """``{condition: [(draw, audio at 24 kHz, labels in s), ...]}``: the replica's recordings, made
    once for every candidate a search compares (mixing and resampling cost more than a session)."""
    speech = speechsets.load(name)
    return {cond: [(draw, resample(mix, SPEECH_RATE, REALTIME_RATE), [(u.start_s, u.end_s) for u in utts])
                   for draw in range(draws if cond[0] != "clean" else 1)
                   for mix, _noise, utts in speechsets.condition(speech, *cond, draw=draw)]
            for cond in conditions}


def replica_results(name: str = "tuning", conditions=REPLICA_CONDITIONS, vad_changes: dict | None = None,
                    draws: int = 1, audio: dict | None = None) -> dict:
    """``{condition: [ReplicaResult per session and draw]}``: :func:`realtime_turns`, per session;
    ``audio`` is :func:`replica_audio`'s, when several candidates are compared on the same."""
    audio = audio if audio is not None else replica_audio(name, conditions, draws)
    out: dict = {}
    for cond, recordings in audio.items():
        results = out.setdefault(cond, [])
        for draw, samples, labels in recordings:
            turns = session_turns(samples, vad_changes)
            errors = []
            for start, end in labels:
                hits = _overlapping(turns, start, end)
                errors.append(min(500.0, abs(hits[0][1] - end) * 1000) if len(hits) == 1 else 500.0)
            results.append(ReplicaResult(draw, sum(exact_turns(turns, labels)), len(labels), len(turns), tuple(errors)))
    return out


#: The resume rule's values tried (session 9): the SNR that continues an utterance after a pause,
#: and how long the pause is (``VADConfig.resume_snr_db``, ``resume_after_ms``).
RESUME_GRID = {"resume_snr_db": (6.5, 7.0, 7.25, 7.5, 8.0), "resume_after_ms": (60, 100, 120, 140, 160, 180, 200, 240)}
#: The replica's noise draws for it: one draw is 240 utterances, and candidates differ by a turn or two.
RESUME_DRAWS = 8
#: Candidates this close to the most exact turns are compared on their mean end error.
RESUME_TIE_TURNS = 2


def tune_resume(*, draws: int = RESUME_DRAWS, grid: dict = RESUME_GRID, log=sys.stderr) -> tuple[dict, list]:
    """The resume rule that makes the most exact turns on the tuning replica over ``draws`` noise
    draws (clean counts once), ties (within :data:`RESUME_TIE_TURNS`) broken by the lowest mean end
    error; the rule off (``resume_snr_db`` at the stop threshold) is the first candidate. The weak-tail
    model (fitted afterwards, on the rule chosen here) is off. Returns the chosen changes (without
    ``weak_tail_p``) and every candidate's ``(changes, exact, utterances, mean end error ms)``."""
    # (chosen before the weak-tail model, which is fitted on the rule chosen here: off while choosing)
    off = {"resume_snr_db": VADConfig().stop_snr_db, "weak_tail_p": None}
    candidates = [off] + [{"resume_snr_db": r, "resume_after_ms": a, "weak_tail_p": None}
                          for r in grid["resume_snr_db"] for a in grid["resume_after_ms"]]
    audio, table = replica_audio("tuning", REPLICA_CONDITIONS, draws), []
    for changes in candidates:
        results = [r for rs in replica_results(vad_changes=changes, audio=audio).values() for r in rs]
        exact, utterances = sum(r.exact for r in results), sum(r.utterances for r in results)
        error = float(np.mean([e for r in results for e in r.end_errors_ms]))
        table.append((changes, exact, utterances, round(error, 1)))
        print(f"  {changes}: {exact} of {utterances} turns exact, mean end error {error:.1f} ms", file=log, flush=True)
    most = max(row[1] for row in table)
    chosen = min((row for row in table if row[1] >= most - RESUME_TIE_TURNS), key=lambda row: row[3])
    return {k: v for k, v in chosen[0].items() if k != "weak_tail_p"}, table


# -- the weak-tail model (labkit.vadtail), fitted on the tuning replica -----------------------------

#: Noise draws the tail model is fitted on (clean once): half of them choose ``weak_tail_p`` for a
#: model fitted on the other half, then all of them fit the model shipped. A draw has a weak tail or
#: two per condition (48 draws: 190, 62 of them the noise's).
TAIL_DRAWS = 48
#: The ``weak_tail_p`` values tried; the highest within :data:`RESUME_TIE_TURNS` of the most exact wins
#: (fewer tails dated out for the same count).
TAIL_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The model's L2 penalty (on the standardised measures' weights, not the bias).
TAIL_L2 = 1.0


@dataclass(frozen=True)
class TailExample:
    """A turn of the replica (s) with the weak tail it ended with (None: none), where it would end
    with that tail dated out (None: no tail, or too little would be left), and the label: 1 if the
    tail's island begins over 20 ms after the end of the one utterance the turn overlaps (the noise),
    0 if over 20 ms before it (the speaker), else None."""
    condition: tuple
    draw: int
    start_s: float
    end_s: float
    tail: WeakTail | None
    dated_out_end_s: float | None
    label: int | None


def tail_examples(audio: dict) -> list[tuple]:
    """Per recording of ``audio`` (:func:`replica_audio`'s): ``(condition, draw, labels, [TailExample])``,
    every turn the server's detector reports, its weak tail judged but never dated out."""
    session = RealtimeSession("gpt-realtime")
    session.receive(json.dumps(SESSION_UPDATE))
    config = replace(session.input.vad.config, weak_tail_p=1.0)     # judged, never dated out
    n, out = REALTIME_RATE * REPLICA_APPEND_MS // 1000, []
    for cond, recordings in audio.items():
        for draw, samples, labels in recordings:
            vad, turns = VoiceActivityDetector(config), []
            ends = [e for i in range(0, samples.size, n) for e in vad.process(samples[i:i + n]) if type(e) is SpeechEnd]
            for end in ends:
                tail, cut, label = end.weak_tail, None, None
                if tail is not None:
                    if tail.end_sample_dated_out is not None:
                        cut = tail.end_sample_dated_out / config.sample_rate
                    island = end.last_island_sample / config.sample_rate
                    hits = _overlapping(labels, end.start_s, end.end_s)
                    if len(hits) == 1:
                        gap = island - hits[0][1]
                        label = 1 if gap > 0.02 else 0 if gap < -0.02 else None
                turns.append(TailExample(cond, draw, end.start_s, end.end_s, tail, cut, label))
            out.append((cond, draw, labels, turns))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = TAIL_L2, iterations: int = 100) -> TailModel:
    """L2-regularised logistic regression by Newton's method, on measures standardised by their
    mean and standard deviation (the bias is not penalised)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.c_[(x - mean) / scale, np.ones(len(x))]
    w, penalty = np.zeros(z.shape[1]), l2 * np.r_[np.ones(z.shape[1] - 1), 0.0]
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-z @ w))
        hessian = (z.T * (p * (1 - p))) @ z + np.diag(penalty)
        w -= np.linalg.solve(hessian, z.T @ (p - y) + penalty * w)
    return TailModel(tuple(mean.round(4).tolist()), tuple(scale.round(4).tolist()), tuple(w[:-1].round(4).tolist()),
                     round(float(w[-1]), 4))


def _labelled(recordings) -> tuple[np.ndarray, np.ndarray]:
    rows = [(t.tail.measures, t.label) for _c, _d, _l, turns in recordings for t in turns
            if t.tail is not None and t.label is not None]
    return (np.array([m for m, _ in rows], float).reshape(-1, len(MEASURES)), np.array([y for _, y in rows], float))


def _exact_with(recordings, model: TailModel | None, threshold: float) -> int:
    exact = 0
    for _cond, _draw, labels, turns in recordings:
        kept = [(t.start_s, t.dated_out_end_s if model is not None and t.dated_out_end_s is not None
                 and model.probability(t.tail.measures) > threshold else t.end_s) for t in turns]
        exact += sum(exact_turns(kept, labels))
    return exact


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve: the chance a random noise tail (1) scores above a speaker's (0)."""
    pos, neg = score[y == 1], score[y == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size))


def fit_tail_model(*, draws: int = TAIL_DRAWS, log=sys.stderr) -> tuple[TailModel, float, dict]:
    """The weak-tail model and ``weak_tail_p``, from the tuning replica only: a model fitted on the
    first half of the draws chooses the threshold on the second half (:data:`TAIL_THRESHOLDS`; clean
    in both), then the model is refitted on all of them. Returns the model, the threshold, and a
    report: the examples, how well the first half's model tells the second half's tails apart (AUC)
    and how well each measure alone tells all of them apart, each threshold's exact turns on the
    second half, and the count without the model."""
    recordings = tail_examples(replica_audio("tuning", REPLICA_CONDITIONS, draws))
    half = draws // 2
    first = [r for r in recordings if r[1] < half]
    second = [r for r in recordings if r[1] >= half or r[0][0] == "clean"]
    model = fit_logistic(*_labelled(first))
    without = _exact_with(second, None, 1.0)
    counts = {}
    for threshold in TAIL_THRESHOLDS:
        counts[threshold] = _exact_with(second, model, threshold)
        print(f"  weak_tail_p={threshold}: {counts[threshold]} turns exact on the second half "
              f"(without the model: {without})", file=log, flush=True)
    most = max(counts.values())
    threshold = max(t for t, c in counts.items() if c >= most - RESUME_TIE_TURNS)
    x, y = _labelled(recordings)
    x2, y2 = _labelled(second)
    report = {"examples": len(y), "noise_examples": int(y.sum()),
              "auc_on_second_half": round(_auc(y2, np.array([model.probability(m) for m in x2])), 3),
              "auc_of_each_measure_alone": {k: round(max(a, 1 - a), 3) for k, a in
                                            zip(MEASURES, (_auc(y, x[:, j]) for j in range(len(MEASURES))))},
              "exact_on_second_half": counts,
              "exact_on_second_half_without": without,
              "utterances_on_second_half": sum(len(r[2]) for r in second)}
    return fit_logistic(x, y), threshold, report
