"""The SVM training step of the paper's scheme, alamp_fast.svm against scikit-learn.

One step: choose ``C`` by 5-fold cross-validation over 5 values, refit, then score a pool
(the probabilities' top-2 margin, what margin-based acquisition needs). Sizes by default: 3,200
labeled rows, 1,024-d, 100 classes, a 50,000-row pool, from the Caltech-101 features of
``$ALAMP_FAST_DATA`` (else ``<repo>/../shared/data``; 100 of the 101 classes, rows
L2-normalised; the pool is drawn with replacement from all rows, which changes nothing for the
timing) or, with ``--data synthetic`` or no data, from Gaussian class clusters.

Providers (all use the same folds, :func:`alamp_fast.svm.stratified_folds`):

* ``alamp_fast-linear`` / ``alamp_fast-rbf``: ``SVCCV`` then ``predict_top2_margin``;
* ``sklearn-linearsvc``: ``GridSearchCV(LinearSVC())`` (defaults: ``dual="auto"`` picks the
  primal solver here) then ``decision_function``;
* ``sklearn-linearsvc-dual``: the same with ``LinearSVC(dual=True)``, faster on this data;
* ``sklearn-svc-calibrated``: scikit-learn's supported way to RBF ``SVC`` probabilities
  (``SVC(probability=True)`` is deprecated since scikit-learn 1.9): ``GridSearchCV(SVC())``
  chooses ``C`` on the folds, then ``CalibratedClassifierCV(SVC(C=best), ensemble=False)``
  fits Platt's sigmoids on the same folds' held-out decision values and refits one ``SVC`` on
  all rows; ``predict_proba`` of that model scores the pool. This is the pipeline that the
  ``paper`` / ``svc`` presets (``SVCCV(kernel="rbf", loss="hinge", calibration="platt")``)
  reproduce, see ``benchmarks/svm_paper_check.py``.

Accuracy is measured on the held-out test split (Caltech) or a fresh sample (synthetic).
Pool scoring is timed after one warm-up call on 2 rows (numba loads its compiled kernel on the
first call of a process). The load average at start and end is printed and recorded
(``benchmarks/_harness.py``); the figures are marked ``under_load`` when other work ran.
Run::

    python benchmarks/svm_vs_sklearn.py --out benchmarks/results/svm_cpu.json
    python benchmarks/svm_vs_sklearn.py --quick              # smoke run, under a minute
    python benchmarks/svm_vs_sklearn.py --device cuda --pool 1000000 --providers alamp_fast-linear \\
        --out benchmarks/results/svm_gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import caltech_available, data_dir, load_caltech  # noqa: E402
from _harness import Run, load_average  # noqa: E402

from alamp_fast.svm import SVCCV, make_cs, stratified_folds  # noqa: E402
from alamp_fast.uncertainty import top2_margin  # noqa: E402

PROVIDERS = (
    "alamp_fast-linear",
    "alamp_fast-rbf",
    "sklearn-linearsvc",
    "sklearn-linearsvc-dual",
    "sklearn-svc-calibrated",
)


def load_problem(args, rng):
    """(X_labeled, y_labeled, X_pool, X_test, y_test, description) as float32."""
    if args.data == "caltech" and caltech_available():
        parts = []
        for split in ("train", "test"):
            X, y = load_caltech(data_dir(), split, normalise=False)
            parts.append((X[:, : args.dim], y))
        (X, y), (Xt, yt) = parts
        classes = np.unique(y)[: args.classes]
        X, y = X[np.isin(y, classes)], y[np.isin(y, classes)]
        test = np.isin(yt, classes)
        Xt, yt = Xt[test], yt[test]
        if args.labeled > y.size:
            raise SystemExit(f"--labeled {args.labeled} exceeds the {y.size} Caltech rows")
        idx = rng.choice(y.size, args.labeled, replace=False)
        everything = np.concatenate([X, Xt])
        pool = everything[rng.integers(0, everything.shape[0], args.pool)]
        norm = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)  # noqa: E731
        desc = f"Caltech-101 MobileNet-v1 features, {classes.size} classes, L2-normalised"
        return norm(X[idx]), y[idx], norm(pool), norm(Xt), yt, desc
    centers = rng.normal(size=(args.classes, args.dim)).astype(np.float32)

    def draw(n):
        labels = rng.integers(0, args.classes, n)
        A = centers[labels] + 2.5 * rng.normal(size=(n, args.dim)).astype(np.float32)
        return A / np.linalg.norm(A, axis=1, keepdims=True), labels

    Xl, yl = draw(args.labeled)
    Xt, yt = draw(5000)
    desc = f"synthetic Gaussian clusters, {args.classes} classes, L2-normalised"
    return Xl, yl, draw(args.pool)[0], Xt, yt, desc


def _chunked(fn, X, chunk=16384):
    return np.concatenate([fn(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)])


def run_provider(name, Xl, yl, pool, Xt, yt, Cs, splits, args):
    """Fit (CV + refit) and pool-scoring times, accuracy and the chosen C of one provider."""
    if name.startswith("alamp_fast"):
        kernel = name.split("-")[1]
        device = args.device
        if device.startswith("torch:"):
            import torch

            device = torch.device(device.split(":", 1)[1])
        model = SVCCV(Cs=Cs, kernel=kernel, cv=splits, device=device)
        t0 = time.perf_counter()
        model.fit(Xl, yl)
        fit_s = time.perf_counter() - t0
        model.predict_top2_margin(pool[:2])  # warm-up: numba loads its compiled kernel once
        t1 = time.perf_counter()
        margin, _ = model.predict_top2_margin(pool)
        t2 = time.perf_counter()
        return {
            "fit_s": fit_s,
            "pool_s": t2 - t1,
            "C": model.C_,
            "accuracy": float(model.score(Xt, yt)),
            "n_iter": model.n_iter_,
            "pool_output": "top2_margin of calibrated probabilities (fused, chunked)",
            "mean_margin": float(margin.mean()),
        }
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    if name == "sklearn-svc-calibrated":
        return run_svc_calibrated(Xl, yl, pool, Xt, yt, Cs, splits)
    if name == "sklearn-linearsvc":
        base = LinearSVC()
    else:
        base = LinearSVC(dual=True)
    grid = GridSearchCV(base, {"C": list(Cs)}, cv=splits, n_jobs=1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at large C
        grid.fit(Xl, yl)
    fit_s = time.perf_counter() - t0
    score = grid.best_estimator_.decision_function
    top2_margin(score(pool[:2]))  # warm-up, as for ours
    t1 = time.perf_counter()
    margin, _ = top2_margin(_chunked(score, pool))
    t2 = time.perf_counter()
    return {
        "fit_s": fit_s,
        "pool_s": t2 - t1,
        "C": float(grid.best_params_["C"]),
        "accuracy": float(grid.score(Xt, yt)),
        "pool_output": "top2_margin of decision_function",
        "mean_margin": float(margin.mean()),
    }


def run_svc_calibrated(Xl, yl, pool, Xt, yt, Cs, splits):
    """``GridSearchCV(SVC())`` for ``C``, then ``CalibratedClassifierCV(SVC(C), ensemble=False)``
    on the same folds: scikit-learn's supported RBF ``SVC`` with probabilities."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    t0 = time.perf_counter()
    grid = GridSearchCV(SVC(), {"C": list(Cs)}, cv=splits, n_jobs=1, refit=False)
    grid.fit(Xl, yl)
    best = float(grid.best_params_["C"])
    model = CalibratedClassifierCV(SVC(C=best), ensemble=False, cv=splits)
    model.fit(Xl, yl)
    fit_s = time.perf_counter() - t0
    top2_margin(model.predict_proba(pool[:2]))  # warm-up, as for ours
    t1 = time.perf_counter()
    margin, _ = top2_margin(_chunked(model.predict_proba, pool))
    t2 = time.perf_counter()
    return {
        "fit_s": fit_s,
        "pool_s": t2 - t1,
        "C": best,
        "accuracy": float(model.score(Xt, yt)),
        "pool_output": "top2_margin of CalibratedClassifierCV(SVC, ensemble=False).predict_proba",
        "mean_margin": float(margin.mean()),
    }


def machine_info(args) -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except ImportError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "scipy": version("scipy"),
        "sklearn": version("sklearn"),
        "torch": version("torch") if args.device != "cpu" else None,
        "commit": commit,
        "device": args.device,
    }
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 400 labeled, 20 classes, 256-d, 5,000 pool, 3 Cs x 3 folds",
    )
    parser.add_argument("--labeled", type=int, default=3200)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--cs", type=int, default=5, help="grid size: logspace(-2, 2, cs)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", choices=("caltech", "synthetic"), default="caltech")
    parser.add_argument(
        "--device", default="cpu", help="alamp_fast device: cpu (numpy), cuda, cuda:N or torch:cpu"
    )
    parser.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help=f"comma-separated subset of {','.join(PROVIDERS)}",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run = Run("svm_cpu")
    if args.quick:
        args.labeled, args.dim, args.classes, args.pool, args.cs, args.folds = (
            400,
            256,
            20,
            5000,
            3,
            3,
        )
    providers = [p for p in args.providers.split(",") if p]
    unknown = sorted(set(providers) - set(PROVIDERS))
    if unknown:
        parser.error(f"unknown providers {unknown}; choose from {PROVIDERS}")
    rng = np.random.default_rng(args.seed)
    Xl, yl, pool, Xt, yt, desc = load_problem(args, rng)
    Cs = make_cs(args.cs)
    folds = stratified_folds(yl, args.folds, random_state=args.seed)
    splits = [
        (np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(folds.max() + 1)
    ]
    result = {
        "benchmark": "SVM step: CV over Cs x folds + refit + pool scoring",
        "machine": machine_info(args),
        "note": args.note,
        "sizes": {
            "labeled": int(yl.size),
            "features": int(Xl.shape[1]),
            "classes": int(np.unique(yl).size),
            "pool": int(pool.shape[0]),
            "Cs": Cs.tolist(),
            "folds": len(splits),
            "test": int(yt.size),
            "dtype": str(Xl.dtype),
        },
        "data": desc,
        "providers": {},
    }
    for name in providers:
        print(f"{name} ...", file=sys.stderr, flush=True)
        r = run_provider(name, Xl, yl, pool, Xt, yt, Cs, splits, args)
        r["total_s"] = r["fit_s"] + r["pool_s"]
        result["providers"][name] = r
        print(
            f"  fit {r['fit_s']:.2f} s, pool {r['pool_s']:.2f} s, C={r['C']:g}, "
            f"accuracy {r['accuracy']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    speedups = {}
    for ours, theirs in (
        ("alamp_fast-linear", "sklearn-linearsvc"),
        ("alamp_fast-linear", "sklearn-linearsvc-dual"),
        ("alamp_fast-rbf", "sklearn-svc-calibrated"),
    ):
        P = result["providers"]
        if ours in P and theirs in P:
            speedups[f"{theirs} / {ours}"] = {
                "total": P[theirs]["total_s"] / P[ours]["total_s"],
                "fit": P[theirs]["fit_s"] / P[ours]["fit_s"],
                "pool": P[theirs]["pool_s"] / P[ours]["pool_s"],
                "accuracy_diff_points": 100 * (P[ours]["accuracy"] - P[theirs]["accuracy"]),
            }
    result["speedup"] = speedups
    print(json.dumps(result, indent=2, default=float))
    if args.out:
        run.write(result, args.out)
    else:
        print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
