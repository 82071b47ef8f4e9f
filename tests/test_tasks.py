"""A connection's tasks: held until each ends, cancelled (all but the caller's own) when it closes."""

import asyncio

from labkit.server.tasks import TaskSet


async def test_a_task_is_held_until_it_ends():
    tasks, gate = TaskSet(), asyncio.Event()
    task = tasks.spawn(gate.wait())
    assert len(tasks) == 1
    gate.set()
    await task
    await asyncio.sleep(0)                       # done callbacks run in the next step
    assert len(tasks) == 0


async def test_cancel_waits_for_every_other_task_and_spares_the_callers_own():
    tasks, ended, closed = TaskSet(), [], asyncio.Event()

    async def worker(name):
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    async def closer():                           # a task that closes its own connection
        await tasks.cancel()
        closed.set()

    for name in ("a", "b"):
        tasks.spawn(worker(name))
    await asyncio.sleep(0)
    own = tasks.spawn(closer())
    await asyncio.wait_for(closed.wait(), 5)
    assert sorted(ended) == ["a", "b"] and not own.cancelled()
    await own


async def test_cancel_without_waiting_returns_before_the_tasks_have_ended():
    tasks, ended = TaskSet(), []

    async def slow_to_stop():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            ended.append(True)
            raise

    task = tasks.spawn(slow_to_stop())
    await asyncio.sleep(0)
    await tasks.cancel(wait=False)
    assert ended == []
    await asyncio.gather(task, return_exceptions=True)
    assert ended == [True]
