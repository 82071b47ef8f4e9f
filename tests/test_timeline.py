"""Timeline labels never overlap, however close the moments are (a geometry check on the drawn text)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from labkit.timeline import mark_times, overlapping, progressive_lanes  # noqa: E402


def test_close_moments_get_labels_that_do_not_overlap():
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.set_xlim(0, 3)
    marks = {"speech_started": 0.5, "speech_stopped": 1.97, "response.created": 2.0, "first audio": 2.06}
    texts = mark_times(ax, marks)
    assert overlapping(texts) == []
    assert [t.get_position()[0] for t in texts] == list(marks.values())      # each label at its own moment
    naive = [ax.text(at, 0.5, " " + name) for name, at in marks.items()]      # the old way: all on one row
    assert overlapping(naive) != []                                           # (so the check can fail)
    plt.close(fig)


def test_a_progressive_reply_draws_lanes_and_shows_a_stuck_indicator():
    run = {"ttft_s": 0.3, "events": [
        {"t": 0.01, "type": "typing", "typing": True, "stage": None, "fraction": None},
        {"t": 0.02, "type": "progress", "typing": None, "stage": "queued", "fraction": 0.0},
        {"t": 0.03, "type": "progress", "typing": None, "stage": "waiting_for_first_token", "fraction": 0.1},
        *({"t": 0.3 + 0.02 * k, "type": "token", "typing": None, "stage": None, "fraction": None} for k in range(20)),
        {"t": 0.31, "type": "progress", "typing": None, "stage": "streaming", "fraction": 0.5},
        {"t": 0.72, "type": "progress", "typing": None, "stage": "complete", "fraction": 1.0},
        {"t": 0.72, "type": "complete", "typing": None, "stage": None, "fraction": None}]}
    fig, ax = plt.subplots(figsize=(8, 2))
    labels = progressive_lanes(ax, run, "never switched off")
    assert [t.get_text().strip() for t in labels] == ["queued", "waiting_for_first_token", "streaming", "complete"]
    assert overlapping(labels) == []
    assert any(t.get_text().strip() == "still on" for t in ax.texts)          # typing was never switched off
    plt.close(fig)
