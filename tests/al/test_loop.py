"""The one AL loop (alamp_fast.al): same picks as the reference loop, the fused margin path,
float32 probabilities, bincount metrics, no import circle, query results, array libraries."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score

import alamp_fast as af
from alamp_fast.al import derive_seed, run_seed, strategy_seed
from alamp_fast.al.classifiers import (
    SoftmaxLinearSVC,
    make_classifier,
    pool_probs,
    pool_top2_margin,
)
from alamp_fast.al.loop import eval_scores as bincount_scores
from alamp_fast.al.protocol import simulate
from alamp_fast.al.strategies import STRATEGIES, QueryResult, Strategy, get_strategy


def blobs(seed, n_train=300, n_test=120, n_classes=6, d=10):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, d)) * 1.5
    y = rng.integers(0, n_classes, n_train + n_test)
    X = (means[y] + rng.standard_normal((y.size, d))).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def reference_run(X, y, Xt, yt, name, classifier, *, init, step, iterations, seed):
    """The loop as written before the refactor: full float64 probabilities for every strategy,
    scikit-learn metrics. Returns (order, accuracy, balanced accuracy)."""
    classes, y_pool = np.unique(y, return_inverse=True)
    y_eval = np.searchsorted(classes, yt)
    n_classes = classes.size
    rseed = derive_seed(seed, 0)
    rng = np.random.default_rng(rseed)
    order = [rng.choice(y.size, size=init, replace=False).astype(np.int64)]
    strategy = get_strategy(name, seed=derive_seed(seed, 0, __import__("zlib").crc32(name.encode())))
    acc, bacc = [], []
    for it in range(iterations + 1):
        labeled = np.concatenate(order)
        clf = make_classifier(classifier, cost_sensitive=False, random_state=rseed)
        clf.fit(X[labeled], y_pool[labeled])
        pred = clf.predict(Xt)
        acc.append(accuracy_score(y_eval, pred))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            bacc.append(balanced_accuracy_score(y_eval, pred))
        if it < iterations:
            probs = pool_probs(clf, X, n_classes) if strategy.needs_probs else None
            order.append(np.asarray(strategy.query(probs, step, labeled=labeled, features=X)))
    return np.concatenate(order), np.array(acc), np.array(bacc)


@pytest.mark.parametrize(("classifier", "names"), [
    ("linear-svc", STRATEGIES), ("logreg", ("margin", "entropy", "alamp-div", "random-div"))])
def test_simulate_matches_the_reference_loop(classifier, names):
    X, y, Xt, yt = blobs(1)
    kw = dict(init=12, step=9, iterations=4, seed=5)
    res = simulate(X, y, Xt, yt, strategies=names, classifier=classifier, runs=1,
                   cost_sensitive=False, probs_dtype="float64", **kw)
    for name in names:
        order, acc, bacc = reference_run(X, y, Xt, yt, name, classifier, **kw)
        rec = res.records[name][0]
        np.testing.assert_array_equal(rec.order, order, err_msg=name)
        np.testing.assert_array_equal(rec.accuracy, acc, err_msg=name)
        np.testing.assert_array_equal(rec.balanced_accuracy, bacc, err_msg=name)


def test_float32_default_gives_the_float64_picks_here():
    X, y, Xt, yt = blobs(2)
    kw = dict(strategies=["entropy", "least_confidence", "margin", "alamp"], init=12, step=9,
              iterations=4, runs=2, seed=1)
    a = simulate(X, y, Xt, yt, **kw)
    b = simulate(X, y, Xt, yt, probs_dtype="float64", **kw)
    assert a.config["probs_dtype"] == "float32" and b.config["probs_dtype"] == "float64"
    for name in kw["strategies"]:
        for ra, rb in zip(a.records[name], b.records[name], strict=True):
            np.testing.assert_array_equal(ra.order, rb.order, err_msg=name)
    with pytest.raises(ValueError, match="probs_dtype must be float32 or float64"):
        simulate(X, y, Xt, yt, probs_dtype="float16", **kw)


class Spy(Strategy):
    """Records what the loop hands over; picks the first unlabeled rows."""

    def __init__(self, name, accepts_margin):
        super().__init__()
        self.name, self.accepts_margin, self.seen = name, accepts_margin, []

    def _select(self, probs, budget, labeled, features, margin=None, top_class=None):
        self.seen.append((probs, margin, top_class))
        free = np.setdiff1d(np.arange(features.shape[0]), [] if labeled is None else labeled)
        return QueryResult(free[:budget])


def test_fused_path_and_probability_dtype():
    X, y, Xt, yt = blobs(3)
    fused, full = Spy("fused", True), Spy("full", False)
    simulate(X, y, Xt, yt, strategies=[fused, full], init=10, step=5, iterations=2, runs=1)
    for probs, margin, top in fused.seen:
        assert probs is None and margin.shape == (300,) and top.dtype == np.int64
    for probs, margin, _ in full.seen:
        assert margin is None and probs.dtype == np.float32 and probs.shape == (300, 6)
    full64 = Spy("full", False)
    simulate(X, y, Xt, yt, strategies=[full64], init=10, step=5, iterations=1, runs=1,
             probs_dtype="float64")
    assert full64.seen[0][0].dtype == np.float64


class CountingLogReg(LogisticRegression):
    """Counts calls of predict_proba and predict_top2_margin on the pool (300 rows)."""

    calls = {"proba": 0, "top2": 0}

    def predict_proba(self, X):
        if X.shape[0] == 300:
            CountingLogReg.calls["proba"] += 1
        return super().predict_proba(X)

    def predict_top2_margin(self, X):
        CountingLogReg.calls["top2"] += 1
        return af.top2_margin(super().predict_proba(X))


def test_loop_uses_the_classifier_fused_method_once_per_iteration():
    X, y, Xt, yt = blobs(4)
    CountingLogReg.calls.update(proba=0, top2=0)
    res = simulate(X, y, Xt, yt, strategies=["margin", "alamp-div"], init=10, step=5,
                   iterations=3, runs=1, classifier=CountingLogReg(max_iter=500))
    assert CountingLogReg.calls == {"proba": 0, "top2": 6}
    # and the picks are those of the probability path
    CountingLogReg.calls.update(proba=0, top2=0)
    ref = simulate(X, y, Xt, yt, strategies=["margin", "alamp-div"], init=10, step=5,
                   iterations=3, runs=1, classifier=LogisticRegression(max_iter=500))
    for name in ("margin", "alamp-div"):
        np.testing.assert_array_equal(res.records[name][0].order, ref.records[name][0].order)


def test_softmax_linear_svc_fused_margin_and_float32_probs_are_bitwise():
    X, y, _, _ = blobs(5)
    clf = SoftmaxLinearSVC(random_state=0).fit(X[:60], y[:60] % 4)  # 4 of 6 classes seen
    full = pool_probs(clf, X, 6)
    m_ref, t_ref = af.top2_margin(full)
    for chunk in (None, 7):
        m, t = clf.predict_top2_margin(X, chunk_size=chunk)
        np.testing.assert_array_equal(m, af.top2_margin(clf.predict_proba(X))[0])
    m, t = pool_top2_margin(clf, X, 6)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(t, t_ref)
    np.testing.assert_array_equal(pool_probs(clf, X, 6, np.float32), full.astype(np.float32))


@pytest.mark.parametrize("seed", range(5))
def test_bincount_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 200)
    y[y == 3] = 2  # a class absent from y_true, present in predictions
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200))
    acc, bacc = bincount_scores(y, pred, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert (acc, bacc) == (accuracy_score(y, pred), balanced_accuracy_score(y, pred))


def test_one_seed_derivation():
    assert run_seed(7, 2) == derive_seed(7, 2)
    assert strategy_seed(7, 2, "random") == derive_seed(7, 2, __import__("zlib").crc32(b"random"))


def test_no_import_circle_between_the_schemes():
    code = ("import sys, alamp_fast.finetune.scheme as s, alamp_fast.al.loop; "
            "print(any(m in sys.modules for m in ('alamp_fast.protocol', "
            "'alamp_fast.al.protocol')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_query_result_carries_scores_margins_and_classes():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), 50)
    margin, top = af.top2_margin(probs)
    for name in ("margin", "margin-div", "alamp", "alamp-div", "random-div"):
        a, b = get_strategy(name, seed=1), get_strategy(name, seed=1)
        for it in range(2):
            ra = a.query_result(probs, 4, labeled=np.arange(it * 4))
            rb = b.query_result(None, 4, labeled=np.arange(it * 4), margin=margin, top_class=top)
            np.testing.assert_array_equal(ra.picks, rb.picks)
            np.testing.assert_array_equal(ra.margin, margin)
            np.testing.assert_array_equal(ra.top_class, top)
            assert ra.scores.shape == (50,)
    res = get_strategy("entropy").query_result(probs, 3)
    np.testing.assert_array_equal(res.scores, af.entropy(probs))
    assert res.largest and np.asarray(res).tolist() == res.picks.tolist()
    with pytest.raises(ValueError, match="needs probs, not precomputed margins"):
        get_strategy("entropy").query(None, 3, margin=margin, top_class=top)
    with pytest.raises(ValueError, match="margin= and top_class= together"):
        get_strategy("margin").query(None, 3, margin=margin)


def test_old_style_strategy_subclass_still_works():
    class FirstRows(Strategy):
        name = "first"
        needs_probs = False

        def _select(self, probs, budget, labeled, features):
            return np.arange(budget) + (0 if labeled is None else labeled.size)

    X, y, Xt, yt = blobs(6)
    res = simulate(X, y, Xt, yt, strategies=[FirstRows()], init=10, step=5, iterations=2, runs=1)
    assert res.records["first"][0].labeled.tolist() == [10, 15, 20]


def test_strategies_keep_torch_tensors():
    import torch

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 40).astype(np.float32)
    for name in ("margin", "entropy", "least_confidence", "margin-div", "random-div"):
        picks_t = get_strategy(name, seed=0).query(torch.from_numpy(probs), 5, labeled=[0, 1])
        picks_n = get_strategy(name, seed=0).query(probs, 5, labeled=[0, 1])
        assert isinstance(picks_t, torch.Tensor), name
        np.testing.assert_array_equal(picks_t.numpy(), picks_n)
    s = get_strategy("alamp")
    for _ in range(2):
        picks = s.query(torch.from_numpy(probs), 3)
    assert s.prev_margin.dtype == np.float32 and len(picks) == 3


def test_user_strategy_returning_bad_picks_is_refused():
    class Bad(Strategy):
        name = "bad"
        needs_probs = False

        def _select(self, probs, budget, labeled, features):
            return np.zeros(budget, dtype=np.int64)

    X, y, Xt, yt = blobs(7)
    with pytest.raises(ValueError, match="duplicate or already-labeled"):
        simulate(X, y, Xt, yt, strategies=[Bad()], init=10, step=3, iterations=1, runs=1)


def test_clone_of_counting_classifier_keeps_fused_method():
    # make_classifier clones estimator objects: the subclass (and its fused method) survives
    assert hasattr(clone(CountingLogReg()), "predict_top2_margin")


def _digits_split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(y.size)
    tr, te = perm[:1400], perm[1400:]
    return X[tr] / 16.0, y[tr], X[te] / 16.0, y[te]


def test_warm_start_classifier_is_kept_per_run_and_strategy_and_matches_cold():
    # A classifier with warm_start=True is built once per (run, strategy) and refitted, so every
    # fit after the first starts from the previous one. With the folds a cold fit deals and a
    # tolerance tight enough that both solves reach the same optimum, the warm run's picks and
    # accuracies are the cold run's (docs/svm.md, "warm start": SVCCV's own sticky folds
    # cross-validate on other folds, so there the C choice can differ where two C tie).
    from alamp_fast.al.loop import keeps_warm
    from alamp_fast.svm import SVCCV

    fits = []

    class Recording(SVCCV):
        _STICKY_FOLDS = False  # the folds of a cold fit

        def fit(self, X, y, sample_weight=None):
            super().fit(X, y, sample_weight)
            # the estimator itself, not id(self): a finished (run, strategy)'s estimator may be
            # freed and a later one allocated at the same address, reusing its id
            fits.append((self, X.shape[0], self.warm_started_))
            return self

    X, y, Xt, yt = _digits_split()
    kw = dict(strategies=("alamp", "margin"), init=40, step=40, iterations=3, runs=2, seed=0)
    cold = simulate(X, y, Xt, yt, classifier=SVCCV(tol=1e-10), **kw)
    warm_clf = Recording(tol=1e-10, warm_start=True)
    assert keeps_warm(warm_clf) and not keeps_warm(SVCCV()) and not keeps_warm(object())
    warm = simulate(X, y, Xt, yt, classifier=warm_clf, **kw)
    # 2 runs x 2 strategies, 4 fits each: one estimator per (run, strategy)
    assert len(fits) == 16 and len({id(f[0]) for f in fits}) == 4
    for k in range(4):
        group = fits[4 * k : 4 * k + 4]
        assert len({id(f[0]) for f in group}) == 1
        assert [f[1] for f in group] == [40, 80, 120, 160]
        assert [f[2] for f in group] == [False, True, True, True]
    for key in kw["strategies"]:
        for a, b in zip(cold.records[key], warm.records[key], strict=True):
            np.testing.assert_array_equal(a.order, b.order)
            np.testing.assert_array_equal(a.accuracy, b.accuracy)
