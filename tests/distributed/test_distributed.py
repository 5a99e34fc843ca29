"""Dask inputs: every call equals the single-process call on the concatenated pool.

A ``LocalCluster`` of two worker processes (one thread each, loopback only) runs the chunks.
Pools are random with heavy ties, chunks are uneven (empty ones included) and some hold no
candidate at all; a worker is killed in the middle of a selection and of a k-center run, and
the result must still be exactly right, while a chunk that kills every worker running it must
end the call with an error, not a selection.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import reference as ref
from conftest import _cuda_skip_reason, assert_exact

import alamp_fast as af
from alamp_fast import distributed as afd


def uneven_chunks(rng, n: int, parts: int) -> tuple[int, ...]:
    """``parts`` row chunks of random sizes summing to ``n``, at least one of them empty."""
    cuts = np.sort(rng.integers(0, n + 1, parts - 2))
    sizes = np.diff(np.concatenate([[0], cuts, [n]])).tolist()
    sizes.insert(int(rng.integers(0, len(sizes) + 1)), 0)
    return tuple(int(s) for s in sizes)


def as_dask(x: np.ndarray, rows: tuple[int, ...]):
    return da.from_array(x, chunks=(rows,) + x.shape[1:])


def chunk_bounds(rows):
    stops = np.cumsum(rows)
    return list(zip((stops - np.asarray(rows)).tolist(), stops.tolist(), strict=True))


def exclusion(rng, rows, n: int) -> np.ndarray:
    """Every row of the largest chunk (a chunk with no candidate) and a random tenth of the rest,
    in random order."""
    lo, hi = max(chunk_bounds(rows), key=lambda b: b[1] - b[0])
    others = rng.choice(n, n // 10, replace=False)
    ex = np.union1d(np.arange(lo, hi), others)
    return rng.permutation(ex)


def tied_scores(rng, n: int, dtype) -> np.ndarray:
    """Few distinct values: most of the order is decided by the index tie rule."""
    return rng.choice(np.array([-1.5, 0.0, 0.25, 2.0]), n).astype(dtype)


# ---------------------------------------------------------------------------------------------
# no cluster: dask's local threads (these run before the cluster fixture starts)


def test_without_a_cluster_dask_inputs_run_in_this_process(rng):
    assert afd._current_client() is None, "a distributed client exists; this test needs none"
    n = 600
    rows = uneven_chunks(rng, n, 5)
    P = rng.random((n, 5)).astype(np.float32)
    m, top = af.top2_margin(as_dask(P, rows))
    want_m, want_top = af.top2_margin(P)
    assert_exact(m.compute(), want_m, "margin", dtype=np.float32)
    assert_exact(top.compute(), want_top, "top_class", dtype=np.int64)
    s = tied_scores(rng, n, np.float32)
    ex = exclusion(rng, rows, n)
    assert_exact(af.select_top(as_dask(s, rows), 50, exclude=ex), af.select_top(s, 50, exclude=ex))
    assert_exact(
        af.diversify(as_dask(s, rows), want_top, 50, exclude=ex),
        af.diversify(s, want_top, 50, exclude=ex),
    )
    assert_exact(af.kcenter_greedy(as_dask(P, rows), ex[:5], 10), af.kcenter_greedy(P, ex[:5], 10))


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_skip_reason("cupy") is not None, reason=str(_cuda_skip_reason("cupy")))
def test_cupy_chunks_are_scored_where_they_live(rng):
    import cupy

    n = 1000
    rows = uneven_chunks(rng, n, 4)
    P = (rng.integers(0, 5, (n, 6)) / 4).astype(np.float32)
    Pd = as_dask(P, rows).map_blocks(cupy.asarray)
    m, top = af.top2_margin(Pd)
    got = m.compute()
    assert isinstance(got, cupy.ndarray), f"margin chunks came back as {type(got)}"
    want_m, want_top = af.top2_margin(P)
    assert_exact(got.get(), want_m, "margin")
    assert_exact(top.compute().get(), want_top, "top_class")
    prev = rng.random(n).astype(np.float32)
    want_s = af.alamp_score(prev, want_m)
    assert_exact(af.select_top(af.alamp_score(prev, m), 20), af.select_top(want_s, 20))
    assert_exact(af.diversify(af.alamp_score(prev, m), top, 20), af.diversify(want_s, want_top, 20))


def test_get_client_reports_an_unreachable_scheduler():
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        afd.get_client("tcp://127.0.0.1:9", timeout=1)


def test_add_scheduler_argument():
    parser = argparse.ArgumentParser()
    afd.add_scheduler_argument(parser)
    assert parser.parse_args([]).scheduler is None
    assert parser.parse_args(["--scheduler", "tcp://h:8786"]).scheduler == "tcp://h:8786"


def test_the_package_keeps_the_module_names(tmp_path, monkeypatch):
    # alamp_fast.distributed was one module: its public names, the dispatch registry and the
    # names other code imported from it stay; each kernel is the submodule's own function
    import pickle

    from alamp_fast.distributed import client, diversify, kcenter, topk

    assert set(afd.__all__) == {"IMPLS", "get_client", "add_scheduler_argument", "from_memmap"}
    assert afd.get_client is client.get_client and afd.from_memmap is client.from_memmap
    assert afd._current_client is client._current_client
    assert afd.IMPLS["select_top"] is topk._select_top
    assert afd.IMPLS["diversify"] is diversify._diversify
    assert afd.IMPLS["kcenter_greedy"] is kcenter._kcenter_greedy
    assert sorted(afd.IMPLS) == sorted(
        ["top2_margin", "margin", "entropy", "least_confidence", "alamp_score", "select_top",
         "diversify", "kcenter_greedy"])
    # a file reader pickled under the module path it had before the split still loads
    path = tmp_path / "pool.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    from alamp_fast.outofcore import file_source

    reader = client._FileRows(*file_source(np.load(path, mmap_mode="r")), (4, 3),
                              np.dtype(np.float32))
    monkeypatch.setattr(client._FileRows, "__module__", "alamp_fast.distributed")
    blob = pickle.dumps(reader)
    monkeypatch.undo()
    assert b"alamp_fast.distributed.client" not in blob
    np.testing.assert_array_equal(pickle.loads(blob)[1:3], np.load(path)[1:3])


# ---------------------------------------------------------------------------------------------
# losing workers: helpers (the tests are spread among the others, so that the seconds a nanny
# takes to restart a killed worker overlap with other tests)


def _slow(block, delay: float):
    time.sleep(delay)
    return block


# Tests that kill Dask workers run in a fresh interpreter of their own. In the process that
# has imported torch (the whole suite does, through the finetune and integrations modules),
# a LocalCluster whose worker is killed stops hearing from its nannies: the call then waits
# forever instead of retrying or raising KilledWorker. A fresh process is what a user's
# `select --scheduler` or a script calling af.* on dask arrays is, too.
_FRESH_CHILD = "ALAMP_FAST_TEST_FRESH_INTERPRETER"


def in_fresh_interpreter(test):
    if os.environ.get(_FRESH_CHILD) == "1":
        return test

    def run_in_child():
        root = Path(__file__).resolve().parents[2]
        node = f"{Path(__file__).resolve()}::{test.__name__}"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", "-W", "ignore::DeprecationWarning", node]
        try:
            out = subprocess.run(cmd, cwd=root, env={**os.environ, _FRESH_CHILD: "1"},
                                 capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{test.__name__} did not finish in 600 s in its own interpreter:\n"
                        f"{(exc.stdout or '')[-3000:]}")
        assert out.returncode == 0, (
            f"{test.__name__} failed in its own interpreter (exit {out.returncode}):\n"
            + (out.stdout + out.stderr)[-6000:]
        )
        assert " passed" in out.stdout, out.stdout[-3000:]

    run_in_child.__name__ = test.__name__
    run_in_child.__doc__ = test.__doc__
    return run_in_child


class WorkerKiller:
    """SIGKILL one worker process (started by this test's cluster) ``delay`` seconds after
    start; its nanny then restarts it under a new address."""

    def __init__(self, client, delay: float):
        self.client = client
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        self.victim = sorted(pids)[0]
        self.killed_at = None

        def kill():
            time.sleep(delay)
            os.kill(pids[self.victim], signal.SIGKILL)
            self.killed_at = time.monotonic()

        self.thread = threading.Thread(target=kill, daemon=True)
        self.thread.start()

    def check_killed_before(self, finished_at: float) -> None:
        """The kill happened, and before the call returned: the test proved something."""
        self.thread.join()
        assert self.killed_at is not None and self.killed_at < finished_at, (
            "the worker was killed after the call returned"
        )
        workers = set(self.client.scheduler_info()["workers"])
        assert self.victim not in workers, f"worker {self.victim} is still alive"


# ---------------------------------------------------------------------------------------------
# on a cluster


@contextlib.contextmanager
def _local_client():
    # one retry per task: a single worker loss is survived, a task that kills every worker it
    # runs on fails after two deaths instead of four (read by the scheduler, in this process)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client():
    with _local_client() as c:
        yield c


@pytest.fixture
def fresh_client():
    """A cluster of its own, for a test that kills workers: restarting them on a loaded
    machine can outlast the test, and the shared cluster must not depend on it."""
    with _local_client() as c:
        yield c


@in_fresh_interpreter
def test_selection_survives_a_worker_killed_mid_run(fresh_client, rng):
    n = 4000
    s = tied_scores(rng, n, np.float32)
    pc = rng.integers(0, 4, n)
    ex = rng.choice(n, 300, replace=False)
    # 10 chunks of 0.25 s on 2 workers: the kill at 0.4 s lands while chunks are running
    sd = as_dask(s, (400,) * 10).map_blocks(_slow, 0.25, meta=s[:0])
    killer = WorkerKiller(fresh_client, 0.4)
    got = af.diversify(sd, pc, 120, exclude=ex)
    killer.check_killed_before(time.monotonic())
    assert_exact(got, af.diversify(s, pc, 120, exclude=ex), "diversify after a worker loss")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_scoring_is_lazy_and_identical(client, rng, dtype):
    n, C = 1500, 7
    rows = uneven_chunks(rng, n, 6)
    # quarters: the top two values often tie (margin 0, argmax to the lower class)
    P = (rng.integers(0, 5, (n, C)) / 4).astype(dtype)
    # columns split in two chunks too: a row must be reassembled before the kernels see it
    Pd = da.from_array(P, chunks=(rows, (3, C - 3)))
    m, top = af.top2_margin(Pd)
    assert isinstance(m, da.Array) and isinstance(top, da.Array)
    want_m, want_top = af.top2_margin(P)
    got_m, got_top = da.compute(m, top)
    assert_exact(got_m, want_m, "margin", dtype=want_m.dtype)
    assert_exact(got_top, want_top, "top_class", dtype=np.int64)
    for fn in (af.margin, af.entropy, af.least_confidence):
        want = fn(P)
        assert_exact(fn(Pd).compute(), want, fn.__name__, dtype=want.dtype)
    prev = (rng.integers(0, 5, n) / 4).astype(np.float32)
    want = af.alamp_score(prev, want_m)
    # numpy and dask mixed, dask chunks different from the margins'
    got = af.alamp_score(as_dask(prev, uneven_chunks(rng, n, 4)), m).compute()
    assert_exact(got, want, "alamp_score", dtype=want.dtype)
    assert_exact(af.alamp_score(prev, m).compute(), want, "alamp_score (numpy prev)")


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_select_top_is_identical(client, rng, largest, dtype):
    n = 2000
    rows = uneven_chunks(rng, n, 7)
    s = tied_scores(rng, n, np.float64) * (4 if dtype == np.int64 else 1)
    s = s.astype(dtype)
    ex = exclusion(rng, rows, n)
    sd = as_dask(s, rows)
    free = n - ex.size
    for b in (0, 1, 9, free // 3, free):
        want = af.select_top(s, b, exclude=ex, largest=largest)
        assert_exact(af.select_top(sd, b, exclude=ex, largest=largest), want, f"b={b}")
    # a dask boolean mask as exclude, and no exclude
    mask = np.zeros(n, dtype=bool)
    mask[ex] = True
    want = af.select_top(s, 40, exclude=mask, largest=largest)
    got = af.select_top(sd, 40, exclude=as_dask(mask, rows), largest=largest)
    assert_exact(got, want, "mask exclude")
    assert_exact(af.select_top(sd, 40, largest=largest), af.select_top(s, 40, largest=largest))


@pytest.mark.parametrize("labels", ["dense", "sparse-negative"])
@pytest.mark.parametrize("largest", [True, False])
def test_diversify_is_identical(client, rng, labels, largest):
    n = 2000
    rows = uneven_chunks(rng, n, 7)
    s = tied_scores(rng, n, np.float32)
    if labels == "dense":  # one large class, several small ones: passes end at different depths
        pc = np.where(rng.random(n) < 0.6, 0, rng.integers(1, 6, n))
    else:  # labels that are no bucket numbers: the np.unique path
        pc = rng.choice(np.array([-(10**12), -3, 7, 10**15]), n)
    ex = exclusion(rng, rows, n)
    sd = as_dask(s, rows)
    pcd = as_dask(pc, uneven_chunks(rng, n, 5))  # chunked unlike the scores
    free = n - ex.size
    for b in (0, 1, 4, 5, 37, free // 2, free):
        want = af.diversify(s, pc, b, exclude=ex, largest=largest)
        assert_exact(af.diversify(sd, pcd, b, exclude=ex, largest=largest), want, f"b={b}")
    want = af.diversify(s, pc, 60, largest=largest)
    assert_exact(af.diversify(sd, pc, 60, largest=largest), want, "numpy pseudo_class")


@in_fresh_interpreter
def test_kcenter_survives_a_worker_killed_mid_run(fresh_client, rng):
    n = 3000
    X = rng.standard_normal((n, 4)).astype(np.float32)
    labeled = rng.choice(n, 20, replace=False)
    killer = WorkerKiller(fresh_client, 1.0)
    got = af.kcenter_greedy(as_dask(X, (500,) * 6), labeled, 40)
    killer.check_killed_before(time.monotonic())
    assert_exact(got, af.kcenter_greedy(X, labeled, 40), "kcenter after a worker loss")


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_kcenter_greedy_is_identical(client, rng, dtype):
    n, d = 900, 3
    rows = uneven_chunks(rng, n, 6)
    # a small integer grid: many equal distances, so every step exercises the tie rule
    X = rng.integers(0, 4, (n, d)).astype(dtype)
    Xd = as_dask(X, rows)
    lo, hi = max(chunk_bounds(rows), key=lambda b: b[1] - b[0])
    cases = {
        "no labeled": np.empty(0, dtype=np.int64),
        "a whole chunk labeled": rng.permutation(np.union1d(np.arange(lo, hi), [0, n - 1])),
        "mask": rng.random(n) < 0.05,
    }
    for what, labeled in cases.items():
        want = af.kcenter_greedy(X, labeled, 12)
        assert_exact(af.kcenter_greedy(Xd, labeled, 12), want, what)
    assert_exact(af.kcenter_greedy(Xd, [3], 0), np.empty(0, dtype=np.int64), "b=0")


def test_kcenter_lazy_chunks_until_every_row_is_picked(client, rng):
    # the chunks' lazy heaps run dry one after another (b = every candidate), with float32
    # rows whose distances are all distinct and many centers folded in per update
    n = 150
    X = rng.standard_normal((n, 16)).astype(np.float32)
    Xd = as_dask(X, uneven_chunks(rng, n, 5))
    labeled = rng.choice(n, 7, replace=False)
    b = n - labeled.size
    assert_exact(af.kcenter_greedy(Xd, labeled, b), ref.kcenter_greedy(X, labeled, b), "all")


def test_memmap_pool_scored_and_selected_on_the_workers(client, rng, tmp_path):
    n, C = 3000, 6
    P = rng.random((n, C)).astype(np.float16)
    np.save(tmp_path / "probs.npy", P)
    pool = np.load(tmp_path / "probs.npy", mmap_mode="r")
    Pd = afd.from_memmap(pool, chunk_rows=700)
    assert Pd.chunks[0] == (700, 700, 700, 700, 200)
    prev = rng.random(n).astype(np.float32)
    m, top = af.top2_margin(Pd)
    s = af.alamp_score(prev, m)
    want_m, want_top = af.top2_margin(P)
    want_s = af.alamp_score(prev, want_m)
    assert_exact(af.select_top(s, 25), af.select_top(want_s, 25), "select_top")
    assert_exact(af.diversify(s, top, 25), af.diversify(want_s, want_top, 25), "diversify")
    with pytest.raises(TypeError, match="file-backed np.memmap"):
        afd.from_memmap(pool[10:])


def test_get_client_connects_to_a_running_scheduler(client, rng):
    address = client.scheduler.address
    with afd.get_client(address, timeout=10) as other:
        assert distributed.default_client() is other
        s = tied_scores(rng, 500, np.float64)
        assert_exact(af.select_top(as_dask(s, (100, 400)), 7), af.select_top(s, 7))
    assert distributed.default_client() is client, "closing a second client lost the first"
    with pytest.raises(TypeError, match=r"cluster options \['n_workers'\] only apply"):
        afd.get_client(address, n_workers=3)


def test_errors_name_the_bad_value(client, rng):
    n = 300
    rows = (100, 0, 150, 50)
    s = rng.random(n)
    s[260] = np.nan
    with pytest.raises(ValueError, match=r"pool rows 250:300 .*scores\[10\] = nan"):
        af.select_top(as_dask(s, rows), 5)
    P = rng.random((n, 3))
    P[120, 2] = np.inf
    with pytest.raises(ValueError, match=r"pool rows 100:250 .*probs\[20, 2\] = inf"):
        af.margin(as_dask(P, rows)).compute()
    with pytest.raises(ValueError, match=r"pool rows 100:250 .*features\[20, 2\] = inf"):
        af.kcenter_greedy(as_dask(P, rows), [0], 3)
    good = as_dask(rng.random(n), rows)
    with pytest.raises(ValueError, match="budget b=299 exceeds the 298 candidates"):
        af.select_top(good, 299, exclude=[0, 1])
    with pytest.raises(TypeError, match="pseudo_class must be an integer array"):
        af.diversify(good, np.zeros(n), 3)
    with pytest.raises(ValueError, match="pseudo_class has 299 entries but scores have 300"):
        af.diversify(good, np.zeros(n - 1, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="exclude holds index 300, out of range"):
        af.select_top(good, 3, exclude=[300])
    with pytest.raises(ValueError, match="probs needs at least 2 classes"):
        af.margin(as_dask(rng.random((n, 1)), rows))
    with pytest.raises(TypeError, match="probs must be float16/32/64"):
        af.entropy(as_dask(rng.integers(0, 2, (n, 3)), rows))
    unknown = good[good > 0.5]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        af.select_top(unknown, 3)


def _poison(block, block_info=None):
    """Kill the worker process that runs the third chunk."""
    if block_info is not None and block_info[0]["chunk-location"][0] == 2:
        distributed.get_worker()  # raises outside a worker: never kill the test process
        os._exit(1)
    return block


@in_fresh_interpreter
def test_a_chunk_that_kills_its_workers_fails_the_call(fresh_client, rng):
    s = rng.random(1000)
    sd = as_dask(s, (250,) * 4).map_blocks(_poison, meta=s[:0])
    with pytest.raises(distributed.KilledWorker, match="on 2 different workers"):
        af.select_top(sd, 10)
