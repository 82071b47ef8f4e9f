"""The chapter 07/08 measurements hold to what they claim (real servers, real sockets)."""

from __future__ import annotations

from labkit import gotchas
from labkit.server.process import ServerProcess


async def test_a_plain_client_loses_the_rest_and_a_resuming_one_does_not(server):
    r = await gotchas.drops_with_and_without_resume(server.url, server.port, replies=3)
    assert r["plain"]["complete"] == 0 and r["plain"]["tokens_lost"] > 0
    assert r["resuming"]["complete"] == 3 and r["resuming"]["tokens_lost"] == 0 and r["resuming"]["reconnects"] >= 3


async def test_the_tutorial_keeps_the_model_running_after_the_client_left_and_the_lab_does_not():
    # at the model's real pace (a token every ~16 ms): "at most 2 tokens after leaving" gives the lab's
    # cancel ~30 ms to reach the model; each call waits until the model's stream has ended, however slow
    with ServerProcess(["serve", "--port", "0"]) as model, \
            ServerProcess(["serve", "--app", "tutorial", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as tut, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1",
                           "--resume-grace-s", "0"]) as lab:
        stats = model.url + "/lab/stats"
        tutorial = await gotchas.tokens_after_leaving(tut.url, stats)
        ours = await gotchas.tokens_after_leaving(lab.url, stats)
    assert not tutorial["model_stream_cancelled"] and tutorial["tokens_after_leaving"] > 20, tutorial
    assert ours["model_stream_cancelled"] and ours["tokens_after_leaving"] <= 2, ours


async def test_the_tutorials_typing_indicator_is_never_switched_off(make_server):
    lab = make_server()
    with ServerProcess(["serve", "--app", "tutorial", "--port", "0", "--upstream-base-url", lab.base_url]) as tut:
        theirs = await gotchas.progressive_timeline("ws" + tut.url[4:] + "/ws/chat/progressive")
    ours = await gotchas.progressive_timeline(lab.ws_url + "/ws/chat/progressive")
    assert theirs["typing_left_on"] and not ours["typing_left_on"]
    assert theirs["stages"] == ["thinking", "generating", "complete"]
    assert ours["stages"][:2] == ["queued", "waiting_for_first_token"] and ours["stages"][-1] == "complete"


async def test_the_tutorials_room_freezes_the_server_while_its_ai_answers():
    with ServerProcess(["serve", "--port", "0"]) as model, \
            ServerProcess(["serve", "--app", "tutorial", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as tut, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as lab:
        theirs = await gotchas.join_while_ai_answers("ws" + tut.url[4:], "t")
        ours = await gotchas.join_while_ai_answers("ws" + lab.url[4:], "t")
    # judged against each server's own answer, not a clock: the tutorial lets the newcomer in only once
    # its AI has finished (measured ~0.99 of the answer's time), the lab while the answer still streams (~0.01)
    assert theirs["join_s"] > 0.9 * theirs["answer_done_after_join_s"]
    assert ours["join_s"] < 0.5 * ours["answer_done_after_join_s"]
