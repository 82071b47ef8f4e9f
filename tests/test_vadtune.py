"""The tuning-set replica of the Realtime noisy-room test: its scoring, and that it is the server's
turns (the pure session machine the server runs, driven with the test's client events)."""


import numpy as np

from labkit import vadtune
from labkit.audio.pcm import resample
from labkit.speechdata import load_clean


def test_exact_turns_wants_one_turn_per_utterance_within_the_tolerance():
    labels = [(1.0, 2.0), (4.0, 5.0)]
    assert vadtune.exact_turns([(1.1, 1.9), (3.86, 5.14)], labels) == [True, True]
    assert vadtune.exact_turns([(1.16, 2.0), (4.0, 4.84)], labels) == [False, False]    # 160 ms late / early
    assert vadtune.exact_turns([(1.0, 1.4), (1.6, 2.0), (4.0, 5.0)], labels) == [False, True]   # split
    assert vadtune.exact_turns([(1.0, 5.0)], labels) == [False, False]                # merged
    assert vadtune.exact_turns([(4.0, 5.0)], labels) == [False, True]                 # missed


def test_turn_faults_name_why_each_utterance_is_not_an_exact_turn():
    labels = [(1.0, 2.0), (4.0, 5.0), (7.0, 8.0), (9.0, 10.0)]
    faults = vadtune.turn_faults([(1.0, 1.4), (1.6, 2.0), (4.2, 5.0), (7.0, 10.0)], labels)
    assert faults == {"exact": 0, "missed": 0, "split": 1, "merged": 2, "boundary": 1}
    assert vadtune.turn_faults([(1.0, 2.0), (4.0, 5.1)], labels) == {"exact": 2, "missed": 2, "split": 0,
                                                                      "merged": 0, "boundary": 0}


def test_session_turns_are_the_server_vads_turns_on_a_clean_recording():
    """Chapter 04's recording: each utterance one turn, within the tolerance (the held-out check that
    the replica agrees with the real server is in test_realtime_vad_noise)."""
    clean, utterances = load_clean()
    turns = vadtune.session_turns(resample(clean, 16_000, 24_000))
    assert all(vadtune.exact_turns(turns, [(u.start_s, u.end_s) for u in utterances]))
    assert len(turns) == len(utterances)


def test_vad_changes_retune_the_replicas_detector():
    clean, _utterances = load_clean()
    audio = resample(clean, 16_000, 24_000)
    strict = vadtune.session_turns(audio, {"min_silence_ms": 5_000})      # the server still subtracts 500 ms
    default = vadtune.session_turns(audio)
    assert len(strict) < len(default)
    # no pause is 5 s long: the first turn starts where the default's does, the last never ends
    assert strict[0][0] == default[0][0] and strict[-1][1] == audio.size / vadtune.REALTIME_RATE


def test_the_replica_over_noise_draws_reuses_its_audio_and_adds_up():
    """Two draws of pink 10 dB: the second is another noise recording under the same speech, the
    recordings made once give the same results as made afresh, and realtime_turns is their sum."""
    conditions = (("pink", 10),)
    audio = vadtune.replica_audio("tuning", conditions, draws=2)
    recordings = audio[("pink", 10)]
    assert [draw for draw, _a, _l in recordings] == [0] * 6 + [1] * 6
    assert not np.array_equal(recordings[0][1], recordings[6][1]) and recordings[0][2] == recordings[6][2]
    shared = vadtune.replica_results(conditions=conditions, audio=audio)
    assert shared == vadtune.replica_results("tuning", conditions, draws=2)
    results = shared[("pink", 10)]
    assert vadtune.realtime_turns("tuning", conditions, draws=2)[("pink", 10)] == (
        sum(r.exact for r in results), sum(r.utterances for r in results), sum(r.turns for r in results))
    assert sum(r.utterances for r in results) == 48 and sum(r.exact for r in results) >= 40
