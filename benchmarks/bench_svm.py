"""pytest-benchmark of the SVM training step (issue 4), one benchmark per stage with a
``provider`` parameter: alamp_fast's linear ``SVCCV`` on numpy, on torch (host) and on CUDA
(skipped without one), against scikit-learn's ``GridSearchCV(LinearSVC)`` and its supported
RBF ``SVC`` with probabilities (``SVC(probability=True)`` is deprecated since scikit-learn 1.9):
``GridSearchCV(SVC())`` for ``C``, then ``CalibratedClassifierCV(SVC(C=best),
ensemble=False)`` on the same folds (``sklearn-svc-calibrated``).

Stages: ``cv_fit`` (C chosen by cross-validation over ``Cs`` and folds, then the refit) and
``pool_top2`` (top-2 margin of the fitted model's scores over a pool). The held-out accuracy
rides along in ``extra_info`` (quality next to time), with the load average when each benchmark
started and ended and ``under_load`` (``benchmarks/_harness.py``; both are printed too). Synthetic Gaussian clusters, rows
L2-normalised; the end-to-end comparison on the real features with the issue's sizes is
``benchmarks/svm_vs_sklearn.py``. Run::

    python -m pytest benchmarks/bench_svm.py -o addopts="" --benchmark-enable -p no:cacheprovider

``ALAMP_FAST_BENCH_SCALE`` = quick | default | full (default: quick: 400 labeled, 256-d,
20 classes, 3 Cs x 3 folds; full: 3,200 x 1,024-d, 100 classes, 5 x 5, pool 50,000).
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest
from _harness import Run, load_average

from alamp_fast.svm import SVCCV, make_cs, stratified_folds
from alamp_fast.uncertainty import top2_margin

SCALE = os.environ.get("ALAMP_FAST_BENCH_SCALE", "quick")
SIZES = {
    "quick": dict(labeled=400, dim=256, classes=20, pool=5_000, cs=3, folds=3),
    "default": dict(labeled=1_600, dim=512, classes=50, pool=20_000, cs=5, folds=5),
    "full": dict(labeled=3_200, dim=1_024, classes=100, pool=50_000, cs=5, folds=5),
}[SCALE]


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _providers():
    no_torch = importlib.util.find_spec("torch") is None
    return [
        pytest.param("alamp_fast-numpy", id="alamp_fast-numpy"),
        pytest.param(
            "alamp_fast-torch-cpu",
            id="alamp_fast-torch-cpu",
            marks=[pytest.mark.skipif(no_torch, reason="torch is not installed")],
        ),
        pytest.param(
            "alamp_fast-cuda",
            id="alamp_fast-cuda",
            marks=[pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="no CUDA device")],
        ),
        pytest.param("sklearn-linearsvc", id="sklearn-linearsvc"),
        pytest.param("sklearn-svc-calibrated", id="sklearn-svc-calibrated"),
    ]


@pytest.fixture(scope="module")
def harness():
    """The run's load average at start (printed) and, at the end, printed with the mark."""
    run = Run("bench_svm")
    yield run
    end = load_average()
    print(
        f"[bench_svm] load average at end: {end}"
        + ("  -> figures taken UNDER LOAD" if run.under_load(end) else "")
    )


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(SIZES["classes"], SIZES["dim"])).astype(np.float32)

    def draw(n):
        labels = rng.integers(0, SIZES["classes"], n)
        X = centers[labels] + 2.5 * rng.normal(size=(n, SIZES["dim"])).astype(np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True), labels

    X, y = draw(SIZES["labeled"])
    X_test, y_test = draw(2_000)
    pool, _ = draw(SIZES["pool"])
    folds = stratified_folds(y, SIZES["folds"], random_state=0)
    splits = [
        (np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(folds.max() + 1)
    ]
    return X, y, X_test, y_test, pool, make_cs(SIZES["cs"]), splits


def _make(provider, Cs, splits):
    """An unfitted model: ``fit(X, y)`` runs CV + refit; ``top2(pool)`` scores the pool."""
    if provider.startswith("alamp_fast"):
        device = {"alamp_fast-numpy": "cpu", "alamp_fast-cuda": "cuda"}.get(provider)
        if provider == "alamp_fast-torch-cpu":
            import torch

            device = torch.device("cpu")
        model = SVCCV(Cs=Cs, cv=splits, device=device)
        return model, model, lambda pool: model.predict_top2_margin(pool)
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    if provider == "sklearn-linearsvc":
        grid = GridSearchCV(LinearSVC(), {"C": list(Cs)}, cv=splits)
        return grid, grid, lambda pool: top2_margin(grid.best_estimator_.decision_function(pool))
    model = _CalibratedSVC(Cs, splits)
    return model, model, lambda pool: top2_margin(model.predict_proba(pool))


class _CalibratedSVC:
    """``GridSearchCV(SVC())`` for ``C``, then ``CalibratedClassifierCV(SVC(C=best),
    ensemble=False)`` on the same folds: scikit-learn's supported RBF ``SVC`` probabilities."""

    def __init__(self, Cs, splits):
        self.Cs, self.splits = Cs, splits

    def fit(self, X, y):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import GridSearchCV
        from sklearn.svm import SVC

        grid = GridSearchCV(SVC(), {"C": list(self.Cs)}, cv=self.splits, refit=False).fit(X, y)
        self.model_ = CalibratedClassifierCV(
            SVC(C=grid.best_params_["C"]), ensemble=False, cv=self.splits
        ).fit(X, y)
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def score(self, X, y):
        return self.model_.score(X, y)


def _info(benchmark, harness, stage, provider):
    benchmark.group = f"svm {stage} " + ",".join(f"{k}={v}" for k, v in SIZES.items())
    benchmark.extra_info.update(stage=stage, provider=provider, **SIZES)
    benchmark.extra_info["load_average_start"] = load_average()


def _load_end(benchmark, harness):
    end = load_average()
    benchmark.extra_info["load_average_end"] = end
    benchmark.extra_info["under_load"] = harness.under_load(end)


@pytest.mark.parametrize("provider", _providers())
def test_cv_fit(benchmark, harness, problem, provider):
    X, y, X_test, y_test, _, Cs, splits = problem
    _info(benchmark, harness, "cv_fit", provider)

    def fit():
        model, scorer, _ = _make(provider, Cs, splits)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at large C
            model.fit(X, y)
        return scorer

    scorer = benchmark.pedantic(fit, rounds=1, iterations=1)
    benchmark.extra_info["accuracy"] = float(scorer.score(X_test, y_test))
    _load_end(benchmark, harness)


@pytest.mark.parametrize("provider", _providers())
def test_pool_top2(benchmark, harness, problem, provider):
    X, y, _, _, pool, Cs, splits = problem
    _info(benchmark, harness, "pool_top2", provider)
    model, _, top2 = _make(provider, Cs, splits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    top2(pool[:2])  # warm-up: numba loads its compiled kernel once per process
    margin, _ = benchmark(top2, pool)
    benchmark.extra_info["rows_per_s"] = pool.shape[0] / benchmark.stats.stats.mean
    _load_end(benchmark, harness)
    assert margin.shape == (pool.shape[0],)
