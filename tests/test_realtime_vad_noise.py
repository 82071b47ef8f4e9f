"""Server VAD in a noisy room: held-out speech under 10 dB pink noise and babble (the brief's test),
and pink noise at 5 dB, streamed through ``/v1/realtime`` on a real server. The target: every
utterance becomes one turn whose boundaries, after undoing prefix padding and the silence wait, are
within 150 ms of the labels. Asserted: every turn ends, and at least as many utterances are exact as
are measured (24 of 24 in pink at 10 dB, 24 in babble since session 20's weak-tail model, 21 in pink
at 5 dB).

The audio is the whole held-out set (six sessions, 24 utterances, eight voices, peak levels -35 to
-6 dBFS), sent as fast as the socket takes it: the server's VAD clock is the audio's samples.

Measured (and asserted, the audio and the detector being deterministic) with the default detector
(session 8: bands to 6 kHz, a floor that is the lowest mean of 1 s sliding by 0.5 s or the mean of
a steady 0.5 s, turn ends not dated earlier; session 9: after a 160 ms pause only a frame over
7.25 dB continues an utterance; all chosen on the tuning set, never on this audio): in pink noise
all 24 utterances are one turn each with both boundaries within 150 ms (the worst boundary 103 ms
off), in babble 23 (24 with session 20's weak-tail model, below). The held-out set is packaged (one generation for every machine, since
session 10): espeak-ng's output drifts by a few samples from run to run, and in one generation of
it babble had all 24 too; in eight others made in session 8 and three made in session 9 (the
last of them is the packaged one) under its default, the one that misses is session 5's
8.95-12.29 s, which ends 213-233 ms late: the babble after it scores 6.0-6.4 dB from 12.40 to
12.50 s, just above the 6 dB stop threshold, after a pause of only 100 ms, a word's own gap (the
resume rule from 100 ms at 7 dB catches it; on the tuning replica over eight draws, 120 ms
already makes 6 fewer turns exact than the 160 ms chosen). Until session 20 the brief's target,
every utterance, was met in pink noise at 10 dB, not in babble; session 20's model (at the end of
this docstring) meets it in both.

One noise recording is 24 utterances; over eight draws of each noise (other seeds, ``bench vad``'s
``realtime_turns``) pink 10 dB has 192 of 192 exact and babble 10 dB 172 of 192 (161 without the
resume rule): which babble utterance fails depends on where the babble's peaks fall, and draw 0's
23 of 24 is better than babble's average.

What it took, in the two pink utterances that still ended 230 ms early with the sliding floor
alone (session 1, 5.30-8.75 s, and session 4, 11.73-15.37 s): the last syllable is its own soft
burst after a dip, 8-11 dB above the noise in the lowest bands (200-500 Hz), but the floor there
sat 5-11 dB above the noise: no 1 s stretch of the 5 s window was free of speech (session 4's
utterance follows a pause of 0.83 s), and a window's mean is dragged up by even 100 ms of a voice
25 dB over the noise. So the syllable scored 5.4-5.8 dB, under the 6 dB stop threshold. Shorter
windows find the pause but learn babble's and music's dips as their floor (on the tuning replica
babble 10 dB fell from 22 to 9 turns exact with 0.5 s blocks), and so do robust statistics of a
block (median, trimmed, clipped or geometric mean: music's floor falls, its frame F1 by 0.02-0.09
on the tuning set). A 0.5 s block that is steady in every band (its levels spread no more than
1.6 times white noise's) is a pause in steady noise, and its own mean may lower the floor, by at
most 8 dB (chosen on the tuning set from about 20 variants: replica 229 -> 231, frame F1 0.9655
-> 0.9658, no condition down).

Before session 8 (bands to 4 kHz, the floor the lowest of five fixed 1 s blocks, ends dated 40 ms
earlier) it was 20 in pink and 23 in babble: ends 170-290 ms early under floors raised by the
speech around them, and one utterance split at an inner stretch under the stop threshold. On the
tuning replica (:func:`labkit.vadtune.realtime_turns`, 240 utterances): 215 -> 231 exact.

Fixed in session 7: babble, sessions 0 and 4, the first utterance (at 1.00 s) started 220 ms late:
its first 200 ms score 3-7 dB and dip for a frame to 3.7 dB before the 9 dB start, and the onset
was dated from after the dip. ``onset_dip_ms=100`` lets the onset's run survive it (chosen on the
tuning replica: 212 -> 215 of 240 turns exact, no condition's frame F1 down by more than 0.0011,
false alarms on noise alone unchanged, 143).

Tried in session 5 and not shipped, each chosen on the tuning set (a replica of this test run on
the tuning set's sessions, 10 conditions):
* extending an utterance through a falling tail that stays above the background's own score;
* a stop threshold lowered in a steady background.
The tail gained 7 of 240 turns on the tuning set (212 -> 219) but none here in pink or babble at
10 dB, and it cost the tuning set 0.0012-0.0017 of mean frame F1 (in music). The lower stop
threshold gained 2 (214), too few to ship.

Tried in session 7 and not shipped: a second chance for a soft last syllable after a dip (a quiet
stretch broken by 40-120 ms of frames above the background's own score, the highest score of the
last 2 s of silence plus 0.5-2 dB, at least 2-3 dB, counts as voiced; off where the background
scores above the stop threshold). On the tuning replica it gained at most 2 turns (212 -> 214) and
cost keyboard 0.008-0.013 and music 0.004-0.042 of frame F1 (clicks and notes after a dip revive
an utterance); with a fixed 2-5 dB instead of the background's score it lost up to 62 turns (babble
revives every utterance into the next).
And a stop threshold relative to the utterance's own level (the mean score of its voiced frames
minus 6, 9 or 12 dB, between 3 or 4.5 dB and the 6 dB stop; a prototype over the shipped onset
rule, 215 turns): it lost 4-22 turns (babble and music utterances run into the next) and babble 5 dB
0.029-0.082 of frame F1.

Tried in session 11 and not shipped, for the late end above:
* dating an utterance's end before a weak trailing island (voiced frames after a 20-140 ms pause,
  none of them reaching the resume threshold): no turn moves, since ``speech_stopped``'s
  ``audio_end_ms`` is when the end was *detected* (the last voiced frame plus the silence wait, as
  OpenAI defines it), and the island has already delayed that; not counting such an island's frames
  as voiced until one reaches the threshold is the resume rule itself with a shorter pause, tuned
  in session 9.
* a resume level relative to the utterance's own: after a pause of 0-160 ms a frame continues only
  within 6-21 dB of the utterance's mean or peak score (32 variants). The best on the tuning replica
  over eight draws (after 100 ms, within 12 dB of the peak) made 1,654 of 1,752 turns exact against
  the default's 1,649; on the held-out replica over eight draws it made 1,618 against 1,635 (babble
  10 dB 172 -> 175, but babble 20 dB 184 -> 173 and pink 20 dB 192 -> 184).

Tried in session 12 and not shipped:
* periodicity (a frame's normalised autocorrelation peak over 60-500 Hz, 32 ms window) to tell a
  voice going on from babble: on the tuning set (10 dB babble, two draws) the frames scoring between
  the stop and resume thresholds inside speech have a median of 0.48 (378 frames), the babble's own
  outside speech 0.54 (72): the babble is the more periodic of the two.
* an island after a pause (voiced frames after 60-120 ms under the stop threshold) counting as
  voiced only once it has lasted 60-140 ms, frames over the resume threshold exempt or not (24
  variants): 1,538-1,646 of 1,752 turns exact on the tuning replica over eight draws, against the
  default's 1,649; babble 10 dB at most +1, pink and babble at 5 dB losing 3-62 turns.

Tried in session 13 and not shipped:
* the speaker's pitch: an island after a pause continues the utterance only once one of its frames
  is periodic (normalised autocorrelation r of 40 ms at 70-400 Hz) with a pitch near the
  utterance's own median (its frames with r of 0.75 or more). It looked like the way to tell one
  voice from babble. On the tuning set, 10 dB babble, eight draws, 653 islands after pauses of
  40 ms or more fall inside utterances, and 73% of them have their best pitch (of their first four
  frames) within 2 semitones of the utterance's. Of the 5 outside utterances, 4 are 4.9-15.3
  semitones off (the fifth follows no periodic frame of its turn). But an island's first frame is
  seldom periodic on its own (r 0.29-0.55 in 4 of those 5), so a rule must either let such islands
  through or hold back the speaker's own weak ones too. Over 11 variants (pause 60-140 ms, r at
  least 0.4-0.6, within 4-8 semitones, an island counted anyway after 4-10 frames or never) the
  tuning replica made 1,551-1,648 of 1,752 turns exact, against the default's 1,649. Babble at
  10 dB gained at most 2 turns, and pink at 5 dB lost 3-33. Rejecting a mismatched frame on its
  own, not the island, moved no turn at all (3 variants).
* a learned frame classifier in place of the score: logistic regression on the sub-band SNR trace
  (per-band SNRs, recent scores, the score's mean and spread over 0.2-2 s; 46 or 19 features),
  trained on half the tuning sessions and scored on the other half, both ways round, its output
  driving the same segmenter over 3-4 threshold pairs. It made 374-768 turns exact where the
  default makes 813 and 836. Babble lost the most (at 10 dB, 15-75 turns). It was trained on
  frames, not on the turn boundaries the test judges; a model trained for those is untried.
* dating the end back before a weak tail, with ``audio_end_ms`` moving too. Session 11's try kept
  ``audio_end_ms`` at the detection sample, so it could move nothing. This time the detection
  sample itself moved back: the commit ends before the tail, whose audio stays in the input
  buffer. That fits OpenAI's definition, where ``audio_end_ms`` is the end of the audio committed,
  silence wait included. The tail is voiced frames after a pause of 40-140 ms that end the turn,
  none of them over the resume threshold, at most 60-200 ms of them or unbounded (36 variants). On
  the tuning replica over eight draws they made 1,647-1,651 of 1,752 turns exact, against the
  default's 1,649. The best, after 100 ms with at most 100 ms of tail, made 1,651, mean end error
  88.6 -> 88.5 ms (the pick of :func:`labkit.vadtune.tune_resume`'s rule). On 16 fresh tuning
  draws of the noises it touches (pink 5 and 10 dB, babble 5-20 dB: 2,304 utterances) it made
  1,729 -> 1,736, no condition down. On the held-out replica (pink and babble at 20, 10 and
  5 dB, eight draws) it made 1,035 -> 1,030: babble 10 dB 172 -> 168, mean end error 74.4 -> 75.4 ms. Here, on
  draw 0, it fixes session 5's late end (12.50 -> 12.28 s). But session 1's 5.30-8.75 s now ends
  at 8.50 s, 250 ms early: its last syllable, after a pause, is as weak and as short as the
  babble's tail. So babble stays at 23.
* the same weak tail, dated out only when it is not the speaker's pitch (none of its 40 ms
  windows periodic, r of 0.5-0.7 or more, within 2-4 semitones of the median pitch of the utterance's
  last second). It was meant to keep session 1's last syllable and still cut the babble. 40
  variants (pause 40-120 ms, tail at most 100 ms or unbounded, r 0.5 or 0.7, 2 or 4 semitones)
  made 1,649-1,652 on the tuning replica. The pick (after 60 ms, unbounded, r 0.7, 4 semitones:
  1,652, 88.4 ms) made 1,729 -> 1,737 on the 16 fresh tuning draws. On the held-out replica it
  made 1,035 -> 1,032 (babble 10 dB 172 -> 171), and on draw 0 babble fell to 22: session 1's last
  syllable is still cut (no window of it matches), and session 5's babble tail now passes for
  the speaker (one of its windows matches), so it ends late again.

Tried in session 14 and not shipped: the weak tail's end dated *between* the two hypotheses. On
the tuning set's babble at 20, 10 and 5 dB (eight draws), the 7 last syllables of the speaker and
the 8 babble peaks that end a turn after a pause of 60-140 ms, all under the resume threshold,
score 6.0-6.8 dB against 6.0-6.5 dB, last 40-120 ms against 20-120 ms, spread over the bands by
1.8-4.8 dB against 3.0-6.4 dB, and peak in one band at 8.7-12.8 dB against 10.0-12.0 dB: nothing
tells them apart. So the end is dated a weight w of the way from the end before the pause (0, session
13's third try) to the tail's end (1); at w = 0.5, the estimate whose worst error is the least,
both hypotheses are within 150 ms when pause and tail last 300 ms or less. ``audio_end_ms`` and
the commit moved with it (a field ``audio_end_sample`` on the detector's end event, the rest of
the audio left in the input buffer). It worked as meant here: session 5 ended 100 ms late (12.39 s)
and session 1 140 ms early (8.61 s), babble 24 of 24. But the choice between weights is noise,
and only 0.5 makes 24. The grid (pause at least 40-140 ms, tail at most 100 ms, 200 ms or
unbounded, w 0, 0.25, 0.5 or 0.75: 72 candidates and the rule off), chosen as
:func:`labkit.vadtune.tune_resume` chooses (the most exact turns, ties within 2 by mean end error):

  ============================  ==============  ===============  ================  =============
  tuning replica                rule off        best exact       the pick          its margin
  ============================  ==============  ===============  ================  =============
  8 draws (1,752 utterances)    1,649           1,652 (w 0.5)    w 0.75, 40 ms,    0.006 ms over
                                                                 <= 200 ms: 1,650  w 0.5 (1,652)
  24 draws (5,592)              4,896           4,910 (w 0.25)   w 0.5, 40 ms,     0.006 ms over
                                                                 <= 100 ms: 4,908  w 0.25
  24 draws, errors to 0.1 ms    4,896           4,910            w 0, 40 ms,       first listed
  (as ``tune_resume`` rounds)                                    <= 100 ms: 4,909  of three ties
  ============================  ==============  ===============  ================  =============

Held out (eight draws of pink and babble at 20, 10 and 5 dB, 1,152 utterances; the default makes
1,035, and 23 of 24 here in babble): w 0.75 after 40 ms with tails to 200 ms makes 1,035 and 23
(session 5 ends 158 ms late); w 0.5 after 40 ms to 200 ms, 1,033 and 24; w 0.5 to 100 ms, 1,035
and 24 (babble 10 dB 172 -> 173, babble 5 dB 126 -> 125); w 0.25 to 100 ms, 1,028 and 23; w 0 to
100 ms, 1,035 and 23. Offline at 16 kHz (chapter 04's count) the w 0.5 rule to 100 ms leaves
session 5 213 ms late: framed at 16 kHz the babble's tail lasts over 100 ms. Each procedure on the
tuning set (eight draws or 24, the tie-break's precision) picks another weight, so shipping 0.5
would be choosing it on this audio. It costs no speed (side by side in one process, 923x against
915x without it). Frame F1 of w 0.5 to 100 ms: tuning 0.96621 -> 0.96618, held out (>= 5 dB)
0.9689 -> 0.9689.

Looked at in session 19 and not built: whether an island after a pause has the speaker's spectral
shape (the correlation of its first three frames' per-band SNRs with the mean of the utterance's
voiced frames before the pause, each with its mean removed). On the tuning set, eight draws, 10 dB
babble: islands inside utterances have a median of 0.41 (473 islands), those after an utterance's
end 0.15 (22). But the islands after a pause of under 160 ms, where this test's late end is, are
409 inside and 2 after an end, too few to choose anything on. Among the islands the resume rule
lets through (a pause of 160 ms or more, a frame over its threshold), a bound of 0.25 would drop 3
of the 4 after an end and 22 of the 60 inside; at 0, 1 of 4 and 13 of 60. At 5 dB it would drop 2
of 3 and 87 of 228. This is band spread again: the shape does not tell the two apart.

Built in session 20 (:mod:`labkit.vadtail`, ``VADConfig.weak_tail_p``): a model trained for turn
ends, the family session 13 left untried. At a turn's end, a weak tail (the last island of voiced
frames after a pause of 40-160 ms, no frame of it at the resume threshold) is weighed on 13 measures
at once by a logistic model, and dated out of the turn when it gives the noise more than 0.6. The
procedure was fixed in writing before any held-out figure of it was computed, and the held-out set
was scored once, with nothing changed afterwards:

* fitted on the tuning replica only (:func:`labkit.vadtune.fit_tail_model`, which reproduces the
  shipped weights): 48 draws of its ten conditions, 190 weak tails, 62 of them after an utterance's
  end (the noise). One measure alone separates them with an AUC of 0.59-0.81 (taken whichever way
  round separates; the best the island's length, 0.81, then its peak, 0.77); the model fitted on
  draws 0-23 scores draws 24-47's tails at an AUC of 0.86, and their turns go 4,884 -> 4,894 of 5,208 exact at 0.6 (0.3 and 0.4:
  4,895; 0.9: 4,885; the highest threshold within 2 of the most is chosen);
* held out, the replica over eight draws (pink and babble at 20, 10 and 5 dB): 1,035 -> 1,035 of
  1,152 (babble 20 dB 184 -> 186, babble 5 dB 126 -> 124, the other four unchanged, babble 10 dB
  172); draw 0, this test's audio: babble 10 dB 23 -> 24 (session 5's end 12.50 -> 12.28 s, its tail
  at p 0.71; session 1's last syllable kept, p 0.22), babble 20 dB 23 -> 24, babble 5 dB 19 -> 18;
* frame F1 offline: tuning 0.96621 -> 0.96635, held out (>= 5 dB) 0.96891 -> 0.96924, no condition
  down; speed 0.92x side by side (each frame's score and band SNRs are kept for the judgement).

So the test's 24 of 24 in babble is met by a rule chosen on the tuning set, but over eight draws
babble at 10 dB is where it was, 172 of 192: the gain on fresh tuning draws (+10 of 5,208) is
small, and on the held-out draws as a whole it is nil. ``tests/test_vadtail.py`` pins the two
cases of this recording.

The test pins what holds (at least those counts exact, no more turns than that allows, every
turn ends), and that the server's turns are those of the tuning replica's
:func:`labkit.vadtune.session_turns` on the same audio (so what is chosen on the replica is what
the server does)."""

import asyncio
import base64
import json

import numpy as np
import pytest
import websockets

from labkit import speechsets, vadtune
from labkit.audio.pcm import resample
from labkit.realtime import validate_server_event
from labkit.speechdata import SAMPLE_RATE as SPEECH_RATE

PREFIX_MS, SILENCE_MS, RATE = vadtune.REPLICA_PREFIX_MS, vadtune.REPLICA_SILENCE_MS, vadtune.REALTIME_RATE


def _sessions(noise: str, snr_db: float):
    """Each held-out session (a recording of its own) at 24 kHz, and its labels (s)."""
    for mixture, _noise, utterances in speechsets.condition(speechsets.load("heldout"), noise, snr_db):
        yield resample(mixture, SPEECH_RATE, RATE), [(u.start_s, u.end_s) for u in utterances]


async def _turns(server, audio: np.ndarray) -> list[tuple[float, float]]:
    """Stream one recording through a fresh Realtime connection; its turns (s), prefix and silence undone."""
    ws = await websockets.connect(f"{server.ws_url}/v1/realtime?model=gpt-realtime", max_size=None,
                                  additional_headers={"Authorization": "Bearer x"})
    try:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps(vadtune.SESSION_UPDATE))
        assert json.loads(await ws.recv())["type"] == "session.updated"
        n = RATE * vadtune.REPLICA_APPEND_MS // 1000               # 100 ms appends, as the replica's
        for i in range(0, audio.size, n):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(audio[i:i + n].tobytes()).decode()}))
        # a marker after the audio: its reply arrives once the server has run VAD over everything
        await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "item_end_marker"}))
        turns, started = [], None
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
            validate_server_event(event, beta=False)
            if event["type"] == "input_audio_buffer.speech_started":
                assert started is None, "speech started twice without stopping"
                started = event
            elif event["type"] == "input_audio_buffer.speech_stopped":
                assert started is not None and event["item_id"] == started["item_id"]
                turns.append(((started["audio_start_ms"] + PREFIX_MS) / 1000, (event["audio_end_ms"] - SILENCE_MS) / 1000))
                started = None
            elif event["type"] == "error" and "item_end_marker" in event["error"]["message"]:
                break
        assert started is None, f"a turn never ended: {started}"
        return turns
    finally:
        await ws.close()


@pytest.mark.parametrize("noise, snr_db, exact_at_least", [("pink", 10, 24), ("babble", 10, 24), ("pink", 5, 21)])
async def test_server_vad_ends_every_turn_in_noise(server, noise, snr_db, exact_at_least):
    """10 dB pink and babble, the brief's test; pink at 5 dB, its "stationary noise down to 5 dB":
    every turn ends there too, 21 of 24 with both boundaries within 150 ms (of the three others, one
    starts 220 ms late, one ends 154 ms early and one is split in two at a soft stretch, as the
    replica (`vadtune.session_turns`) shows them; 169 of 192 over eight draws)."""
    exact, n_turns, n_labels, report = [], 0, 0, []
    for audio, labels in _sessions(noise, snr_db):
        turns = await _turns(server, audio)
        assert turns == vadtune.session_turns(audio), "the tuning replica is not what the server does"
        exact += vadtune.exact_turns(turns, labels)
        n_turns, n_labels = n_turns + len(turns), n_labels + len(labels)
        report.append(([(round(s, 2), round(e, 2)) for s, e in turns], [(round(s, 2), round(e, 2)) for s, e in labels]))
    assert n_labels == 24
    assert sum(exact) >= exact_at_least, (sum(exact), report)
    assert abs(n_turns - n_labels) <= n_labels - exact_at_least, (n_turns, report)
