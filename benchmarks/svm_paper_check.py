"""The paper preset against scikit-learn's own pipeline on the Caltech-101 features.

``make_classifier("paper")`` (``SVCCV(kernel="rbf", loss="hinge", calibration="platt")``:
libsvm's C-SVC on one kernel cache per fit, C by 5-fold cross-validation, Platt sigmoids
per class on the held-out decision values) against ``GridSearchCV(SVC())`` over the same
``C`` grid and folds, then ``CalibratedClassifierCV(SVC(C=best), ensemble=False)`` on the
same folds. Caltech-101 is imbalanced (``ir`` of the train split above
``alamp_fast.al.protocol.IMBALANCED_IR``), so both run the cost-sensitive variant
(``class_weight="balanced"``), as ``simulate`` does on such a pool.

Recorded: chosen ``C`` and per-``C`` mean CV accuracy of both, test accuracy of the
calibrated models (``predict`` = argmax of the probabilities, as ``CalibratedClassifierCV``
predicts) and of libsvm's one-vs-one vote, the share of test rows whose probabilities agree
to 1e-3, wall times, the load average at start and end. Run::

    python benchmarks/svm_paper_check.py --out benchmarks/results/svm_paper_check.json
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

from alamp_fast.al.imbalance import imbalance_ratio  # noqa: E402
from alamp_fast.al.protocol import IMBALANCED_IR, make_classifier  # noqa: E402
from alamp_fast.svm import make_cs, stratified_folds  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--labeled", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    run = Run("svm_paper_check")
    args.device = "cpu"
    data = data_dir()
    if not caltech_available(data):
        print(missing_caltech_message(data), file=sys.stderr)
        return 1
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = load_caltech(data, "train")
    Xt, yt = load_caltech(data, "test")
    pool_ir = imbalance_ratio(np.bincount(y))
    cost_sensitive = pool_ir >= IMBALANCED_IR
    class_weight = "balanced" if cost_sensitive else None
    idx = np.random.default_rng(args.seed).choice(y.size, args.labeled, replace=False)
    # CalibratedClassifierCV needs folds that partition the rows: classes drawn once (kept in
    # training by stratified_folds) are left out of this comparison
    counts = np.bincount(y[idx])
    idx = idx[counts[y[idx]] >= 2]
    Xl, yl = X[idx], y[idx]
    folds = stratified_folds(yl, 5, args.seed)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)]
    Cs = make_cs(5)
    result = {
        "benchmark": "paper preset vs GridSearchCV(SVC) + CalibratedClassifierCV(SVC)",
        "machine": machine_info(args),
        "note": args.note,
        "data": CALTECH_DESC,
        "sizes": {
            "labeled": int(yl.size),
            "classes": int(np.unique(yl).size),
            "features": int(X.shape[1]),
            "test": int(yt.size),
            "Cs": Cs.tolist(),
            "folds": 5,
        },
        "pool_ir": pool_ir,
        "class_weight": class_weight,
    }
    print("ours ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    ours = make_classifier("paper", cost_sensitive=cost_sensitive, random_state=args.seed)
    ours.set_params(cv=splits, Cs=Cs).fit(Xl, yl)
    fit_ours = time.perf_counter() - t0
    P = ours.predict_proba(Xt)
    print(f"  {fit_ours:.1f} s, C={ours.C_:g}", file=sys.stderr, flush=True)
    print("sklearn ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    gs = GridSearchCV(SVC(class_weight=class_weight), {"C": Cs.tolist()}, cv=splits, refit=False)
    gs.fit(Xl, yl)
    best = float(gs.best_params_["C"])
    ref = CalibratedClassifierCV(SVC(C=best, class_weight=class_weight), ensemble=False, cv=splits)
    ref.fit(Xl, yl)
    fit_ref = time.perf_counter() - t0
    P_ref = ref.predict_proba(Xt)
    print(f"  {fit_ref:.1f} s, C={best:g}", file=sys.stderr, flush=True)
    acc = float(np.mean(ours.classes_[P.argmax(axis=1)] == yt))
    acc_ref = float(np.mean(ref.classes_[P_ref.argmax(axis=1)] == yt))
    vote = float(np.mean(ours.libsvm_.predict(_kernel_for(ours, Xt)) == yt))
    vote_ref = float(np.mean(ref.calibrated_classifiers_[0].estimator.predict(Xt) == yt))
    result["ours"] = {
        "fit_s": fit_ours,
        "C": ours.C_,
        "cv_mean": ours.cv_scores_.mean(axis=1).tolist(),
        "accuracy": acc,
        "vote_accuracy": vote,
    }
    result["sklearn"] = {
        "fit_s": fit_ref,
        "C": best,
        "cv_mean": gs.cv_results_["mean_test_score"].tolist(),
        "accuracy": acc_ref,
        "vote_accuracy": vote_ref,
    }
    result["same_C"] = ours.C_ == best
    result["accuracy_diff_points"] = 100 * (acc - acc_ref)
    result["proba_rows_within_1e-3"] = float(np.mean(np.abs(P - P_ref).max(axis=1) < 1e-3))
    result["speedup_fit"] = fit_ref / fit_ours
    print(json.dumps(result, indent=2, default=float))
    if args.out:
        run.write(result, args.out)
    else:
        print(f"load average at end: {load_average()}")
    return 0 if result["same_C"] and abs(result["accuracy_diff_points"]) <= 0.5 else 1


def _kernel_for(model, X):
    """The (rows, n_fit) precomputed kernel that ``model.libsvm_`` predicts from."""
    from alamp_fast.svm._hinge import sq_distances

    K = np.zeros((X.shape[0], model.n_fit_))
    K[:, model.libsvm_.support_] = np.exp(sq_distances(X, model.X_fit_) * -model.gamma_)
    return K


if __name__ == "__main__":
    raise SystemExit(main())
