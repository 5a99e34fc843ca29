"""SVCCV fit at an AL iteration: warm start from the previous iteration against cold fits.

On the Caltech-101 features (background dropped, rows L2-normalised, float32) a labeled set
grows as in the AL loop: a random order of the train split, ``--labeled - --step`` rows at
the previous iteration, ``--labeled`` now. Fits of the current set, in the same run:

* ``cold_batch``: the reference, the solver before this work: every ``C`` from zero in one
  batch (``SVCCV._C_PATH = False``) and, for RBF, the eigenbasis solver
  (``SVCCV._RBF_SAMPLE_SPACE = False``: ``eigh`` of the kernel matrix, four products with
  the eigenbasis per Newton iteration). It runs the Newton solver's shared parts as they are
  now (line search, column copies, the linear kernel's CG routing), so it is faster than
  when it was first measured (linear 16.8 s, RBF 48.7 s in the run of commit 83797c1);
* ``warm``: ``SVCCV(warm_start=True)`` as it is now, fitted on the previous set (not timed),
  then on the current one: every fold and ``C`` starts from the previous iteration's
  solution, rows seen before keep their fold; RBF solves in sample space on the kernel
  matrix (no eigendecomposition, two kernel products per Newton iteration, each fold on its
  training rows' block);

* ``baseline``: ``SVCCV`` (cold, its defaults) as of ``--baseline`` (default 88d95f5, the last
  SVM commit before the warm-start work: the code issue 18 measured), fitted in a child
  process on a copy of that commit's package, same rows; the issue's target is the warm
  fit's speed-up over this one (``speedup_baseline_over_warm``);

and with ``--all`` also:

* ``cold_path``: a cold fit as it is now, the ``C`` grid solved as a warm-started path;
* ``warm_fresh_folds``: the warm start with folds dealt afresh as a cold fit deals them
  (``SVCCV._STICKY_FOLDS = False``): what keeping the folds buys;
* ``warm_eigenbasis`` (RBF): the warm start on the eigenbasis solver: what the sample-space
  solver buys.

Each variant is fitted ``--repeats`` times (default 3), the variants interleaved so that a
change of the machine's load falls on all of them alike; the warm fits all start from the
same previous-iteration state. Recorded per kernel: the minimum and median wall time (and every
time), chosen ``C``, test accuracy, per-``C`` mean CV accuracy,
Newton iterations, the speed-ups ``cold_batch / x`` (of the minima, and of the medians), whether ``C`` is the reference's and the
accuracy difference in points; the load average at start and end (``benchmarks/_harness.py``;
a 2-core machine shared with other jobs makes absolute times noisy; the ratios come from one
run). Run::

    python benchmarks/svm_warm_start.py --out benchmarks/results/svm_warm_start.json
    python benchmarks/svm_warm_start.py --all --out ...   # every variant (about 3x longer)
    python benchmarks/svm_warm_start.py --quick           # 1,500 labeled, 1 repeat: a smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
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

# The code the issue measured: the last SVM commit before the warm-start work (SVCCV with the
# C grid solved as one batch on the eigenbasis, every fit cold). Its fits run in a child
# process on a copy of that commit's package (``git archive``), on the same rows.
BASELINE = "88d95f5"

_CHILD = r"""
import json, sys, time
import numpy as np
import alamp_fast
from alamp_fast.svm import SVCCV
root, data, kernel = sys.argv[1:4]
assert alamp_fast.__file__.startswith(root), alamp_fast.__file__
d = np.load(data)
X, y, Xt, yt = d["X"], d["y"], d["Xt"], d["yt"]
SVCCV(kernel=kernel).fit(X[:300], y[:300])  # warm-up (imports, any compilation), not timed
model = SVCCV(kernel=kernel)
t0 = time.perf_counter()
model.fit(X, y)
fit_s = time.perf_counter() - t0
print(json.dumps({"fit_s": fit_s, "C": float(model.C_), "accuracy": float(model.score(Xt, yt)),
                  "cv_mean": model.cv_scores_.mean(axis=1).tolist(),
                  "n_iter": int(getattr(model, "n_iter_", -1))}))
"""


class Baseline:
    """Fits with the package as of ``rev``, each in a child process (same interpreter)."""

    def __init__(self, rev: str, X, y, Xt, yt):
        self.rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", rev], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.root = Path(tempfile.mkdtemp(prefix="svm_baseline_"))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", self.rev, "alamp_fast"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.root)], input=archive, check=True)
        self.data = self.root / "data.npz"
        np.savez(self.data, X=X, y=y, Xt=Xt, yt=yt)

    def fit(self, kernel: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(self.root), str(self.data), kernel],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
        )
        if out.returncode:
            raise RuntimeError(f"baseline {self.rev[:7]} fit failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def timed_fit(model, X, y):
    t0 = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - t0


def _model(kernel, name):
    model = SVCCV(kernel=kernel, warm_start=name.startswith("warm"))
    if name == "cold_batch":
        model._C_PATH = False
        model._RBF_SAMPLE_SPACE = False
    if name == "warm_fresh_folds":
        model._STICKY_FOLDS = False
    if name == "warm_eigenbasis":
        model._RBF_SAMPLE_SPACE = False
    return model


def one_kernel(kernel, X, y, Xt, yt, prev, cur, every: bool, repeats: int, baseline=None):
    """Each variant ``repeats`` times, the variants interleaved (a, b, a, b, ...) so that a
    change of the machine's load falls on all of them; the minimum time counts."""
    names = ["cold_batch", "warm"] + (["baseline"] if baseline is not None else [])
    if every:
        names += ["cold_path", "warm_fresh_folds"] + (
            ["warm_eigenbasis"] if kernel == "rbf" else []
        )
    states = {}
    for name in names:
        model = _model(kernel, name)
        if model.warm_start:
            print(f"  {kernel} {name}: previous iteration (not timed) ...", file=sys.stderr)
            model.fit(X[prev], y[prev])
            states[name] = model._warm_state  # every repeat starts from this same state
    out = {name: {"fit_s_all": []} for name in names}
    for r in range(repeats):
        for name in names:
            if name == "baseline":
                print(f"  {kernel} baseline ({r + 1}/{repeats}) ...", file=sys.stderr, flush=True)
                got = baseline.fit(kernel)
                out[name]["fit_s_all"].append(got.pop("fit_s"))
                out[name].update(got, commit=baseline.rev, warm_started=False)
                print(
                    f"    {out[name]['fit_s_all'][-1]:.2f} s, C={got['C']:g}, "
                    f"acc {got['accuracy']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            model = _model(kernel, name)
            if name in states:
                model._warm_state = copy.deepcopy(states[name])
            print(f"  {kernel} {name} ({r + 1}/{repeats}) ...", file=sys.stderr, flush=True)
            fit_s = timed_fit(model, X[cur], y[cur])
            out[name]["fit_s_all"].append(fit_s)
            out[name].update(
                C=model.C_,
                accuracy=float(model.score(Xt, yt)),
                cv_mean=model.cv_scores_.mean(axis=1).tolist(),
                n_iter=model.n_iter_,
                warm_started=bool(model.warm_started_),
            )
            print(
                f"    {fit_s:.2f} s, C={model.C_:g}, acc {out[name]['accuracy']:.4f}",
                file=sys.stderr,
                flush=True,
            )
    for name in names:
        out[name]["fit_s"] = min(out[name]["fit_s_all"])
        out[name]["fit_s_median"] = float(np.median(out[name]["fit_s_all"]))
    ref = out["cold_batch"]
    for name in names[1:]:
        out[f"speedup_cold_batch_over_{name}"] = ref["fit_s"] / out[name]["fit_s"]
        out[f"speedup_median_cold_batch_over_{name}"] = (
            ref["fit_s_median"] / out[name]["fit_s_median"]
        )
        out[f"same_C_{name}"] = out[name]["C"] == ref["C"]
        out[f"accuracy_diff_points_{name}"] = 100 * (out[name]["accuracy"] - ref["accuracy"])
    if "baseline" in out:  # the reference: the code it measured
        base = out["baseline"]
        out["speedup_baseline_over_warm"] = base["fit_s"] / out["warm"]["fit_s"]
        out["speedup_median_baseline_over_warm"] = (
            base["fit_s_median"] / out["warm"]["fit_s_median"]
        )
        out["same_C_warm_as_baseline"] = out["warm"]["C"] == base["C"]
        out["accuracy_diff_points_warm_vs_baseline"] = 100 * (
            out["warm"]["accuracy"] - base["accuracy"]
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--labeled", type=int, default=3000)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--kernels", default="linear,rbf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    parser.add_argument("--all", action="store_true", help="every variant, not only the two")
    parser.add_argument(
        "--repeats", type=int, default=3, help="fits per variant, interleaved; the minimum counts"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: --labeled 1500 (other sizes as given)"
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"commit whose SVCCV is timed alongside, in a child process (default {BASELINE}, "
        "the code the issue measured; 'none' to skip)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.labeled, args.repeats = 1500, 1
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
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
            "repeats": args.repeats,
        },
        "kernels": {},
    }
    baseline = None
    if args.baseline != "none":
        baseline = Baseline(args.baseline, X[cur], y[cur], Xt, yt)
        result["baseline_commit"] = baseline.rev
    try:
        for kernel in [k for k in args.kernels.split(",") if k]:
            result["kernels"][kernel] = one_kernel(
                kernel, X, y, Xt, yt, prev, cur, args.all, args.repeats, baseline
            )
    finally:
        if baseline is not None:
            baseline.close()
    print(json.dumps(result, indent=2, default=float))
    if args.out:
        run.write(result, args.out)
    else:
        print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
