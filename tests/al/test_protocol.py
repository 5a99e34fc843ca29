"""The protocol's bookkeeping: budgets, initial batches, reproducibility, summaries."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from alamp_fast.al.classifiers import SoftmaxLinearSVC, make_classifier, pool_probs
from alamp_fast.al.datasets import l2_normalize
from alamp_fast.al.imbalance import imbalance_ratio
from alamp_fast.al.protocol import SimulationResult, simulate
from alamp_fast.al.strategies import STRATEGIES, MarginSampling, Strategy


def blobs(seed, n_train=240, n_test=100, n_classes=5, d=12, spread=1.5):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, d)) * 2
    # Balanced classes (pool ir 0), so the default classifier is not the cost-sensitive one.
    y = np.concatenate([rng.permutation(np.arange(n) % n_classes) for n in (n_train, n_test)])
    X = (means[y] + spread * rng.standard_normal((y.size, d))).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


SMALL = dict(init=10, step=7, iterations=4, runs=2)


@pytest.fixture(scope="module")
def result():
    X, y, Xt, yt = blobs(0)
    return simulate(X, y, Xt, yt, strategies=STRATEGIES, seed=3, targets=(0.5, 0.99), **SMALL)


def test_budgets_exact_and_no_row_labeled_twice(result):
    expected = [10, 17, 24, 31, 38]
    for name in STRATEGIES:
        assert len(result.records[name]) == 2
        for rec in result.records[name]:
            assert rec.labeled.tolist() == expected
            assert rec.order.size == 38 and np.unique(rec.order).size == 38
            assert rec.order.min() >= 0 and rec.order.max() < 240
            assert rec.class_counts.sum(axis=1).tolist() == expected
            for it in range(5):
                assert rec.ir[it] == pytest.approx(imbalance_ratio(rec.class_counts[it]))
            assert (rec.fit_s > 0).all() and (rec.query_s[:-1] >= 0).all()
            assert rec.query_s[-1] == 0  # no query after the last fit


def test_same_initial_batch_across_strategies_not_across_runs(result):
    for run in range(2):
        firsts = {tuple(result.records[n][run].order[:10]) for n in STRATEGIES}
        assert len(firsts) == 1
        accs = {result.records[n][run].accuracy[0] for n in STRATEGIES}
        assert len(accs) == 1  # same batch, same seeded classifier: same first accuracy
    assert not np.array_equal(result.records["margin"][0].order[:10],
                              result.records["margin"][1].order[:10])


def test_runs_reproducible_from_seed(result):
    X, y, Xt, yt = blobs(0)
    again = simulate(X, y, Xt, yt, strategies=["random", "alamp-div", "coreset"], seed=3,
                     **SMALL)
    for name in ("random", "alamp-div", "coreset"):
        for a, b in zip(result.records[name], again.records[name], strict=True):
            assert np.array_equal(a.order, b.order)
            assert np.array_equal(a.accuracy, b.accuracy)
    other = simulate(X, y, Xt, yt, strategies=["random"], seed=4, **SMALL)
    assert not np.array_equal(other.records["random"][0].order, result.records["random"][0].order)


def test_strategies_differ(result):
    orders = {n: tuple(result.records[n][0].order) for n in STRATEGIES}
    assert len(set(orders.values())) >= 7  # the picks are not all the same


def test_first_query_is_the_strategy_on_the_first_model(result):
    X, y, Xt, yt = blobs(0)
    rec = result.records["margin"][0]
    initial = rec.order[:10]
    assert result.config["cost_sensitive"] is False
    clf = make_classifier("linear-svc", random_state=rec.seed).fit(X[initial], y[initial])
    probs = pool_probs(clf, X, 5)
    assert rec.order[10:17].tolist() == MarginSampling().query(probs, 7, labeled=initial).tolist()
    assert rec.accuracy[0] == pytest.approx(np.mean(clf.predict(Xt) == yt))


def test_summary_metrics(result):
    s = result.summary()
    for name in STRATEGIES:
        acc = np.stack([r.accuracy for r in result.records[name]])
        assert s[name]["accuracy_mean"] == pytest.approx(acc.mean(axis=0).tolist())
        assert s[name]["accuracy_std"] == pytest.approx(acc.std(axis=0).tolist())
        assert s[name]["mean_accuracy"] == pytest.approx(acc.mean())
        assert s[name]["gain_over_random"] == pytest.approx(
            s[name]["mean_accuracy"] - s["random"]["mean_accuracy"])
        reach = s[name]["samples_to_target"]["0.5"]
        curve = acc.mean(axis=0)
        first = int(np.argmax(curve >= 0.5))
        assert reach == (s[name]["labeled"][first] if curve.max() >= 0.5 else None)
    assert s["random"]["gain_over_random"] == 0.0


def test_samples_to_target_literal():
    from alamp_fast.al.protocol import RunRecord

    def rec(acc):
        z = np.zeros(4)
        return RunRecord("margin", 0, 0, np.array([10, 20, 30, 40]), np.array(acc), z, z,
                         np.zeros((4, 2)), z, z, z, np.arange(40))

    res = SimulationResult({"targets": [0.6, 0.8, 0.95]}, {}, ["margin"],
                           {"margin": [rec([0.5, 0.7, 0.65, 0.9]), rec([0.5, 0.5, 0.95, 0.9])]})
    s = res.summary()["margin"]
    # mean curve 0.5, 0.6, 0.8, 0.9
    assert s["samples_to_target"] == {"0.6": 20, "0.8": 30, "0.95": None}
    assert s["mean_accuracy"] == pytest.approx(0.7)
    assert s["gain_over_random"] is None


def test_imbalanced_pool_and_cost_sensitive():
    X, y, Xt, yt = blobs(1, n_train=600)
    res = simulate(X, y, Xt, yt, strategies=["random"], imbalance=0.6, init=10, step=10,
                   iterations=1, runs=1)
    counts = np.array(res.dataset["pool_class_counts"])
    assert abs(imbalance_ratio(counts) - 0.6) <= 0.01
    assert res.dataset["n_pool"] == counts.sum() < 600
    assert res.config["cost_sensitive"] is True
    assert np.isin(res.pool_rows, np.arange(600)).all()
    bal = simulate(X, y, Xt, yt, strategies=["random"], init=10, step=10, iterations=1, runs=1)
    assert bal.config["cost_sensitive"] is False  # balanced blobs: pool ir 0


def test_estimator_objects_and_user_strategies():
    X, y, Xt, yt = blobs(2)

    class FirstRows(Strategy):
        name = "first-rows"
        needs_probs = False

        def __init__(self):
            super().__init__()
            self.resets = 0

        def reset(self):
            super().reset()
            self.resets += 1

        def _select(self, probs, budget, labeled, features):
            free = np.setdiff1d(np.arange(features.shape[0]), labeled)
            return free[:budget]

    s = FirstRows()
    res = simulate(X, y, Xt, yt, strategies=[s, "margin"], classifier=LogisticRegression(),
                   init=10, step=5, iterations=2, runs=2)
    assert s.resets == 2
    rec = res.records["first-rows"][0]
    free = np.setdiff1d(np.arange(240), rec.order[:10])
    assert rec.order[10:].tolist() == free[:10].tolist()

    class Twice(FirstRows):
        name = "twice"

        def _select(self, probs, budget, labeled, features):
            return np.full(budget, labeled[0])

    with pytest.raises(ValueError, match="already-labeled"):
        simulate(X, y, Xt, yt, strategies=[Twice()], init=10, step=2, iterations=1, runs=1)


@pytest.mark.parametrize("name", ["linear-svc", "logreg"])
def test_named_classifiers_give_probabilities(name):
    X, y, Xt, _ = blobs(3)
    clf = make_classifier(name, random_state=0).fit(X[:60], y[:60])
    p = clf.predict_proba(Xt)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
    assert np.array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(Xt))
    cs = make_classifier(name, cost_sensitive=True)
    params = cs.get_params()
    assert "balanced" in [v for k, v in params.items() if k.endswith("class_weight")]


def test_softmax_linear_svc_binary_and_temperature():
    X, y, Xt, _ = blobs(4, n_classes=2)
    sharp = SoftmaxLinearSVC(temperature=0.05, random_state=0).fit(X, y)
    flat = SoftmaxLinearSVC(temperature=5.0, random_state=0).fit(X, y)
    ps, pf = sharp.predict_proba(Xt), flat.predict_proba(Xt)
    assert ps.shape == (100, 2)
    assert ps.max(axis=1).mean() > pf.max(axis=1).mean()
    d = sharp.decision_function(Xt).astype(np.float64)
    np.testing.assert_allclose(ps[:, 1], 1 / (1 + np.exp(-2 * d / 0.05)), rtol=1e-9)
    assert np.array_equal(sharp.predict(Xt), sharp.classes_[ps.argmax(axis=1)])
    # the float32 scoring agrees with LinearSVC's own decision values
    np.testing.assert_allclose(d, sharp.svc_.decision_function(l2_normalize(Xt)), atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        SoftmaxLinearSVC(temperature=0).fit(X, y)


def test_pool_probs_keeps_global_class_columns():
    X, y, _, _ = blobs(5)
    keep = y != 2  # class 2 never labeled
    clf = LogisticRegression().fit(X[keep][:50], y[keep][:50])
    p = pool_probs(clf, X, 5)
    assert p.shape == (240, 5) and (p[:, 2] == 0).all()
    np.testing.assert_allclose(p[:, [0, 1, 3, 4]], clf.predict_proba(X))


def test_label_values_need_not_be_codes():
    X, y, Xt, yt = blobs(6)
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    a = simulate(X, names[y], Xt, names[yt], strategies=["margin"], init=10, step=5,
                 iterations=1, runs=1)
    b = simulate(X, y, Xt, yt, strategies=["margin"], init=10, step=5, iterations=1, runs=1)
    assert np.array_equal(a.records["margin"][0].order, b.records["margin"][0].order)


def test_bad_arguments():
    X, y, Xt, yt = blobs(7)
    with pytest.raises(ValueError, match="exceeds the 240 pool samples"):
        simulate(X, y, Xt, yt, init=100, step=50, iterations=3)
    with pytest.raises(ValueError, match="unknown strategy"):
        simulate(X, y, Xt, yt, strategies=["nope"], init=10, step=5, iterations=1)
    with pytest.raises(ValueError, match="twice"):
        simulate(X, y, Xt, yt, strategies=["margin", "margin"], init=10, step=5, iterations=1)
    with pytest.raises(ValueError, match="init"):
        simulate(X, y, Xt, yt, init=1, step=5, iterations=1)
    with pytest.raises(ValueError, match="step"):
        simulate(X, y, Xt, yt, init=10, step=2.5, iterations=1)
    with pytest.raises(ValueError, match="target"):
        simulate(X, y, Xt, yt, init=10, step=5, iterations=1, targets=[90])
    with pytest.raises(ValueError, match="not classes of the pool"):
        simulate(X, y, Xt, yt + 10, init=10, step=5, iterations=1)
    with pytest.raises(ValueError, match="unknown classifier"):
        simulate(X, y, Xt, yt, classifier="forest", init=10, step=5, iterations=1)
    with pytest.raises(ValueError, match="single class"):
        simulate(X, np.where(np.arange(240) < 239, 0, 1), Xt, np.zeros(100, int), init=2,
                 step=1, iterations=1, seed=0)


def _has_af_svm() -> bool:
    if importlib.util.find_spec("alamp_fast.svm") is None:
        return False
    return hasattr(importlib.import_module("alamp_fast.svm"), "SVC")


@pytest.mark.skipif(not _has_af_svm(), reason="alamp_fast.svm.SVC (the SVM issue) is not here")
def test_af_svm_classifier():
    X, y, Xt, yt = blobs(8)
    res = simulate(X, y, Xt, yt, strategies=["margin"], classifier="af-svm", init=10, step=5,
                   iterations=1, runs=1)
    assert res.records["margin"][0].accuracy[-1] > 0.5


@pytest.mark.parametrize("normalize", [True, False])
def test_softmax_linear_svc_chunked_probabilities_are_bitwise_whole(normalize):
    # predict_proba works row chunk by row chunk (no (n, C) float64 temporaries); every value
    # must be the one of the whole-array formula, whatever the chunk boundaries
    from alamp_fast.al.classifiers import _decision_matrix, _softmax

    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 40)).astype(np.float32)
    y = rng.integers(0, 7, size=3000)
    clf = SoftmaxLinearSVC(random_state=0, normalize=normalize).fit(X[:300], y[:300])
    whole = _softmax(_decision_matrix(clf.decision_function(X)) / clf.temperature)
    got = clf.predict_proba(X)
    assert got.dtype == np.float64 and got.shape == (3000, 7)
    np.testing.assert_array_equal(got, whole)
    for chunk in (1, 7, 1000):
        parts = dict(clf._proba_chunks(X, chunk))
        assert sorted(parts) == list(range(0, 3000, chunk))
        np.testing.assert_array_equal(np.concatenate([parts[a] for a in sorted(parts)]), whole)
    np.testing.assert_array_equal(clf.predict_proba(X[:5].tolist()), whole[:5])
    assert clf.predict_proba(X[:0]).shape == (0, 7)
    assert pool_probs(clf, X, 9, np.float32).shape == (3000, 9)
