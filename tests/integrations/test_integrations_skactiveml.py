"""scikit-activeml adapters, run through scikit-activeml's query convention.

The loop is scikit-activeml's: ``X`` fixed, unlabeled samples marked in ``y`` by
``missing_label``, ``qs.query(X, y, clf, batch_size=...)`` fitting a clone of ``clf``, labels
written into ``y``. Picks are compared with alamp_fast's direct API on the probabilities of the
same fitted model, and with scikit-activeml's own strategies where it has them.
"""

import numpy as np
import pytest
from reference import alamp_query as reference_query
from skactiveml.classifier import SklearnClassifier
from skactiveml.pool import CoreSet as SkCoreSet
from skactiveml.pool import UncertaintySampling
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from alamp_fast.integrations import skactiveml as integ


def make_data(seed, n=250, n_classes=4, n_features=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    y_true = rng.integers(0, n_classes, size=n)
    X = centres[y_true] + rng.normal(size=(n, n_features))
    y = np.full(n, np.nan)
    initial = np.concatenate([np.flatnonzero(y_true == c)[:2] for c in range(n_classes)])
    y[initial] = y_true[initial]
    clf = SklearnClassifier(LogisticRegression(max_iter=500), classes=np.arange(n_classes))
    return rng, X, y, y_true, clf


def fitted_probs(clf, X, y, rows):
    return clone(clf).fit(X, y).predict_proba(X[rows])


@pytest.mark.parametrize("diverse", [False, True])
def test_alamp_in_the_skactiveml_loop_matches_the_direct_api(diverse):
    _, X, y, y_true, clf = make_data(1 + diverse)
    qs = integ.Alamp(diverse=diverse)
    memory = {}
    for _ in range(5):
        unlabeled = np.flatnonzero(np.isnan(y))
        want = unlabeled[reference_query(memory, fitted_probs(clf, X, y, unlabeled), unlabeled,
                                         6, diverse=diverse)]
        idx, utilities = qs.query(X, y, clf, batch_size=6, return_utilities=True)
        assert np.array_equal(idx, want), (idx, want)
        assert utilities.shape == (6, X.shape[0])
        assert np.isnan(utilities[:, ~np.isnan(y)]).all()
        assert np.isnan(utilities[3, idx[:3]]).all() and not np.isnan(utilities[3, idx[3:]]).any()
        y[idx] = y_true[idx]
    assert qs.memory_.iteration == 5


def test_alamp_with_candidate_indices_and_candidate_samples():
    rng, X, y, y_true, clf = make_data(3)
    by_index, by_sample = integ.Alamp(), integ.Alamp()
    memory = {}
    for _ in range(4):
        unlabeled = np.flatnonzero(np.isnan(y))
        cand = np.sort(rng.choice(unlabeled, size=unlabeled.size // 2, replace=False))
        want = reference_query(memory, fitted_probs(clf, X, y, cand), cand, 4)
        assert np.array_equal(by_index.query(X, y, clf, candidates=cand, batch_size=4), cand[want])
        # samples instead of indices: rows named by content, indices into the candidates
        assert np.array_equal(by_sample.query(X, y, clf, candidates=X[cand], batch_size=4), want)
        y[cand[want]] = y_true[cand[want]]


def test_margin_sampling_equals_skactiveml_uncertainty_sampling():
    _, X, y, y_true, clf = make_data(4)
    theirs = UncertaintySampling(method="margin_sampling", random_state=0)
    for _ in range(3):
        idx, util = integ.MarginSampling().query(X, y, clf, batch_size=5, return_utilities=True)
        t_idx, t_util = theirs.query(X, y, clf, batch_size=5, return_utilities=True)
        assert np.array_equal(idx, t_idx)
        np.testing.assert_array_equal(util, t_util)
        y[idx] = y_true[idx]


def test_coreset_equals_skactiveml_coreset():
    rng, X, y, y_true, _ = make_data(5, n=150)
    for candidates in (None, "indices", "samples"):
        unlabeled = np.flatnonzero(np.isnan(y))
        cand = None
        if candidates is not None:
            cand = np.sort(rng.choice(unlabeled, size=60, replace=False))
            cand = cand if candidates == "indices" else X[cand]
        idx, util = integ.CoreSet().query(X, y, candidates=cand, batch_size=5,
                                          return_utilities=True)
        t_idx, t_util = SkCoreSet(random_state=0).query(X, y, candidates=cand, batch_size=5,
                                                        return_utilities=True)
        assert np.array_equal(idx, t_idx), candidates
        np.testing.assert_allclose(util, t_util, rtol=1e-10, atol=1e-12)
        assert np.array_equal(integ.CoreSet().query(X, y, candidates=cand, batch_size=5), idx)


def test_alamp_refuses_a_shrunken_X_and_resumes_from_its_state():
    _, X, y, y_true, clf = make_data(6)
    qs = integ.Alamp()
    idx = qs.query(X, y, clf, batch_size=3)
    y[idx] = y_true[idx]
    with pytest.raises(ValueError, match="X may only grow"):
        qs.query(X[:-1], y[:-1], clf, batch_size=3)
    other = integ.Alamp()
    other.load_state_dict(qs.state_dict())
    assert np.array_equal(other.query(X, y, clf, batch_size=4), qs.query(X, y, clf, batch_size=4))
    qs.reset()
    assert qs.state_dict()["iteration"] == 0
    with pytest.raises(TypeError, match="predict_proba"):
        qs.query(X, y, object(), fit_clf=False)
