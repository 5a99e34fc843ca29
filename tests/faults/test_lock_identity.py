"""F3: the lock survives a deleted lock file, and a dead holder's lock shows as stale in
``status``, which clears it. F4: another project's ``state.npz`` is refused, not adopted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from alamp_fast.cli import main
from alamp_fast.workflow import (
    ForeignStateError,
    Project,
    ProjectLockedError,
)

from .helpers import REPO, make_project, one_line_error, state_bytes

HOLD = """
import sys, time
from pathlib import Path
from alamp_fast.workflow.lock import _ProjectLock
with _ProjectLock(Path(sys.argv[1]), "label"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(project_dir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(project_dir)], stdout=subprocess.PIPE,
                         text=True, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def test_deleting_the_lock_file_does_not_let_a_second_process_in(project):
    proj_dir, truth = project
    batch = Project.open(proj_dir).select()
    before = state_bytes(proj_dir)
    holder = _holder(proj_dir)
    try:
        (proj_dir / "lock").unlink()  # "a stale file", says the user
        with pytest.raises(ProjectLockedError, match="is in use by"):
            Project.open(proj_dir).label({i: truth[i] for i in batch.ids})
        with pytest.raises(ProjectLockedError):
            Project.open(proj_dir).select()
        assert state_bytes(proj_dir) == before
    finally:
        holder.kill()
        holder.wait()
    rep = Project.open(proj_dir).label({i: truth[i] for i in batch.ids})
    assert rep.new == len(batch)


def test_a_dead_holders_lock_is_stale_in_status_and_cleared(project, capsys):
    proj_dir, _ = project
    holder = _holder(proj_dir)
    st = Project.open(proj_dir).status(cv=0)
    assert st["lock"]["pid"] == holder.pid and st["lock"]["stale"] is False
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert main(["status", "-p", str(proj_dir), "--cv", "0"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("lock"))
    assert f"stale: left by pid {holder.pid}" in line and "cleared" in line, out
    # cleared: the next status shows no lock, and the project works
    st = Project.open(proj_dir).status(cv=0)
    assert st["lock"] is None
    assert Project.open(proj_dir).select().round == 2


def test_lock_of_a_running_holder_is_not_cleared_by_status(project):
    proj_dir, _ = project
    holder = _holder(proj_dir)
    try:
        for _ in range(2):
            lock = Project.open(proj_dir).status(cv=0)["lock"]
            assert lock["pid"] == holder.pid and not lock["stale"]
        with pytest.raises(ProjectLockedError):
            Project.open(proj_dir).select()
    finally:
        holder.kill()
        holder.wait()


def test_state_of_another_project_is_refused(tmp_path, frng, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_dir, _ = make_project(tmp_path / "a", frng)
    b_dir, _ = make_project(tmp_path / "b", frng)
    csvs = {p.name: p.read_bytes() for p in (a_dir / "batches").glob("*.csv")}
    shutil.copy(b_dir / "state.npz", a_dir / "state.npz")
    swapped = state_bytes(a_dir)
    with pytest.raises(ForeignStateError, match="is the state of another project"):
        Project.open(a_dir)
    for argv in (["select", "-p", str(a_dir)], ["status", "-p", str(a_dir)]):
        assert main(argv) == 1
        line = one_line_error(capsys.readouterr().err, argv[0])
        assert "another project" in line and str(a_dir) in line
    assert state_bytes(a_dir) == swapped
    assert {p.name: p.read_bytes() for p in (a_dir / "batches").glob("*.csv")} == csvs
    # B's own directory still works with it
    assert Project.open(b_dir).status(cv=0)["rounds"] == 1


def test_project_made_before_identities_gets_one(project):
    proj_dir, truth = project
    (proj_dir / "project.json").unlink()  # as a project of an older version
    proj = Project.open(proj_dir)
    batch = proj.select()
    assert (proj_dir / "project.json").exists()
    proj.label({i: truth[i] for i in batch.ids})
    assert np.sum(Project.open(proj_dir).labels_array() >= 0) == 24
