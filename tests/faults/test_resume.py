"""F1, F2: a round killed at any step is finished by re-running the same command, once.

F1: ``select --budget N`` killed at its commit refused to resume (it suggested
``--allow-partial``, which discards the round). F2: ``select --allow-partial`` re-run after a
crash started an extra round, and the round in between was never delivered. A round's CSV can
be rewritten from the state with ``alamp-fast export --round N``.
"""

from __future__ import annotations

import shutil

import pytest

from alamp_fast.cli import main
from alamp_fast.workflow import FAULT_ENV, FAULT_EXIT_CODE, Project

from .helpers import one_line_error, run_cli, state_bytes

# from the commit of the state to the end: the round exists, its CSV may or may not
AFTER_COMMIT = ["select:state-renamed", "select:committed", "select:csv-tmp-written",
                "select:csv-renamed", "select:done"]
BEFORE_COMMIT = ["select:queried", "select:state-tmp-written"]


def _reference(project_dir, tmp_path, argv):
    ref = tmp_path / "reference"
    shutil.copytree(project_dir, ref)
    assert main(["select", "-p", str(ref), *argv]) == 0
    proj = Project.open(ref)
    return proj.rounds, proj.batch(proj.rounds)


@pytest.mark.parametrize("fault", BEFORE_COMMIT + AFTER_COMMIT)
def test_select_with_budget_killed_then_rerun_finishes_the_same_round(
    project, tmp_path, capsys, fault
):
    proj_dir, _ = project
    argv = ["--budget", "6"]
    rounds, want = _reference(proj_dir, tmp_path, argv)
    done = run_cli("select", "-p", proj_dir, *argv, env={FAULT_ENV: fault})
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    capsys.readouterr()
    assert main(["select", "-p", str(proj_dir), *argv]) == 0, capsys.readouterr().err
    proj = Project.open(proj_dir)
    assert proj.rounds == rounds == 2
    got = proj.batch(2)
    assert got.rows.tolist() == want.rows.tolist()
    assert got.path.read_bytes() == want.path.read_bytes()
    assert not list(proj_dir.glob(".*.tmp-*")) and not list(proj_dir.glob("batches/.*.tmp-*"))


def _partly_labeled_round_2(project_dir, truth):
    proj = Project.open(project_dir)
    batch = proj.select()
    proj.label({i: truth[i] for i in batch.ids[:3]})  # 3 of 8: the rest never comes
    return proj


@pytest.mark.parametrize("fault", AFTER_COMMIT)
def test_allow_partial_rerun_after_a_crash_delivers_the_round_once(
    project, tmp_path, capsys, fault
):
    proj_dir, truth = project
    _partly_labeled_round_2(proj_dir, truth)
    rounds, want = _reference(proj_dir, tmp_path, ["--allow-partial"])
    assert rounds == 3
    done = run_cli("select", "-p", proj_dir, "--allow-partial", env={FAULT_ENV: fault})
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    capsys.readouterr()
    assert main(["select", "-p", str(proj_dir), "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "round 3" in out, out
    proj = Project.open(proj_dir)
    assert proj.rounds == 3, "the re-run started an extra round: round 3 was never delivered"
    assert proj.batch(3).rows.tolist() == want.rows.tolist()
    assert proj.batch(3).path.read_bytes() == want.path.read_bytes()
    # and again: still round 3, as long as it has no label
    assert main(["select", "-p", str(proj_dir), "--allow-partial"]) == 0
    assert Project.open(proj_dir).rounds == 3


def test_a_round_without_labels_is_never_followed_by_another(project, capsys):
    proj_dir, _ = project
    assert main(["select", "-p", str(proj_dir)]) == 0
    before = state_bytes(proj_dir)
    capsys.readouterr()
    # another size is not "the same command": refused, one line, nothing changed
    assert main(["select", "-p", str(proj_dir), "--budget", "5"]) == 1
    line = one_line_error(capsys.readouterr().err, "select")
    assert "round 2: 8 of 8 samples have no label yet" in line and "--budget 5" in line
    assert "budget=" not in line
    assert state_bytes(proj_dir) == before


def test_export_round_rewrites_the_batch_csv_from_the_state(project, tmp_path, capsys):
    proj_dir, _ = project
    assert main(["select", "-p", str(proj_dir)]) == 0
    proj = Project.open(proj_dir)
    originals = {r: proj.batch(r).path.read_bytes() for r in (1, 2)}
    proj.batch(1).path.unlink()
    proj.batch(2).path.write_text("rank,id\n1,edited by hand\n")
    before = state_bytes(proj_dir)
    for r in (1, 2):
        assert main(["export", "-p", str(proj_dir), "--round", str(r)]) == 0
        assert proj.batch(r).path.read_bytes() == originals[r]
    assert main(["export", "-p", str(proj_dir), "--round", "2", "--out",
                 str(tmp_path / "r2.csv")]) == 0
    assert (tmp_path / "r2.csv").read_bytes() == originals[2]
    assert state_bytes(proj_dir) == before, "export changed the state"
    capsys.readouterr()
    assert main(["export", "-p", str(proj_dir), "--round", "9"]) == 2
    line = one_line_error(capsys.readouterr().err, "export")
    assert "--round 9" in line and "2 round(s)" in line
