"""The capstone's checks pass the reference solution, and fail the starter and the classic mistakes."""

from __future__ import annotations

import linecache
from pathlib import Path

import nbformat
import pytest

from labkit.capstone import STEPS, check_step
from labkit.clients import sse_chat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["ask_over_websocket", "cut_turns", "reply_metrics", "indicator_states", "share_a_room", "ask_resuming"]


def _functions(path: Path) -> dict:
    """Run the notebook's import cell and its six step cells (not the checks) and return the functions."""
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {}
    setup = nb.cells[1].source
    exec(setup[:setup.index("server = labkit.")], namespace)        # the imports; no server here
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(f"def {name}(" in cell.source for name in NAMES):
            filename = f"<{path.name} cell {i}>"      # as IPython does: the checks read the source back
            linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
            exec(compile(cell.source, filename, "exec"), namespace)
    return {n: namespace[name] for n, name in zip(STEPS, NAMES)}


@pytest.fixture(scope="module")
def solution():
    return _functions(NOTEBOOKS / "solutions" / "09_capstone_solution.ipynb")


@pytest.fixture(scope="module")
def starter():
    return _functions(NOTEBOOKS / "09_capstone.ipynb")


@pytest.fixture
def capstone_server(make_server):
    return make_server(time_scale=0.5)


@pytest.mark.parametrize("step", list(STEPS))
async def test_the_reference_solution_passes(step, solution, capstone_server):
    result = await check_step(step, solution[step], capstone_server)
    assert result.ok, result.message


@pytest.mark.parametrize("step", list(STEPS))
async def test_the_starter_does_not_pass(step, starter, capstone_server):
    result = await check_step(step, starter[step], capstone_server)
    assert result.ok is None and "not attempted" in result.message


async def test_classic_mistakes_fail_with_a_reason(solution, capstone_server):
    def tutorial_metrics(arrivals):                       # the tutorial: TPOT from the whole time
        return {"ttft_s": arrivals[0], "tpot_s": arrivals[-1] / len(arrivals)}

    def never_off(messages):                              # the tutorial's page: typing is never hidden
        shown, out = False, []
        for m in messages:
            shown = shown or m["type"] == "typing"
            out.append(shown)
        return out

    async def plain_sse(base_url, prompt, seed):          # no resume: keeps what it had when cut
        got = []
        try:
            async for tok in sse_chat(base_url, prompt, seed=seed):
                got.append(tok.text)
        except Exception:
            pass
        return "".join(got)

    def turns_in_samples(samples, sample_rate):           # forgot to convert to seconds
        return [(a * sample_rate, b * sample_rate) for a, b in solution[2](samples, sample_rate)]

    async def wrong_text(ws_url, prompt, seed):
        tokens = await solution[1](ws_url, prompt, seed)
        return tokens[:-1]

    for step, wrong, words in ((3, tutorial_metrics, "TPOT leaves TTFT out"), (4, never_off, "hidden"),
                               (6, plain_sse, "resume"), (2, turns_in_samples, "seconds"),
                               (1, wrong_text, "differs")):
        result = await check_step(step, wrong, capstone_server)
        assert result.ok is False and words in result.message, (step, result.message)
    boom = await check_step(3, lambda arrivals: 1 / 0, capstone_server)
    assert boom.ok is False and "ZeroDivisionError" in boom.message


def test_the_scorecard_survives_a_restart(tmp_path):
    from labkit.capstone import Scorecard, scorecard
    from labkit.exercises import Result

    path = tmp_path / "09_capstone.scorecard.json"
    results = Scorecard(path)
    results[1] = Result(True, "Step 1: fine")
    results[2] = Result(False, "Step 2: not yet")
    results[1] = Result(None, "Step 1: not attempted yet")     # a re-run of an emptied cell keeps the pass
    again = Scorecard(path)                                    # a new kernel, a new server
    assert again[1] == Result(True, "Step 1: fine") and again[2].ok is False and 3 not in again
    assert "**1 of 6 steps pass.**" in scorecard(again)
    path.write_text("{not json")
    assert len(Scorecard(path)) == 0                           # a damaged file is not fatal
