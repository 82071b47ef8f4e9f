"""The exercises' reference answers, for the notebook tests (the root conftest) and test_exercises."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "exercise_answers.py"


def reference_answers() -> dict[str, str]:
    """``notebooks/solutions/exercise_answers.py``'s ANSWERS (it is no package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("exercise_answers", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ANSWERS
