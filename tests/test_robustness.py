"""The robustness harness (benchmarks/robustness.py) on its cases of the reported faults and a
sample of the rest: each must end with exit 2 and one error line, with every upstream artefact
byte-identical and no new --out (or succeed untouched, for the valid edge cases)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"
_spec = importlib.util.spec_from_file_location("robustness", _path)
robustness = importlib.util.module_from_spec(_spec)
sys.modules["robustness"] = robustness
_spec.loader.exec_module(robustness)

ALL = robustness.all_cases()
SAMPLE_EVERY = 15
FAST = [c for i, c in enumerate(ALL) if c.issue or c.expect == "ok" or c.kind == "fault" or i % SAMPLE_EVERY == 0]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("robustness") / "base"
    folder.mkdir()
    robustness.build_fixtures(folder)
    return folder


def test_the_harness_covers_every_command_with_hundreds_of_cases() -> None:
    commands = {c.command for c in ALL}
    assert commands == set(robustness.COMMANDS)
    assert len(ALL) >= 1000 and len({c.id for c in ALL}) == len(ALL)
    kinds = {c.kind for c in ALL}
    assert {"config-typo", "config-type", "config-range", "upstream", "out", "fault"} <= kinds
    # every field of every config model has a typo case
    for command, model in robustness.MODELS.items():
        keys = {dotted for dotted, _, _ in robustness._leaves(model)}
        typos = [c for c in ALL if c.command == command and c.kind == "config-typo"]
        assert len(typos) == len(keys)


@pytest.mark.parametrize("case", FAST, ids=[c.id for c in FAST])
def test_case_keeps_the_promise(case, base: Path, tmp_path: Path) -> None:
    outcome = robustness.run_case(case, base, tmp_path)
    assert outcome.ok, f"{case.what}: {outcome.result}: {outcome.message}"
