"""The paper's classifier (``make_classifier("paper")``: SVCCV, RBF, libsvm's hinge loss,
Platt probabilities) against scikit-learn's own pipeline on the same folds:
``GridSearchCV(SVC())`` for ``C``, then ``CalibratedClassifierCV(SVC(C=best),
ensemble=False)``. Also the ``svc`` classifier (no deprecated ``SVC(probability=True)``, no
repeated warnings in a run) and the Platt fit against scikit-learn's."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC as SkSVC

from alamp_fast.al.protocol import make_classifier, simulate
from alamp_fast.svm import SVCCV, stratified_folds
from alamp_fast.svm._hinge import fit_platt

CS = [0.01, 0.1, 1.0, 10.0, 100.0]


def _splits(y, seed=0):
    f = stratified_folds(y, 5, seed)
    return [(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in range(f.max() + 1)]


def _reference(X, y, splits, class_weight=None):
    gs = GridSearchCV(SkSVC(class_weight=class_weight), {"C": CS}, cv=splits).fit(X, y)
    best = gs.best_params_["C"]
    cal = CalibratedClassifierCV(
        SkSVC(C=best, class_weight=class_weight), ensemble=False, cv=splits
    ).fit(X, y)
    return best, gs.cv_results_["mean_test_score"], cal


def _paper(splits, class_weight=None):
    clf = make_classifier("paper", cost_sensitive=class_weight == "balanced", random_state=0)
    return clf.set_params(cv=splits, Cs=CS)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_paper_matches_sklearn_pipeline_digits(class_weight):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xl, yl, Xt, yt = X[:400], y[:400], X[1000:], y[1000:]
    splits = _splits(yl)
    best, ref_scores, ref = _reference(Xl, yl, splits, class_weight)
    ours = _paper(splits, class_weight).fit(Xl, yl)
    assert ours.C_ == best
    np.testing.assert_allclose(ours.cv_scores_.mean(axis=1), ref_scores, atol=1e-12)
    P, P_ref = ours.predict_proba(Xt), ref.predict_proba(Xt)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    # the kernels are rounded differently (libsvm evaluates exp(-gamma |x - x'|^2) itself):
    # a one-vs-one decision within rounding of 0 can flip a vote, so compare row by row
    close = np.abs(P - P_ref).max(axis=1) < 1e-3
    assert close.mean() >= 0.99, close.mean()
    assert abs(ours.score(Xt, yt) - ref.score(Xt, yt)) <= 0.005
    assert np.mean(ours.predict(Xt) == ref.predict(Xt)) >= 0.99


def test_paper_binary_matches_sklearn():
    X, y = load_iris(return_X_y=True)
    keep = y > 0
    X, y = X[keep], y[keep]
    splits = _splits(y, seed=1)
    best, _, ref = _reference(X, y, splits)
    ours = _paper(splits).fit(X, y)
    assert ours.C_ == best
    assert ours.platt_.shape == (1, 2)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-3)
    dec = ours.decision_function(X)
    assert dec.shape == (X.shape[0],)


def test_platt_matches_sklearn_sigmoid():
    from sklearn.calibration import _SigmoidCalibration

    rng = np.random.default_rng(0)
    F = rng.normal(size=300) * 3
    t = (F + rng.normal(size=300) * 2 > 0).astype(int)
    a, b = fit_platt(F, t)
    ref = _SigmoidCalibration().fit(F, t)
    assert a == pytest.approx(ref.a_, rel=1e-4, abs=1e-6)
    assert b == pytest.approx(ref.b_, rel=1e-4, abs=1e-6)
    # decision values above 30 are rescaled the same way
    a2, b2 = fit_platt(F * 40, t)
    assert a2 * 40 == pytest.approx(a, rel=1e-4)
    assert b2 == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_paper_preset_parameters():
    clf = make_classifier("paper", cost_sensitive=True, random_state=3)
    p = clf.get_params()
    assert (p["kernel"], p["loss"], p["calibration"], p["class_weight"]) == (
        "rbf",
        "hinge",
        "platt",
        "balanced",
    )
    assert p["random_state"] == 3
    assert make_classifier("paper").get_params()["class_weight"] is None
    svc = make_classifier("svc")
    assert svc.get_params()["Cs"] == [1.0]


def test_hinge_errors():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="warm_start=True needs loss='squared_hinge'"):
        SVCCV(loss="hinge", warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="loss='squared'"):
        SVCCV(loss="squared").fit(X, y)
    with pytest.raises(ValueError, match="calibration='isotonic'"):
        SVCCV(calibration="isotonic").fit(X, y)


def test_hinge_needs_the_host():
    import torch

    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="loss='hinge' runs libsvm"):
        SVCCV(loss="hinge", device=torch.device("cpu")).fit(X, y)


def test_hinge_sample_weight_zero_rows_and_pickle():
    import pickle

    X, y = load_iris(return_X_y=True)
    sw = np.ones(y.size)
    sw[::7] = 0.0
    clf = SVCCV(kernel="rbf", loss="hinge", calibration="platt", Cs=[0.1, 1.0])
    clf.fit(X, y, sample_weight=sw)
    ref = SVCCV(kernel="rbf", loss="hinge", calibration="platt", Cs=[0.1, 1.0])
    assert clf.libsvm_.support_.size > 0
    ref.fit(X[sw > 0], y[sw > 0])
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X))
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    margin, top = clf.predict_top2_margin(X, chunk_size=17)
    P = clf.predict_proba(X)
    np.testing.assert_array_equal(top, P.argmax(axis=1))
    np.testing.assert_allclose(margin, np.sort(P, axis=1)[:, -1] - np.sort(P, axis=1)[:, -2])


def _blobs(n_per, n_classes, seed):
    """Train and test rows of the same Gaussian blobs (test: every fourth row)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, 8)) * 3
    y = np.repeat(np.arange(n_classes), n_per)
    X = centers[y] + rng.normal(size=(y.size, 8))
    test = np.arange(y.size) % 4 == 0
    return X[~test], y[~test], X[test], y[test]


@pytest.mark.parametrize("classifier", ["svc", "paper"])
def test_simulate_with_libsvm_classifiers_no_repeated_warnings(classifier):
    X, y, Xt, yt = _blobs(80, 4, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = simulate(
            X,
            y,
            Xt,
            yt,
            strategies=["random", "margin"],
            classifier=classifier,
            init=20,
            step=10,
            iterations=3,
            runs=1,
        )
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [
        str(w.message) for w in caught
    ]
    repeats = {m: c for m, c in Counter(str(w.message) for w in caught).items() if c > 1}
    assert not repeats, repeats
    for name in ("random", "margin"):
        assert res.records[name][0].accuracy[-1] > 0.8


def test_paper_matches_sklearn_on_caltech_subsample(data_dir, record_property):
    """Caltech-101 features (background dropped, rows L2-normalised), ~600 labeled rows drawn
    at random (imbalanced, as the pool is: the cost-sensitive variant), the paper preset
    against GridSearchCV(SVC) + CalibratedClassifierCV(SVC, ensemble=False) on the same
    folds: the same C and test accuracy within half a point."""
    from test_svm_caltech import _caltech

    X, y = _caltech(data_dir, "train")
    Xt, yt = _caltech(data_dir, "test")
    idx = np.random.default_rng(7).choice(y.size, 600, replace=False)
    # CalibratedClassifierCV needs folds that partition the rows; stratified_folds keeps a
    # class's single sample in training, so the classes drawn once are left out
    counts = np.bincount(y[idx])
    idx = idx[counts[y[idx]] >= 2]
    Xl, yl = X[idx], y[idx]
    splits = _splits(yl)
    best, ref_scores, ref = _reference(Xl, yl, splits, "balanced")
    ours = _paper(splits, "balanced").fit(Xl, yl)
    acc, acc_ref = ours.score(Xt, yt), ref.score(Xt, yt)
    record_property("C", ours.C_)
    record_property("C_sklearn", best)
    record_property("accuracy_diff_points", round(100 * (acc - acc_ref), 3))
    assert ours.C_ == best, (ours.cv_scores_.mean(axis=1), ref_scores)
    np.testing.assert_allclose(ours.cv_scores_.mean(axis=1), ref_scores, atol=1e-12)
    assert abs(acc - acc_ref) <= 0.005, f"accuracy {acc:.4f} vs sklearn {acc_ref:.4f}"


def test_refit_with_the_other_loss_replaces_the_model():
    X, y = load_iris(return_X_y=True)
    clf = SVCCV(kernel="rbf", loss="hinge", calibration="platt", Cs=[1.0]).fit(X, y)
    assert hasattr(clf, "libsvm_") and hasattr(clf, "platt_")
    clf.set_params(loss="squared_hinge", calibration="temperature").fit(X, y)
    assert not hasattr(clf, "libsvm_") and not hasattr(clf, "platt_")
    same = SVCCV(kernel="rbf", Cs=[1.0]).fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X), same.decision_function(X))
    clf.set_params(loss="hinge", calibration="platt").fit(X, y)
    assert not hasattr(clf, "dual_coef_") and not hasattr(clf, "temperature_")
