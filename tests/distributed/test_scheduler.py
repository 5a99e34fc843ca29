"""``--scheduler``: the loop and the annotation workflow on a Dask cluster make the local picks.

One ``LocalCluster`` of two worker processes (one thread each, loopback only) for the module.
The pool goes to the workers in uneven row chunks; ``simulate`` and ``Project.select`` with
the cluster's address must return exactly what they return without it (picks in order,
accuracies, batch scores and margins), and an unreachable or malformed address must end the
command with one line and exit code 2 before anything is written.
"""

from __future__ import annotations

import contextlib
import pickle

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
from conftest import assert_exact
from faults.helpers import BLOB_CLASSES, BLOB_NAMES, blob_pool, local_cluster, save_blob_pool

from alamp_fast import outofcore
from alamp_fast.al.classifiers import make_classifier, pool_probs
from alamp_fast.al.datasets import l2_normalize
from alamp_fast.al.protocol import _connect, _scatter_rows, simulate
from alamp_fast.al.strategies import STRATEGIES, get_strategy
from alamp_fast.cli import main
from alamp_fast.distributed import _current_client
from alamp_fast.workflow import STATE_FILE, Project

UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port: nothing listens on loopback


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c:
        yield c


@contextlib.contextmanager
def tasks_run_on(cluster):
    """Collects the names of the tasks the cluster's workers run inside the block."""
    names: set[str] = set()
    with (
        distributed.Client(cluster.scheduler_address, set_as_default=False) as observer,
        distributed.get_task_stream(observer) as stream,
    ):
        yield names
    for task in stream.data:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        names.add(str(key).split("-", 1)[0])  # "_chunk_probs-<token>" -> "_chunk_probs"


@pytest.fixture
def short_connect_timeout():
    # an unreachable scheduler is retried until this timeout (30 s by default)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        yield


# ---------------------------------------------------------------------------------------------
# the pool on the workers


def test_pool_probabilities_are_computed_on_the_workers(cluster, rng, monkeypatch):
    X, y = blob_pool(rng, 500)
    clf = make_classifier("linear-svc", random_state=0).fit(X[:60], y[:60])
    with _connect(cluster.scheduler_address) as client:
        # default chunks: at most DEFAULT_BLOCK_BYTES of features and probabilities, all of
        # one size (here at most 100 rows: 5 chunks of 90, not 4 of 100 and one of 50)
        monkeypatch.setattr(outofcore, "DEFAULT_BLOCK_BYTES", 100 * (4 * 12 + 8 * BLOB_CLASSES))
        assert _scatter_rows(client, X[:450], None, BLOB_CLASSES).chunks[0] == (90,) * 5
        assert _scatter_rows(client, X[:7], None, BLOB_CLASSES).chunks[0] == (7,)
        Xw = _scatter_rows(client, X, 37, BLOB_CLASSES)
        assert Xw.chunks[0] == (37,) * 13 + (19,)
        held = {w: len(keys) for w, keys in client.has_what().items()}
        assert len(held) == 2 and min(held.values()) > 0, f"chunks not on both workers: {held}"
        P = pool_probs(clf, Xw, BLOB_CLASSES)
        assert P.chunks == (Xw.chunks[0], (BLOB_CLASSES,))
        # the classifier is one key of the graph, not a copy in every chunk's task
        coef = clf.coef32_.tobytes()
        copies = [k for k, task in dict(P.__dask_graph__()).items() if coef in pickle.dumps(task)]
        assert len(copies) == 1, f"the classifier is held by {len(copies)} graph keys"
        # The same numbers as on the whole pool. (Were this to fail, the BLAS rounds a row's
        # product differently in a smaller matrix: see "Same picks" in docs/distributed.md.)
        assert_exact(P.compute(), pool_probs(clf, X, BLOB_CLASSES), "pool probabilities")
    assert _current_client() is None, "the client was left open"


# ---------------------------------------------------------------------------------------------
# strategies on dask probabilities


@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "coreset"])
def test_strategies_select_on_dask_probabilities_without_gathering_them(name, rng, monkeypatch):
    # no cluster here (dask's local threads): what is checked is the strategies' code path
    n, C = 900, 6
    pools = [(rng.integers(0, 9, (n, C)) / 8).astype(np.float32) for _ in range(3)]
    labeled = rng.choice(n, 40, replace=False)
    local, chunked = get_strategy(name, seed=3), get_strategy(name, seed=3)
    want = [local.query(P, 25, labeled=labeled) for P in pools]

    def refuse(*args, **kwargs):
        raise AssertionError("a dask array was gathered with np.asarray")

    monkeypatch.setattr(da.Array, "__array__", refuse)
    got = [chunked.query(da.from_array(P, chunks=(rows, C)), 25, labeled=labeled)
           for P, rows in zip(pools, (250, 311, 900), strict=True)]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_exact(g, w, f"{name}: query {i}")
    for key, value in local.state_dict().items():  # alamp's state stays numpy, and the same
        assert isinstance(chunked.state_dict()[key], np.ndarray)
        np.testing.assert_array_equal(chunked.state_dict()[key], value, err_msg=key)


# ---------------------------------------------------------------------------------------------
# the loop


def test_simulate_on_the_cluster_makes_the_local_picks(cluster, rng):
    X, y = blob_pool(rng, 700)
    X = l2_normalize(X)
    kw = dict(strategies=["margin", "alamp", "alamp-div", "coreset"], init=20, step=12,
              iterations=3, runs=1, seed=int(rng.integers(0, 1000)), cost_sensitive=False)
    local = simulate(X[:600], y[:600], X[600:], y[600:], **kw)
    # 97 rows a chunk: six chunks and a short one, spread over the two workers
    with tasks_run_on(cluster) as ran:
        remote = simulate(X[:600], y[:600], X[600:], y[600:],
                          scheduler=cluster.scheduler_address, chunk_rows=97, **kw)
    # probabilities, top-2 pass, candidates and k-center steps ran on the workers
    assert {"_chunk_probs", "top2_margin", "_chunk_top", "_kc_step"} <= ran, sorted(ran)
    assert _current_client() is None, "simulate left its client open"
    assert (remote.config, remote.dataset) == (local.config, local.dataset)
    for name in kw["strategies"]:
        a, b = local.records[name][0], remote.records[name][0]
        assert_exact(b.order, a.order, f"{name}: picks")
        for field in ("accuracy", "balanced_accuracy", "ir", "class_counts", "labeled"):
            assert_exact(getattr(b, field), getattr(a, field), f"{name}: {field}")
    # the strategies did pick: different orders after the shared initial batch
    orders = {name: tuple(local.records[name][0].order[20:]) for name in kw["strategies"]}
    assert len(set(orders.values())) == len(orders)


# ---------------------------------------------------------------------------------------------
# the annotation workflow


# alamp-div: state and ranking gathered; margin: lazy ranking read at the batch's rows;
# coreset: the features on the workers, distances computed here
@pytest.mark.parametrize("strategy", ["alamp-div", "margin", "coreset"])
def test_workflow_select_on_the_cluster_makes_the_same_batches(
    cluster, rng, tmp_path, capsys, strategy
):
    pool = tmp_path / "pool.npy"
    _, _, truth = save_blob_pool(pool, rng, 300)
    settings = dict(classes=BLOB_NAMES, strategy=strategy, budget=15, init=20,
                    classifier="linear-svc", cost_sensitive=False, seed=5)
    local = Project.init(tmp_path / "local", pool, **settings)
    Project.init(tmp_path / "remote", pool, **settings)
    remote_dir = str(tmp_path / "remote")
    for r in range(1, 4):
        want = local.select()
        # default chunking: this small pool is one chunk
        argv = ["select", "-p", remote_dir, "--scheduler", cluster.scheduler_address]
        with tasks_run_on(cluster) as ran:
            rc = main(argv + (["--chunk-rows", "41"] if r == 3 else []))
        assert rc == 0, capsys.readouterr()
        assert ("_chunk_probs" in ran) == (r > 1), f"round {r}: the workers ran {sorted(ran)}"
        assert f"round {r}: {len(want)} samples" in capsys.readouterr().out
        got = Project.open(remote_dir).batch(r)
        assert_exact(got.rows, want.rows, f"round {r}: batch")
        assert got.predicted == want.predicted, f"round {r}: predicted classes"
        if r > 1:  # the first round is random: no scores yet (NaN)
            assert_exact(got.scores, want.scores, f"round {r}: scores")
            assert_exact(got.margins, want.margins, f"round {r}: margins")
        labels = {i: truth[i] for i in want.ids}
        local.label(labels)
        Project.open(remote_dir).label(labels)
    # the strategy's memory (alamp's: gathered from the workers) is the one the local rounds kept
    with np.load(tmp_path / "local" / STATE_FILE) as a, np.load(remote_dir + "/" + STATE_FILE) as b:
        for key in (k for k in a.files if k.startswith("strategy.")):
            assert_exact(b[key], a[key], key)


# ---------------------------------------------------------------------------------------------
# user errors


@pytest.mark.usefixtures("short_connect_timeout")
@pytest.mark.parametrize(
    ("address", "message"),
    [
        (UNREACHABLE, f"cannot reach the Dask scheduler at '{UNREACHABLE}' within 1 s"),
        ("nonsense:abc", "bad scheduler address 'nonsense:abc'"),
    ],
)
def test_bad_scheduler_is_one_line_exit_2(tmp_path, rng, capsys, address, message):
    out = tmp_path / "out"
    argv = ["simulate", "--quiet", "--no-plots", "--init", "20", "--step", "10", "--iterations",
            "1", "--runs", "1", "--strategies", "margin", "--out", str(out)]
    assert main([*argv, "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists(), "simulate wrote results without its cluster"

    save_blob_pool(tmp_path / "pool.npy", rng, 60)
    p = str(tmp_path / "proj")
    assert main(["init", "-p", p, "--pool", str(tmp_path / "pool.npy"), "--classes",
                 ",".join(BLOB_NAMES), "--budget", "10"]) == 0
    capsys.readouterr()
    state = (tmp_path / "proj" / STATE_FILE).read_bytes()
    assert main(["select", "-p", p, "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert (tmp_path / "proj" / STATE_FILE).read_bytes() == state, "the project changed"


def test_chunk_rows_needs_a_scheduler(tmp_path, capsys):
    assert main(["simulate", "--quiet", "--no-plots", "--chunk-rows", "100",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--chunk-rows needs --scheduler" in err and err.count("\n") == 1, err
    with pytest.raises(ValueError, match="chunk_rows=100 only applies with a scheduler"):
        simulate(np.zeros((10, 2)), np.arange(10) % 2, np.zeros((2, 2)), [0, 1], chunk_rows=100)
    with pytest.raises(ValueError, match="chunk_rows must be >= 1, got 0"):
        simulate(np.zeros((10, 2)), np.arange(10) % 2, np.zeros((2, 2)), [0, 1],
                 scheduler=UNREACHABLE, chunk_rows=0)

