"""The recogniser's search settings (labkit.audio.asr_worker.DECODER_SETTINGS): the server's worker
processes use them, and they keep the words pocketsphinx's defaults hear. Decoding is deterministic
(committed audio, seeded dither), so word counts are compared exactly; CPU time is only reported."""

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from labkit.audio import asr
from labkit.audio._sphinx import DECODER_SETTINGS, DEFAULT_SETTINGS, recognise
from labkit.bench.realtime import RATE, class_turns
from labkit.bench.realtime_scale import compare_recognition_settings


@pytest.fixture(scope="module")
def turns():
    return class_turns(4)


def test_the_lab_skips_the_second_search_pass():
    assert DECODER_SETTINGS["fwdflat"] is False and DEFAULT_SETTINGS["fwdflat"] is True


def test_the_worker_process_hears_what_the_lab_settings_hear_here(turns):
    for audio, _end_s, _text in turns[:2]:
        here = recognise(audio, RATE)
        assert here == recognise(audio, RATE, DECODER_SETTINGS)
        assert asr._worker.run(audio, RATE) == here                   # the server's recogniser process


def test_the_lab_settings_keep_the_words_and_a_narrow_beam_would_not(turns):
    narrow = {"fwdflat": False, "beam": 1e-30, "wbeam": 1e-20, "pbeam": 1e-30}
    r = compare_recognition_settings({"bench": (turns, RATE)},
                                     {"lab": DECODER_SETTINGS, "defaults": DEFAULT_SETTINGS, "narrow": narrow})["bench"]
    assert r["utterances"] == 4 and r["speech_s"] > 4
    # the lab decodes incrementally (it streams while the user speaks): on the sessions' 20 utterances its WER
    # is 0.224 against the defaults' whole-utterance 0.218; on these 4, one word of 31 more (0.226 vs 0.194)
    assert r["lab"]["word_error_rate"] <= r["defaults"]["word_error_rate"] + 0.04, r
    assert r["narrow"]["word_error_rate"] > r["lab"]["word_error_rate"] + 0.1, r   # the comparison can tell
    assert all(r[name]["cpu_s_per_utterance"] > 0 for name in ("lab", "defaults", "narrow"))


def test_a_silent_utterance_is_heard_as_nothing_with_either_setting():
    silence = np.zeros(RATE, np.int16)
    assert recognise(silence, RATE) == recognise(silence, RATE, DEFAULT_SETTINGS) == ""


def test_a_transcript_does_not_depend_on_what_the_decoder_heard_before(turns):
    """pocketsphinx carries its cepstral mean over from one utterance to the next; the lab resets it, or
    a worker's transcript of one session would depend on another session's utterance before it."""
    from labkit.audio._sphinx import model_files, prepare
    from labkit.audio.asr_worker import decode, make_decoder

    first, other = (prepare(audio, RATE) for audio, _e, _t in turns[:2])
    fresh = decode(make_decoder(*model_files()), first)
    used = make_decoder(*model_files())
    heard = [decode(used, pcm) for pcm in (first, first, other, first)]
    assert heard[0] == heard[1] == heard[3] == fresh, heard     # before the reset: the 2nd differed from the 1st
