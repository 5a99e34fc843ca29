"""Helpers of the fault-injection suite (projects, a real CLI process, one-line errors) and of
the Dask suites (``tests/distributed/test_scheduler.py``, ``tests/faults/test_dask_faults.py``):
their pool and their local cluster."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def run_cli(*argv, env=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m alamp_fast ARGV`` in a fresh process (a real crash needs a real process)."""
    full_env = {**os.environ, **(env or {})}
    # the package from this checkout, whatever the current directory
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full_env.get("PYTHONPATH"))
                                             if p)
    return subprocess.run([sys.executable, "-m", "alamp_fast", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


NAMES = [f"c{i}" for i in range(5)]
INIT_KW = dict(classes=NAMES, strategy="alamp-div", budget=8, init=16, classifier="linear-svc",
               cost_sensitive=False, seed=7)


def make_project(root: Path, rng, *, n=120, rounds_labeled=1, ids=None, classes=NAMES):
    """A pool of Gaussian blobs and a project whose first ``rounds_labeled`` rounds are labeled.

    Returns ``(project_dir, truth)``, ``truth`` mapping each sample id to its class name.
    """
    from alamp_fast.workflow import Project

    c = len(classes)
    centres = rng.normal(0.0, 2.0, (c, 10))
    y = rng.integers(0, c, n)
    X = (centres[y] + rng.normal(0.0, 1.5, (n, 10))).astype(np.float32)
    pool = root / "pool.npy"
    np.save(pool, X)
    kw = dict(INIT_KW, classes=list(classes))
    if ids is not None:
        (root / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
        kw["ids"] = root / "ids.txt"
    proj = Project.init(root / "proj", pool, **kw)
    sample_ids = [str(i) for i in range(n)] if ids is None else list(ids)
    truth = {sid: classes[k] for sid, k in zip(sample_ids, y.tolist(), strict=True)}
    for _ in range(rounds_labeled):
        batch = proj.select()
        proj.label({i: truth[i] for i in batch.ids})
    return root / "proj", truth


def state_bytes(project_dir) -> bytes:
    return (Path(project_dir) / "state.npz").read_bytes()


def one_line_error(err: str, command: str) -> str:
    """The error line of a failed command; fails unless it is one line without a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"alamp-fast {command}: error: ")]
    assert len(errors) == 1 and len(lines) == 1, err
    return errors[0]


# ------------------------------------------------------------------- the Dask suites' pool and cluster

#: Classes of :func:`blob_pool`, and their names.
BLOB_CLASSES = 4
BLOB_NAMES = [f"c{i}" for i in range(BLOB_CLASSES)]


def blob_pool(rng, n: int, d: int = 12):
    """Overlapping Gaussian blobs (float32 features, int labels): uncertain rows everywhere."""
    centres = rng.normal(0.0, 1.5, (BLOB_CLASSES, d))
    y = rng.integers(0, BLOB_CLASSES, n)
    return (centres[y] + rng.normal(0.0, 1.5, (n, d))).astype(np.float32), y


def save_blob_pool(path: Path, rng, n: int, d: int = 12):
    """:func:`blob_pool` saved at ``path`` (``.npy``): ``(X, y, truth)``, ``truth`` mapping each
    row-number sample id to its class name (the annotators' answers)."""
    X, y = blob_pool(rng, n, d)
    np.save(path, X)
    return X, y, {str(i): BLOB_NAMES[c] for i, c in enumerate(y.tolist())}


@contextlib.contextmanager
def local_cluster():
    """A Dask ``LocalCluster`` of two worker processes, one thread each, on loopback only."""
    import distributed

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as c:
        yield c
