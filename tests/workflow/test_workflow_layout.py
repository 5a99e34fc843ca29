"""The workflow's layout: ``alamp_fast.workflow`` is a package of one module per concern whose
public names are the former single module's, and ``alamp_fast.workflow_cli`` is a deprecated
alias of ``alamp_fast.cli.workflow``."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import alamp_fast.workflow as wf

PACKAGE = Path(wf.__file__).parent

# the former alamp_fast/workflow.py's __all__, and its other public names
FORMER_ALL = [
    "FAULT_ENV", "FAULT_EXIT_CODE", "FAULT_POINTS", "Batch", "LabelReport", "ClusterError",
    "ForeignStateError", "OptionError", "PoolChangedError", "Project", "ProjectLockedError",
]
FORMER_CONSTANTS = {
    "STATE_FILE": "state.npz", "LOCK_FILE": "lock", "IDENTITY_FILE": "project.json",
    "BATCH_DIR": "batches", "FORMAT_VERSION": 1, "CLUSTER_ATTEMPTS": 3,
    "BATCH_COLUMNS": ("rank", "id", "score", "margin", "predicted", "label"),
}


def test_the_public_names_are_the_former_modules():
    assert wf.__all__ == FORMER_ALL
    for name in FORMER_ALL:
        assert getattr(wf, name) is not None
    for name, value in FORMER_CONSTANTS.items():
        assert getattr(wf, name) == value, name
    assert wf.CLI_MESSAGES.get() is False
    assert wf.FAULT_ENV == "ALAMP_FAST_FAULT" and wf.FAULT_EXIT_CODE == 86


def test_every_module_has_a_one_line_docstring_and_stays_small():
    for path in sorted(PACKAGE.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        assert doc, f"{path.name} has no docstring"
        first = doc.split("\n", 1)[0]
        assert first.strip() and len(first) <= 100, f"{path.name}: {first!r}"
        if path.name != "__init__.py":  # the package's is the user guide of the API
            assert "\n" not in doc.strip(), f"{path.name}: the docstring is not one line"
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n <= 500, f"{path.name} has {n} lines"


def test_the_old_cli_path_warns_and_is_the_new_module(monkeypatch):
    import alamp_fast.cli.workflow as new

    monkeypatch.delitem(sys.modules, "alamp_fast.workflow_cli", raising=False)
    with pytest.warns(DeprecationWarning, match=r"import alamp_fast\.cli\.workflow instead"):
        old = importlib.import_module("alamp_fast.workflow_cli")
    assert old is new and sys.modules["alamp_fast.workflow_cli"] is new
    # monkeypatching through the old name reaches the code that runs
    notes = []
    monkeypatch.setattr(old, "_note", notes.extend)
    new._note(["x"])
    assert notes == ["x"]
