"""SVCCV fit at an AL iteration: warm start from the previous iteration against cold fits.

On the Caltech-101 features (background dropped, rows L2-normalised, float32) a labeled set
grows as in the AL loop: a random order of the train split, ``--labeled - --step`` rows at
the previous iteration, ``--labeled`` now. Three fits of the current set, in the same run:

* ``cold_batch``: the solver before warm starts, every ``C`` from zero in one batch
  (``SVCCV._C_PATH = False``), today's reference;
* ``cold_path``: a cold fit as it is now, the ``C`` grid solved as a warm-started path;
* ``warm``: ``SVCCV(warm_start=True)`` fitted on the previous set (not timed), then on the
  current one: every fold and ``C`` starts from the previous iteration's solution, rows seen
  before keep their fold;
* ``warm_fresh_folds``: the same with folds dealt afresh as a cold fit deals them
  (``SVCCV._STICKY_FOLDS = False``): the cold fit's folds, so its C and accuracy, with a
  warm start that is further from the solution.

Recorded per kernel: wall time, chosen ``C``, test accuracy, Newton iterations, the ratios
``cold_batch / warm`` and ``cold_batch / cold_path``, and the load average at start and end
(a 2-core machine shared with other jobs makes absolute times noisy; the ratios come from
one run). Run::

    python benchmarks/svm_warm_start.py --out benchmarks/results/svm_warm_start.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import (  # noqa: E402
    CALTECH_DESC,
    caltech_available,
    data_dir,
    load_caltech,
    missing_caltech_message,
)
from _harness import Run, load_average  # noqa: E402
from svm_vs_sklearn import machine_info  # noqa: E402

from alamp_fast.svm import SVCCV  # noqa: E402


def timed_fit(model, X, y):
    t0 = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - t0


def one_kernel(kernel, X, y, Xt, yt, prev, cur):
    out = {}
    batch = SVCCV(kernel=kernel)
    batch._C_PATH = False
    path = SVCCV(kernel=kernel)
    warm = SVCCV(kernel=kernel, warm_start=True)
    warm.fit(X[prev], y[prev])
    fresh = SVCCV(kernel=kernel, warm_start=True)
    fresh._STICKY_FOLDS = False
    fresh.fit(X[prev], y[prev])
    models = (
        ("cold_batch", batch),
        ("cold_path", path),
        ("warm", warm),
        ("warm_fresh_folds", fresh),
    )
    for name, model in models:
        print(f"  {kernel} {name} ...", file=sys.stderr, flush=True)
        fit_s = timed_fit(model, X[cur], y[cur])
        out[name] = {
            "fit_s": fit_s,
            "C": model.C_,
            "accuracy": float(model.score(Xt, yt)),
            "cv_mean": model.cv_scores_.mean(axis=1).tolist(),
            "n_iter": model.n_iter_,
            "warm_started": bool(model.warm_started_),
        }
        print(
            f"    {fit_s:.2f} s, C={model.C_:g}, acc {out[name]['accuracy']:.4f}", file=sys.stderr
        )
    ref = out["cold_batch"]
    out["speedup_cold_batch_over_warm"] = ref["fit_s"] / out["warm"]["fit_s"]
    out["speedup_cold_batch_over_cold_path"] = ref["fit_s"] / out["cold_path"]["fit_s"]
    out["speedup_cold_batch_over_warm_fresh_folds"] = (
        ref["fit_s"] / out["warm_fresh_folds"]["fit_s"]
    )
    out["same_C_warm"] = out["warm"]["C"] == ref["C"]
    out["same_C_warm_fresh_folds"] = out["warm_fresh_folds"]["C"] == ref["C"]
    out["accuracy_diff_points_warm"] = 100 * (out["warm"]["accuracy"] - ref["accuracy"])
    out["accuracy_diff_points_cold_path"] = 100 * (out["cold_path"]["accuracy"] - ref["accuracy"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--labeled", type=int, default=3000)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--kernels", default="linear,rbf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    run = Run("svm_warm_start")
    args.device = "cpu"
    data = data_dir()
    if not caltech_available(data):
        print(missing_caltech_message(data), file=sys.stderr)
        return 1
    X, y = load_caltech(data, "train")
    Xt, yt = load_caltech(data, "test")
    if not 0 < args.step < args.labeled <= y.size:
        parser.error(f"need 0 < --step < --labeled <= {y.size}")
    order = np.random.default_rng(args.seed).permutation(y.size)
    prev, cur = order[: args.labeled - args.step], order[: args.labeled]
    result = {
        "benchmark": "SVCCV fit at one AL iteration: warm start vs cold (same run)",
        "machine": machine_info(args),
        "note": args.note,
        "data": CALTECH_DESC,
        "sizes": {
            "labeled": int(cur.size),
            "previous": int(prev.size),
            "features": int(X.shape[1]),
            "classes": int(np.unique(y[cur]).size),
            "Cs": SVCCV().get_params()["Cs"],
            "folds": 5,
            "test": int(yt.size),
        },
        "kernels": {},
    }
    for kernel in [k for k in args.kernels.split(",") if k]:
        result["kernels"][kernel] = one_kernel(kernel, X, y, Xt, yt, prev, cur)
    print(json.dumps(result, indent=2, default=float))
    if args.out:
        run.write(result, args.out)
    else:
        print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
