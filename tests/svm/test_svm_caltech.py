"""alamp_fast.svm against scikit-learn on the Caltech-101 features of ``../shared/data``
(background class dropped, rows L2-normalised): 2, 5 and 20 labels per class and the full
train split. Accuracy within half a point, decision-value rank agreement and the overlap of
margin-sampling batches are asserted and recorded (``record_property``: in the JUnit XML)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.svm import SVC as SkSVC
from sklearn.svm import LinearSVC

from alamp_fast.svm import SVC
from alamp_fast.uncertainty import top2_margin


def _caltech(data_dir, split):
    with np.load(data_dir / "caltech101" / f"feats_mobilenetv1_{split}.npz") as d:
        # float32, as alamp_fast.datasets loads them (float32 - 0-d int32 is float64 in numpy 2)
        X = (d["Xq"].astype(np.float32) - np.float32(d["zero_point"])) * np.float32(d["scale"])
        y = d["y"].astype(np.int64)
        background = list(d["classes"]).index("BACKGROUND_Google")
    keep = y != background
    X = X[keep]
    return X / np.linalg.norm(X, axis=1, keepdims=True), y[keep]


@pytest.fixture(scope="module")
def caltech(request):
    data_dir = request.getfixturevalue("data_dir")
    return (*_caltech(data_dir, "train"), *_caltech(data_dir, "test"))


def _per_class(y, per, rng):
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == k), per, replace=False) for k in np.unique(y)]
    )


def _margin_batch(margins, b):
    return set(np.argsort(margins, kind="stable")[:b].tolist())


def _compare_linear(Xl, yl, Xt, yt, Xpool, record):
    ours = SVC(C=1.0).fit(Xl, yl)
    ref = LinearSVC(C=1.0).fit(Xl, yl)
    diff = 100 * (ours.score(Xt, yt) - ref.score(Xt, yt))
    zo, zr = ours.decision_function(Xt), ref.decision_function(Xt)
    rho = np.mean([spearmanr(zo[:, k], zr[:, k])[0] for k in range(zo.shape[1])])
    record("accuracy_diff_points", round(diff, 3))
    record("decision_rank_spearman", round(float(rho), 6))
    assert abs(diff) <= 0.5, f"accuracy differs from LinearSVC by {diff:+.2f} points"
    assert rho >= 0.999, f"mean Spearman rank correlation of decision values {rho:.5f}"
    if Xpool is not None and len(Xpool):
        b = min(200, len(Xpool) // 4)
        ref_batch = _margin_batch(top2_margin(ref.decision_function(Xpool))[0], b)
        dec_batch = _margin_batch(top2_margin(ours.decision_function(Xpool))[0], b)
        prob_batch = _margin_batch(ours.predict_top2_margin(Xpool)[0], b)
        overlap_dec = len(dec_batch & ref_batch) / b
        overlap_prob = len(prob_batch & ref_batch) / b
        record("margin_batch_overlap_decision", overlap_dec)
        record("margin_batch_overlap_calibrated_proba", overlap_prob)
        assert overlap_dec >= 0.95, f"margin-sampling batches overlap {overlap_dec:.3f}"


@pytest.mark.parametrize("per_class", [2, 5, 20])
def test_caltech_linear_low_budgets(caltech, per_class, record_property):
    X, y, Xt, yt = caltech
    idx = _per_class(y, per_class, np.random.default_rng(per_class))
    pool = np.setdiff1d(np.arange(y.size), idx)
    _compare_linear(X[idx], y[idx], Xt, yt, X[pool], record_property)


@pytest.mark.slow
def test_caltech_linear_full_train_split(caltech, record_property):
    X, y, Xt, yt = caltech
    _compare_linear(X, y, Xt, yt, None, record_property)


def test_caltech_rbf_not_below_sklearn_svc(caltech, record_property):
    """The models differ (one-vs-rest squared hinge here, one-vs-one hinge in libsvm): ours
    must not be worse by more than half a point; it is measured 1.5-2.7 points better."""
    X, y, Xt, yt = caltech
    idx = _per_class(y, 5, np.random.default_rng(5))
    ours = SVC(kernel="rbf", C=1.0).fit(X[idx], y[idx])
    ref = SkSVC(C=1.0).fit(X[idx], y[idx])
    diff = 100 * (ours.score(Xt, yt) - ref.score(Xt, yt))
    record_property("accuracy_diff_points", round(diff, 3))
    assert diff >= -0.5, f"accuracy below sklearn SVC by {-diff:.2f} points"
