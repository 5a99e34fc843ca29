"""Dask faults of ``select --scheduler``: a worker killed mid-round is retried (else one line,
state untouched), and the cluster's alamp state is bitwise the local one, chunk edges included.
"""

from __future__ import annotations

import distributed  # the test extra installs it: a missing install fails, it is not skipped
import numpy as np
import pytest
from conftest import assert_exact

from alamp_fast.al.classifiers import make_classifier, pool_probs
from alamp_fast.al.datasets import l2_normalize
from alamp_fast.cli import main
from alamp_fast.workflow import STATE_FILE, Project

from .helpers import BLOB_NAMES, local_cluster, save_blob_pool


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c:
        yield c


@pytest.mark.parametrize("chunk", [97, 999, 7, 256])
def test_linear_svc_scores_a_row_the_same_in_any_chunk(chunk):
    # what differed on the cluster: OpenBLAS rounds a small GEMM (a short chunk) differently
    rng = np.random.default_rng(5)
    n, d, c = 3000, 256, 20
    X = l2_normalize(rng.normal(size=(n, d)).astype(np.float32))
    clf = make_classifier("linear-svc", random_state=0).fit(X[:300], rng.integers(0, c, 300))
    whole = pool_probs(clf, X, c)
    parts = np.concatenate([pool_probs(clf, X[a:a + chunk], c) for a in range(0, n, chunk)])
    assert_exact(parts, whole, f"probabilities in {chunk}-row chunks")


def test_workflow_state_on_the_cluster_is_bitwise_the_local_one_at_chunk_edges(
    cluster, rng, tmp_path
):
    # 256 features and 20 classes: a 97-row chunk is a GEMM of 5e5 multiply-adds, which
    # OpenBLAS rounds differently from the whole pool's (its small-matrix path); alamp's
    # prev_margin then differed by up to 1.6e-7 in the rows of short chunks
    n, d, c = 700, 256, 20
    centres = rng.normal(0.0, 1.0, (c, d))
    y = rng.integers(0, c, n)
    X = (centres[y] + rng.normal(0.0, 1.5, (n, d))).astype(np.float32)
    np.save(tmp_path / "pool.npy", X)
    names = [f"k{i}" for i in range(c)]
    truth = {str(i): names[k] for i, k in enumerate(y.tolist())}
    settings = dict(classes=names, strategy="alamp", budget=30, init=80,
                    classifier="linear-svc", cost_sensitive=False, seed=3)
    local = Project.init(tmp_path / "local", tmp_path / "pool.npy", **settings)
    remote = Project.init(tmp_path / "remote", tmp_path / "pool.npy", **settings)
    for r in range(1, 4):
        want = local.select()
        got = remote.select(scheduler=cluster.scheduler_address,
                            chunk_rows=None if r == 1 else 97)
        assert_exact(got.rows, want.rows, f"round {r}: batch")
        labels = {i: truth[i] for i in want.ids}
        local.label(labels)
        remote.label(labels)
    with np.load(tmp_path / "local" / STATE_FILE) as a, \
            np.load(tmp_path / "remote" / STATE_FILE) as b:
        assert "strategy.prev_margin" in a.files
        for key in (k for k in a.files if k.startswith(("strategy.", "batch."))):
            # bitwise (NaN scores of the random first round compare equal here)
            np.testing.assert_array_equal(b[key], a[key], err_msg=key, strict=True)


def test_worker_killed_during_select_is_retried_with_the_same_batch(
    cluster, rng, tmp_path, monkeypatch, capsys
):
    import os
    import signal

    import alamp_fast.al.protocol as protocol

    pool = tmp_path / "pool.npy"
    _, _, truth = save_blob_pool(pool, rng, 400)
    settings = dict(classes=BLOB_NAMES, strategy="alamp-div", budget=15, init=20,
                    classifier="linear-svc", cost_sensitive=False, seed=9)
    local = Project.init(tmp_path / "local", pool, **settings)
    Project.init(tmp_path / "remote", pool, **settings)
    remote_dir = str(tmp_path / "remote")
    labels = {i: truth[i] for i in local.select().ids}
    local.label(labels)
    assert main(["select", "-p", remote_dir]) == 0
    Project.open(remote_dir).label(labels)
    want = local.select()

    real = protocol._scatter_rows
    kills = []

    def scatter_then_kill(client, X, chunk_rows, n_classes):
        Xw = real(client, X, chunk_rows, n_classes)
        if not kills:  # the first attempt loses a worker holding chunks of the pool
            held = client.who_has()
            worker = next(iter(next(iter(held.values()))))
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)
        return Xw

    monkeypatch.setattr(protocol, "_scatter_rows", scatter_then_kill)
    state = (tmp_path / "remote" / STATE_FILE).read_bytes()
    rc = main(["select", "-p", remote_dir, "--scheduler", cluster.scheduler_address,
               "--chunk-rows", "50"])
    out, err = capsys.readouterr()
    assert kills, "no worker was killed"
    assert rc == 0, err
    assert "Traceback" not in err
    got = Project.open(remote_dir).batch(2)
    assert_exact(got.rows, want.rows, "batch after the retry")
    assert (tmp_path / "remote" / STATE_FILE).read_bytes() != state
    cluster.wait_for_workers(2, timeout=60)


def test_cluster_that_keeps_failing_is_one_line_and_the_state_untouched(
    cluster, rng, tmp_path, monkeypatch, capsys
):
    import alamp_fast.al.protocol as protocol

    pool = tmp_path / "pool.npy"
    _, _, truth = save_blob_pool(pool, rng, 200)
    p = Project.init(tmp_path / "p", pool, classes=BLOB_NAMES, budget=10, init=20, seed=1)
    p.label({i: truth[i] for i in p.select().ids})
    state = (tmp_path / "p" / STATE_FILE).read_bytes()
    calls = []

    def lost(client, X, chunk_rows, n_classes):
        calls.append(1)
        raise distributed.comm.core.CommClosedError("in <TCP (closed)>: worker lost")

    monkeypatch.setattr(protocol, "_scatter_rows", lost)
    rc = main(["select", "-p", str(tmp_path / "p"), "--scheduler", cluster.scheduler_address])
    err = capsys.readouterr().err
    assert rc == 1 and len(calls) == 3, (rc, calls, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the Dask cluster failed during select 3 times (CommClosedError" in err, err
    assert (tmp_path / "p" / STATE_FILE).read_bytes() == state
