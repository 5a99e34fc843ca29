"""Crash safety of annotation rounds: an abort at every fault point, real SIGKILLs, bad input.

The crashing processes are real: children of a multiprocessing "forkserver" (forked from a
server that imported the package once, so a child starts fast and inherits no thread of the
test process) or, once, a fresh ``python -m alamp_fast``. A fault point ends its process with
``os._exit`` (no cleanup runs, as with a kill); a SIGKILL lands at a random time. Then the
rounds are resumed the way a user would, by re-running the commands, and everything must
match an uninterrupted run: every batch CSV byte for byte, every label exactly once, the
strategy's state. Bad input must leave ``state.npz`` byte for byte as it was.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_exact
from test_workflow import NAMES, drive, make_pool, state_bytes, truth_by_id, write_pool

import alamp_fast as af
from alamp_fast.al.strategies import get_strategy
from alamp_fast.cli import main
from alamp_fast.workflow import (
    FAULT_ENV,
    FAULT_EXIT_CODE,
    FAULT_POINTS,
    STATE_FILE,
    PoolChangedError,
    Project,
    ProjectLockedError,
)
from alamp_fast.workflow.lock import _ProjectLock
from alamp_fast.workflow.state import _State

ROUNDS = 4  # the template holds 2 labeled rounds; children run rounds 3 and 4
HERE = Path(__file__).resolve().parent
CTX = mp.get_context("forkserver")
CTX.set_forkserver_preload(["test_workflow_faults"])


def _warm_kernels() -> None:
    # Load the numba kernels (from numba's cache) at import: the forkserver imports this
    # module, so its children inherit them: 1.8 s -> 0.4 s per child here.
    p = np.random.default_rng(0).random((40, 5))
    for name in ("alamp", "alamp-div", "margin"):
        s = get_strategy(name)
        s.query(p, 3)
        s.query(p, 3, labeled=[0, 1])
    af.entropy(p)


_warm_kernels()


@pytest.fixture(scope="module", autouse=True)
def _forkserver():
    # Python 3.11's forkserver does not take the parent's sys.path, so without PYTHONPATH the
    # preload of this module fails silently and every child imports pytest, sklearn, ... anew.
    from multiprocessing import forkserver

    # PYTHONPATH: this folder (this module, test_workflow) and tests/ (conftest, reference).
    # PYTHONSAFEPATH: no current directory ahead of it, where a conftest.py of the repository
    # root would shadow tests/conftest.py (the package itself is installed)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), str(HERE.parent), saved["PYTHONPATH"]) if p
    )
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
        assert run_child(os.getpid) == 0  # returns once the server has imported this module
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- children


def _child_drive(project_dir, truth, n_rounds, work_dir, fault) -> None:
    if fault:
        os.environ[FAULT_ENV] = fault
    drive(project_dir, truth, n_rounds, work_dir)


def _child_init(project_dir, pool, fault) -> None:
    os.environ[FAULT_ENV] = fault
    Project.init(project_dir, pool, **INIT_KW)


def _child_hold_lock(project_dir) -> None:
    with _ProjectLock(Path(project_dir), "select"):
        time.sleep(120)


def run_child(target, *args, timeout=60) -> int:
    p = CTX.Process(target=target, args=args)
    p.start()
    p.join(timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
        pytest.fail(f"child {target.__name__}{args} did not finish in {timeout} s")
    return p.exitcode


# ----------------------------------------------------------------------------- fixtures


INIT_KW = dict(classes=NAMES, strategy="alamp-div", budget=8, init=16, classifier="linear-svc",
               cost_sensitive=False, seed=21)


def snapshot(project_dir) -> dict:
    """What an uninterrupted run must reproduce (times excluded)."""
    proj = Project.open(project_dir)
    st = _State.read(Path(project_dir))
    return {
        "csv": {r: proj.batch(r).path.read_bytes() for r in range(1, proj.rounds + 1)},
        "labels": [{k: v for k, v in e.items() if k != "time"} for e in proj.labels()],
        "rounds": [{k: v for k, v in r.items() if k != "time"} for r in st.meta["rounds"]],
        "ingests": [{k: v for k, v in r.items() if k != "time"} for r in st.meta["ingests"]],
        "arrays": {**{f"strategy.{k}": v for k, v in st.strategy.items()},
                   **{f"batch.{k}": v for k, v in st.batches.items()}},
    }


def assert_matches_reference(project_dir, reference: dict) -> None:
    got = snapshot(project_dir)
    ids = [e["id"] for e in got["labels"]]
    assert len(ids) == len(set(ids)), "a sample was labeled twice"
    assert len(ids) == 16 + 8 * (ROUNDS - 1), "a label was lost"
    for key in ("labels", "rounds", "ingests"):
        assert got[key] == reference[key], key
    assert got["arrays"].keys() == reference["arrays"].keys()
    for key, value in reference["arrays"].items():  # NaN (no score) compares equal here
        np.testing.assert_array_equal(got["arrays"][key], value, err_msg=key, strict=True)
    assert got["csv"].keys() == reference["csv"].keys()
    for r, content in reference["csv"].items():
        assert got["csv"][r] == content, f"batch CSV of round {r}"
    leftovers = [p for d in (Path(project_dir), Path(project_dir) / "batches")
                 for p in d.glob(".*.tmp-*")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pool, its truth, a project with 2 labeled rounds, and the uninterrupted reference."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(20240606)
    X, y, _ = make_pool(rng, n=120)
    pool = write_pool(root / "pool.npy", X)
    truth = truth_by_id(y)
    template = root / "template"
    Project.init(template, pool, **INIT_KW)
    drive(template, truth, 2, root)
    reference = root / "reference"
    shutil.copytree(template, reference)
    drive(reference, truth, ROUNDS, root)
    return {"pool": pool, "truth": truth, "template": template, "reference": snapshot(reference)}


def fresh_copy(world, tmp_path) -> Path:
    target = tmp_path / "proj"
    shutil.copytree(world["template"], target)
    return target


# ----------------------------------------------------------------------------- fault points


@pytest.mark.parametrize("fault", [p for p in FAULT_POINTS if not p.startswith("init:")])
def test_abort_at_fault_point_then_resume(world, tmp_path, fault):
    proj_dir = fresh_copy(world, tmp_path)
    before = state_bytes(proj_dir)
    generation = _State.read(proj_dir).meta["generation"]
    code = run_child(_child_drive, proj_dir, world["truth"], ROUNDS, tmp_path, fault)
    assert code == FAULT_EXIT_CODE, f"the child did not stop at {fault} (exit code {code})"

    # old state or new state, never a mix: readable, one commit at most, bytes of the old one
    # when not committed
    st = _State.read(proj_dir)
    committed = fault.endswith(("-renamed", "committed", ":done")) or fault.startswith(
        "select:csv")
    if fault.startswith("label:"):  # label comes after round 3's select, committed before
        generation += 1
        before = None
    assert st.meta["generation"] == generation + committed
    if before is not None and not committed:
        assert state_bytes(proj_dir) == before

    drive(proj_dir, world["truth"], ROUNDS, tmp_path)  # resume: re-run the commands
    assert_matches_reference(proj_dir, world["reference"])


@pytest.mark.parametrize("fault", [p for p in FAULT_POINTS if p.startswith("init:")])
def test_abort_during_init_then_init_or_open(world, tmp_path, fault):
    proj_dir = tmp_path / "proj"
    assert run_child(_child_init, proj_dir, world["pool"], fault) == FAULT_EXIT_CODE
    if (proj_dir / STATE_FILE).exists():
        assert fault in ("init:state-renamed", "init:committed")
        proj = Project.open(proj_dir)
        with pytest.raises(ValueError, match="already an alamp-fast project"):
            Project.init(proj_dir, world["pool"], **INIT_KW)
    else:
        with pytest.raises(FileNotFoundError, match="interrupted: run init again"):
            Project.open(proj_dir)
        proj = Project.init(proj_dir, world["pool"], **INIT_KW)
    assert proj.rounds == 0 and proj.settings["strategy"] == "alamp-div"
    drive(proj_dir, world["truth"], 2, tmp_path)
    assert_exact(Project.open(proj_dir).labels_array(),
                 Project.open(world["template"]).labels_array(), "labels after 2 rounds")


def test_fault_hook_through_the_real_cli(world, tmp_path):
    # A fresh interpreter running the console entry point, aborted between rename and fsync.
    proj_dir = fresh_copy(world, tmp_path)
    env = {**os.environ, FAULT_ENV: "select:state-renamed"}
    done = subprocess.run([sys.executable, "-m", "alamp_fast", "select", "-p", str(proj_dir)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    assert "fault injected at select:state-renamed" in done.stderr
    assert not (proj_dir / "batches" / "round-003.csv").exists()
    assert main(["select", "-p", str(proj_dir)]) == 0  # hands round 3 back, writes its CSV
    drive(proj_dir, world["truth"], ROUNDS, tmp_path)
    assert_matches_reference(proj_dir, world["reference"])


def test_sigkill_at_random_times_then_resume(world, tmp_path):
    rng = np.random.default_rng(7)
    # how long an uninterrupted child takes for rounds 3-4 (startup included)
    probe = fresh_copy(world, tmp_path / "probe")
    t0 = time.perf_counter()
    assert run_child(_child_drive, probe, world["truth"], ROUNDS, tmp_path, None) == 0
    duration = time.perf_counter() - t0
    assert_matches_reference(probe, world["reference"])
    start, final = (2, 24), (ROUNDS, 16 + 8 * (ROUNDS - 1))
    outcomes = []
    # six kills, more (up to 12) until one lands mid-run after some progress: on a busy
    # machine many land in the child's start-up, which proves little
    for k in range(12):
        proj_dir = fresh_copy(world, tmp_path / f"kill{k}")
        state_file = proj_dir / "state.npz"
        before = state_file.stat().st_mtime_ns
        p = CTX.Process(target=_child_drive,
                        args=(proj_dir, world["truth"], ROUNDS, tmp_path, None))
        p.start()
        if k % 2:
            # every other kill waits for the child's first commit, then lands at a random
            # point of the rest: a slow start-up on a busy machine cannot absorb all kills
            deadline = time.monotonic() + 120
            while (state_file.stat().st_mtime_ns == before and p.is_alive()
                   and time.monotonic() < deadline):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.5) * duration / ROUNDS)
        else:
            time.sleep(rng.uniform(0.0, 1.0) * duration)
        p.kill()
        p.join(30)
        interrupted = Project.open(proj_dir)
        outcomes.append((p.exitcode, interrupted.rounds, len(interrupted.labels())))
        drive(proj_dir, world["truth"], ROUNDS, tmp_path)
        assert_matches_reference(proj_dir, world["reference"])
        mid_run = [o for o in outcomes if o[0] == -9 and o[1:] not in (start, final)]
        if k >= 5 and mid_run:
            break
    assert mid_run, outcomes


# ----------------------------------------------------------------------------- concurrency


def test_second_process_is_refused_and_a_dead_holder_is_taken_over(world, tmp_path, capsys):
    proj_dir = fresh_copy(world, tmp_path)
    before = state_bytes(proj_dir)
    holder = CTX.Process(target=_child_hold_lock, args=(proj_dir,))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while (proj_dir / "lock").stat().st_size == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.02)
        with pytest.raises(ProjectLockedError, match=rf"in use by pid {holder.pid} on .*"
                                                     r"alamp-fast select, since"):
            Project.open(proj_dir).select()
        with pytest.raises(ProjectLockedError):
            Project.open(proj_dir).label({"0": NAMES[0]})
        assert main(["select", "-p", str(proj_dir)]) == 1  # a failure, not a bad option
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {holder.pid}" in err and "retry" in err
        assert Project.open(proj_dir).status(cv=0)["lock"]["pid"] == holder.pid
        assert state_bytes(proj_dir) == before
    finally:
        holder.kill()
        holder.join()
    # the holder died with its pid still in the lock file: taken over, with a note
    proj = Project.open(proj_dir)
    assert proj.select().round == 3
    assert len(proj.notes) == 1
    assert f"pid {holder.pid}" in proj.notes[0] and "no longer running" in proj.notes[0]
    assert Project.open(proj_dir).status(cv=0)["lock"] is None


# ----------------------------------------------------------------------------- bad input


def _pending_project(world, tmp_path) -> tuple[Path, list[str]]:
    proj_dir = fresh_copy(world, tmp_path)
    batch = Project.open(proj_dir).select()
    return proj_dir, batch.ids


BAD_FILES = {
    "unknown id": (b"id,label\n{a},c0\nnot-a-sample,c1\n",
                   r"ids not in the project's pool \(1\): 'not-a-sample' \(line 3\)"),
    "unknown class": (b"id,label\n{a},c0\n{b},dog\n{c},Cat\n",
                      r"unknown class names \(2\): 'dog' \(line 3\), 'Cat' \(line 4\) \(the "
                      r"classes are c0, c1, c2, c3, c4\)"),
    "empty": (b"", r"empty.csv is empty"),
    "blank lines only": (b"\n \n,,\n", r"blank_lines_only.csv is empty"),
    "header only": (b"\xef\xbb\xbfid,label\n", r"has a header but no rows"),
    "no label column": (b"id,class\n{a},c0\n", r"has no 'label' column \(its header is "
                                               r"'id,class'\)"),
    "every label empty": (b"id,label,note\n{a},,x\n{b},,y\n", r"holds no labels \(2 row"),
    "same id twice": (b"id,label\n{a},c0\n{a},c1\n",
                      r"ids given more than once \(1\): '{a}' \(line 2, line 3\)"),
    "label without id": (b"id,label\n,c0\n", r"line 2: label 'c0' has an empty 'id'"),
    "not utf-8": (b"id,label\n{a},caf\xe9\n", r"is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_label_files_leave_the_state_untouched(world, tmp_path, capsys, case):
    proj_dir, ids = _pending_project(world, tmp_path)
    content, message = BAD_FILES[case]
    fill = {"a": ids[0], "b": ids[1], "c": ids[2]}
    content = content.replace(b"{a}", fill["a"].encode()).replace(
        b"{b}", fill["b"].encode()).replace(b"{c}", fill["c"].encode())
    message = message.replace("{a}", fill["a"])
    f = tmp_path / (case.replace(" ", "_").replace("-", "_") + ".csv")
    f.write_bytes(content)
    before = state_bytes(proj_dir)
    listing = sorted(os.listdir(proj_dir / "batches"))
    with pytest.raises(ValueError, match=message):
        Project.open(proj_dir).label(f)
    assert main(["label", "-p", str(proj_dir), str(f)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alamp-fast label: error: ") and err.count("\n") == 1, err
    assert state_bytes(proj_dir) == before
    assert sorted(os.listdir(proj_dir / "batches")) == listing


def test_bom_and_extra_columns_are_read_not_refused(world, tmp_path):
    proj_dir, ids = _pending_project(world, tmp_path)
    truth = world["truth"]
    f = tmp_path / "excel.csv"
    lines = ["annotator,id,comment,label,rank"]
    lines += [f"ann{k},{i},looks fine,{truth[i]},{k}" for k, i in enumerate(ids)]
    f.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    rep = Project.open(proj_dir).label(f)
    assert (rep.new, rep.pending) == (len(ids), 0)


def test_changed_pool_is_refused_and_the_state_untouched(tmp_path, rng):
    X, y, _ = make_pool(rng, n=60)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, budget=5, classifier="linear-svc")
    proj.label({i: t for i, t in truth_by_id(y).items() if i in proj.select().ids})
    cases = {
        "edited": (X + np.float32(1e-3) * (np.arange(60) == 17)[:, None],
                   r"features of its first 60 rows differ"),
        "shrunk": (X[:-1], r"it has 59 rows, the project's had 60"),
        "reordered": (X[::-1], r"features of its first 60 rows differ"),
        "wider": (np.concatenate([X, X[:, :1]], axis=1), r"rows have 11 features"),
    }
    before = state_bytes(proj.path)
    listing = sorted(os.listdir(proj.path / "batches"))
    for name, (bad, msg) in cases.items():
        write_pool(pool, bad)
        with pytest.raises(PoolChangedError, match=msg):
            proj.select()
        assert main(["select", "-p", str(proj.path)]) == 1
        assert state_bytes(proj.path) == before, name
        assert sorted(os.listdir(proj.path / "batches")) == listing
        assert "pool unavailable" in proj.status()["cv_note"]
    # a moved pool is fine once pointed at; the move is recorded by the next select
    write_pool(pool, X)
    os.replace(pool, tmp_path / "moved.npy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        proj.select()
    moved = Project.open(proj.path, pool=tmp_path / "moved.npy")
    assert moved.select().round == 2
    assert Project.open(proj.path).status(cv=0)["pool"]["path"] == str(tmp_path / "moved.npy")


def test_ids_file_that_changed_is_refused(tmp_path, rng):
    X, _, _ = make_pool(rng, n=30)
    pool = write_pool(tmp_path / "pool.npy", X)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"s{i}" for i in range(30)))
    proj = Project.init(tmp_path / "p", pool, ids=ids, classes=NAMES, budget=5,
                        classifier="linear-svc")
    before = state_bytes(proj.path)
    ids.write_text("\n".join(f"s{i}" for i in [1, 0] + list(range(2, 30))))
    with pytest.raises(PoolChangedError, match=r"sample id of row 0 is 's1', the project's "
                                               r"was 's0'"):
        proj.select()
    assert state_bytes(proj.path) == before
