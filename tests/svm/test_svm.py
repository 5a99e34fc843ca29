"""alamp_fast.svm: the batched solver against a literal optimiser, the estimators against
scikit-learn's LinearSVC / SVC on digits, the CV helper, the calibration and the fused top-2
path, on numpy and torch. The Caltech-101 comparisons are in test_svm_caltech.py."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import assert_close, assert_exact
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC as SkSVC
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from alamp_fast.svm import (
    SVC,
    SVCCV,
    _calibration,
    _solver,
    cross_validate_C,
    make_cs,
    stratified_folds,
    top2_margin_chunked,
)
from alamp_fast.svm._backend import get_backend
from alamp_fast.uncertainty import top2_margin

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _cuda_available() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return torch.cuda.is_available()


def _device_params():
    no_torch = [pytest.mark.skip(reason="torch is not installed (pip install alamp_fast[torch])")]
    no_cuda = [pytest.mark.skip(reason="no CUDA device visible to torch")]
    return [
        pytest.param("cpu", id="numpy"),
        pytest.param("torch-cpu", id="torch-cpu", marks=[] if HAS_TORCH else no_torch),
        pytest.param(
            "cuda",
            id="torch-cuda",
            marks=[pytest.mark.gpu] + ([] if _cuda_available() else no_cuda),
        ),
    ]


@contextlib.contextmanager
def _torch_one_thread():
    """torch's OpenMP threads spin after each op and starve the next test's BLAS threads on a
    small machine (numpy tests 5x slower after torch ones); one thread is enough here."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(params=_device_params())
def device(request):
    """The estimator ``device`` of each backend: numpy, torch on the host, torch on CUDA."""
    if request.param != "torch-cpu":
        yield request.param
        return
    import torch

    with _torch_one_thread():
        yield torch.device("cpu")


def _l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(_l2(X / 16.0), y, test_size=0.5, random_state=0, stratify=y)


# --------------------------------------------------------------------------------------------
# import


def test_import_does_not_import_torch():
    code = "import sys, alamp_fast.svm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# the batched solver against scipy's optimiser, one problem at a time


def _objective(w, G, y, cost):
    m = np.maximum(0.0, 1.0 - y * (G @ w))
    return 0.5 * w @ w + np.sum(cost * m * m), w - 2.0 * G.T @ (cost * y * m)


def _reference_solve(G, Y, cost):
    W = np.zeros((G.shape[1], Y.shape[1]))
    for p in range(Y.shape[1]):
        res = minimize(
            _objective,
            np.zeros(G.shape[1]),
            args=(G, Y[:, p], cost[:, p]),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-13, "ftol": 1e-15, "maxiter": 20000},
        )
        W[:, p] = res.x
    return W


@pytest.mark.parametrize("path", ["woodbury", "pcg", "mixed"])
def test_solver_matches_literal_minimiser(device, rng, path, monkeypatch):
    n, r = 60, 7
    G = rng.normal(size=(n, r)) / np.sqrt(r)
    Y = np.where(rng.random((n, 6)) < 0.3, 1.0, -1.0)
    C = np.array([0.01, 0.3, 1.0, 5.0, 30.0, 100.0])
    cost = C * rng.uniform(0.5, 2.0, size=(n, 1))
    cost[rng.random((n, 6)) < 0.2] = 0.0  # held-out rows of a fold
    if path == "woodbury":
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", n)
    elif path == "pcg":
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 0)
        monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 0)
    else:
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 20)
        monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 0)
    xp = get_backend(device)
    f64 = xp.float_dtype(np.float64)
    W, n_iter = _solver.solve(
        xp, xp.asarray(G, f64), xp.asarray(Y, f64), xp.asarray(cost, f64), tol=1e-10, max_iter=200
    )
    W = xp.to_numpy(W)
    ref = _reference_solve(G, Y, cost)
    assert_close(W, ref, f"W ({path})", rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert (n_iter >= 1).all() and (n_iter < 200).all()


def _rbf_problem(rng, n=70, n_cols=6):
    X = rng.normal(size=(n, 4))
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    K = np.exp(-0.4 * sq) + 1.0
    Y = np.where(rng.random((n, n_cols)) < 0.3, 1.0, -1.0)
    C = np.array([0.01, 0.3, 1.0, 5.0, 30.0, 100.0])[:n_cols]
    cost = C * rng.uniform(0.5, 2.0, size=(n, 1))  # per-row weights, as class_weight gives
    cost[rng.random((n, n_cols)) < 0.2] = 0.0  # held-out rows of a fold
    return X, K, Y, cost


@pytest.mark.parametrize("path", ["woodbury", "cg", "slow-cg-dense", "mixed"])
def test_sample_space_solver_matches_literal_minimiser(device, rng, path, monkeypatch):
    """solve_dual's coefficients b give w = G^T b, the minimiser of the primal problem on any
    G with G G^T = K + 1, through each direction route (dense active-set solves, conjugate
    gradients with the Nystrom preconditioner, both), with held-out rows and C 0.01 to 100."""
    X, K, Y, cost = _rbf_problem(rng)
    n = K.shape[0]
    if path == "woodbury":
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", n)
    elif path == "cg":
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 0)
        monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 0)
        monkeypatch.setattr(_solver, "_DUAL_SLOW_CG_COND", np.inf)
    elif path == "slow-cg-dense":  # CG for the well-conditioned columns only
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 0)
        monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 0)
        monkeypatch.setattr(_solver, "_DUAL_SLOW_CG_COND", 50.0)
    else:
        monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 25)
        monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 0)
    monkeypatch.setattr(_solver, "_NYSTROM_RANK", 8)  # fewer eigenpairs than rows
    xp = get_backend(device)
    f64 = xp.float_dtype(np.float64)
    kmap = _solver.rbf_kernel_map(xp, xp.asarray(X, f64), 0.4, f64)
    assert_close(xp.to_numpy(kmap.K), K, "K + 1", rtol=1e-12, atol=1e-12)
    B, n_iter = _solver.solve_dual(
        xp, kmap.Kpad, xp.asarray(Y, f64), xp.asarray(cost, f64), tol=1e-10, max_iter=200
    )
    B = xp.to_numpy(B)
    lam, U = np.linalg.eigh(K)
    G = U * np.sqrt(np.maximum(lam, 0.0))  # one G with G G^T = K + 1
    ref = _reference_solve(G, Y, cost)
    assert_close(G.T @ B, ref, f"G^T b ({path})", rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert_close(K @ B, G @ ref, f"decision values ({path})", rtol=0, atol=1e-5)
    # b is supported on the rows that train (a held-out or weightless row has b = 0)
    held = B[cost == 0]
    assert_close(held, np.zeros_like(held), "b on held-out rows", rtol=0, atol=1e-9)
    assert (n_iter >= 1).all() and (n_iter < 200).all()
    # started from its own solution, every problem stops after the check
    B2, n_iter2 = _solver.solve_dual(
        xp,
        kmap.Kpad,
        xp.asarray(Y, f64),
        xp.asarray(cost, f64),
        xp.asarray(B, f64),
        tol=1e-8,
        max_iter=200,
    )
    assert (n_iter2 <= 1).all()
    assert_close(xp.to_numpy(B2), B, "warm restart", rtol=0, atol=1e-7 * np.abs(B).max())


def test_sample_space_solver_equals_the_eigenbasis_solver(rng):
    """Same problems, same optimum: solve (on the eigenbasis) and solve_dual (on K) agree."""
    X, K, Y, cost = _rbf_problem(rng, n=120)
    xp = get_backend("cpu")
    fmap = _solver.rbf_map(xp, X, 0.4, np.float64)
    W, _ = _solver.solve(xp, fmap.G, Y, cost, tol=1e-9, max_iter=200)
    kmap = _solver.rbf_kernel_map(xp, X, 0.4, np.float64)
    B, _ = _solver.solve_dual(xp, kmap.Kpad, Y, cost, tol=1e-9, max_iter=200)
    assert_close(kmap.decision(B), fmap.decision(W), "decision values", rtol=0, atol=1e-6)
    assert_close(B, fmap.coef(W), "dual coefficients", rtol=0, atol=1e-5 * np.abs(B).max())


def _fold_problem(rng, n=90, n_folds=3, n_cols=4):
    """An RBF problem laid out as SVCCV lays it out: the columns of a fold share its held-out
    rows (cost 0), plus one column trained on every row."""
    X, K, _, _ = _rbf_problem(rng, n=n, n_cols=1)
    folds = rng.integers(0, n_folds, size=n)
    C = np.array([0.01, 1.0, 30.0, 100.0])[:n_cols]
    weight = rng.uniform(0.5, 2.0, size=(n, 1))
    costs = [np.where(folds[:, None] != f, weight * C, 0.0) for f in range(n_folds)]
    cost = np.concatenate(costs + [weight * C[-1:]], axis=1)
    Y = np.where(rng.random(cost.shape) < 0.3, 1.0, -1.0)
    return X, K, Y, cost


def test_sample_space_row_sets_are_the_whole_matrix_solve(rng, monkeypatch):
    """Columns solved on their row set's block of K (a fold's training rows) reach what the
    same solver reaches on all of K, also from a start that is nonzero on a column's weightless
    rows (those rows then belong to its set)."""
    X, K, Y, cost = _fold_problem(rng)
    xp = get_backend("cpu")
    kmap = _solver.rbf_kernel_map(xp, X, 0.4, np.float64)
    groups = _solver._row_sets(xp, cost, None)
    # 3 folds' sets, and the all-rows column solved on the whole matrix
    assert len(groups) == 4 and groups[0][0] is None
    assert_exact(groups[0][1], np.array([cost.shape[1] - 1]), "all-rows column")
    for rows, cols in groups[1:]:
        assert_exact(rows, np.flatnonzero(cost[:, cols[0]] > 0), "a fold's training rows")
        assert (cost[:, cols] > 0).sum(0).tolist() == [rows.size] * cols.size
    B0 = 0.01 * rng.normal(size=cost.shape)  # nonzero on held-out rows too
    for start in (None, B0):
        B, n_iter = _solver.solve_dual(xp, kmap.Kpad, Y, cost, start, tol=1e-10, max_iter=200)
        with monkeypatch.context() as m:
            m.setattr(_solver, "_ROW_SET_FRACTION", 0.0)  # every column on all rows
            assert _solver._row_sets(xp, cost, start)[0][0] is None
            ref, n_ref = _solver.solve_dual(
                xp, kmap.Kpad, Y, cost, start, tol=1e-10, max_iter=200
            )
        assert_close(K @ B, K @ ref, "decision values", rtol=0, atol=1e-7)
        assert_close(B, ref, "coefficients", rtol=0, atol=1e-7 * np.abs(ref).max())
        assert np.abs(n_iter - n_ref).max() <= 1
    # a column with no weighted row and no start is left out (solved by zero)
    cost[:, 0] = 0.0
    assert 0 not in np.concatenate([cols for _, cols in _solver._row_sets(xp, cost, None)])
    B, n_iter = _solver.solve_dual(xp, kmap.Kpad, Y, cost, tol=1e-10, max_iter=200)
    assert_exact(B[:, 0], np.zeros(K.shape[0]), "weightless column")
    assert n_iter[0] == 0


def test_line_search_on_its_entries_equals_the_dense_search(rng):
    """The host line search on the entries active somewhere in [0, span] returns the step of
    the search over all of (n, P), also for columns whose step leaves the span."""
    xp = get_backend("cpu")
    for dtype in (np.float64, np.float32):
        n, P = 300, 40
        M = rng.normal(size=(n, P)).astype(dtype)
        yGs = (rng.normal(size=(n, P)) * rng.uniform(0.01, 2.0, size=P)).astype(dtype)
        cost = ((rng.random((n, P)) > 0.2) * rng.choice([0.01, 1.0, 100.0], size=P)).astype(dtype)
        ws = rng.normal(size=(1, P))
        d1 = ws - 2.0 * (cost * yGs * np.maximum(M, 0)).sum(0, keepdims=True)
        ws = np.where(d1 > 0, ws - 2.0 * d1, ws)  # descent: phi'(0) < 0
        ss = rng.uniform(0.1, 10.0, size=(1, P))
        # long steps: no entry ever active (minimum at t = 5), and entries that only become
        # active at t = 2.5, past the span (minimum between 2.5 and 6)
        M[:, :4], yGs[:, :4], ws[:, :4], ss[:, :4] = -abs(M[:, :4]), abs(yGs[:, :4]), -5.0, 1.0
        M[:, 4:8], yGs[:, 4:8], ws[:, 4:8], ss[:, 4:8] = -1.0, -0.4, -3.0, 0.5
        ws, ss = ws.astype(dtype), ss.astype(dtype)
        d0 = abs(ws - 2.0 * (cost * yGs * np.maximum(M, 0)).sum(0, keepdims=True)).astype(dtype)
        t = _solver._line_search_entries(ws, ss, d0, M, yGs, cost)
        ref = _solver._line_search_dense(xp, ws, ss, d0, M, yGs, cost)
        # the dispatcher takes the dense search here (most entries can be active), and the
        # one on the entries where few can (rows far inside the margin, short steps)
        assert_exact(_solver._line_search_terms(xp, ws, ss, d0, M, yGs, cost), ref, "dense")
        far = M - dtype(3.0) * (rng.random((n, P)) < 0.9)
        kept = (far > np.minimum(_solver._LINE_SEARCH_SPAN * yGs, 0)) & (cost > 0)
        assert kept.mean() <= _solver._LINE_SEARCH_SPARSE
        assert_exact(
            _solver._line_search_terms(xp, ws, ss, d0, far, yGs, cost),
            _solver._line_search_entries(ws, ss, d0, far, yGs, cost),
            "entries",
        )
        assert t.dtype == dtype and t.shape == (1, P)
        assert (ref[0, :8] > _solver._LINE_SEARCH_SPAN).all()  # these searches leave the span
        if dtype == np.float64:
            assert_close(t, ref, "step", rtol=1e-12, atol=0)
            continue

        # float32: the search on the entries sums in float64; the dense one sums in float32,
        # which near a kink moves its iterates by rounding (its answer for a column changes
        # with the other columns beside it), so compare with the dense search in float64
        wide = [np.asarray(a, np.float64) for a in (ws, ss, d0, M, yGs, cost)]
        assert_close(t, _solver._line_search_dense(xp, *wide), "float32 step", rtol=1e-4, atol=0)
        m, g, c, a, b = wide[3], wide[4], wide[5], wide[0], wide[1]

        def phi(t, m=m, g=g, c=c, a=a, b=b):
            t = np.asarray(t, np.float64)
            return (t * a + 0.5 * t * t * b + (c * np.maximum(m - t * g, 0) ** 2).sum(0))[0]

        # and it minimises phi at least as well as the float32 dense search
        scale = abs(phi(np.zeros((1, P)))) + abs(phi(ref))
        assert (phi(t) <= phi(ref) + 1e-6 * scale).all()


def test_nystrom_preconditioner_restricted_to_rows_is_the_same(rng):
    """restrict(rows) acts on a block K[rows, rows] as the whole preconditioner acts on
    columns whose active rows lie in ``rows``."""
    _, K, _, _ = _rbf_problem(rng, n=50)
    xp = get_backend("cpu")
    pre = _solver._NystromPreconditioner(xp, K)
    rows = np.sort(rng.choice(50, 35, replace=False))
    A = np.zeros((50, 3))
    A[rows] = rng.uniform(0.1, 5.0, size=(35, 3)) * (rng.random((35, 3)) < 0.7)
    R = rng.normal(size=(50, 3)) * (A > 0)
    full = pre.apply(pre.setup(2.0 * A), 2.0 * A, R)
    sub = pre.restrict(rows)
    part = sub.apply(sub.setup(2.0 * A[rows]), 2.0 * A[rows], R[rows])
    assert_close(part, full[rows], "on the rows", rtol=1e-10, atol=1e-12)
    assert sub.lam_max() == pre.lam_max() and sub.lam_min() == pre.lam_min()


def test_linear_solver_without_the_dense_band_matches_literal_minimiser(rng, monkeypatch):
    """dense_band=False (linear maps) sends the columns with more active rows than
    _EXACT_MAX_ACTIVE to CG; both routings reach the literal minimiser."""
    n, r = 80, 9
    G = rng.normal(size=(n, r)) / np.sqrt(r)
    Y = np.where(rng.random((n, 6)) < 0.3, 1.0, -1.0)
    cost = np.array([0.01, 0.3, 1.0, 5.0, 30.0, 100.0]) * rng.uniform(0.5, 2.0, size=(n, 1))
    cost[rng.random((n, 6)) < 0.2] = 0.0
    monkeypatch.setattr(_solver, "_EXACT_MAX_ACTIVE", 10)
    monkeypatch.setattr(_solver, "_EXACT_HARD_MAX", 60)
    xp = get_backend("cpu")
    ref = _reference_solve(G, Y, cost)
    for band in (True, False):
        W, _ = _solver.solve(xp, G, Y, cost, tol=1e-10, max_iter=200, dense_band=band)
        assert_close(W, ref, f"W (dense_band={band})", rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    X = rng.normal(size=(30, 5))
    assert not _solver.linear_map(xp, X, np.float64).dense_band  # n > d + 1
    assert not _solver.linear_map(xp, X[:4], np.float64).dense_band  # n <= d + 1
    assert _solver.rbf_map(xp, X, 0.5, np.float64).dense_band


def test_nystrom_preconditioner_is_the_woodbury_inverse(rng):
    """apply() is (D^{-1} + V_S diag(lam) V_S^T)^{-1} on each column's active rows, 0 elsewhere."""
    _, K, _, _ = _rbf_problem(rng, n=40)
    xp = get_backend("cpu")
    pre = _solver._NystromPreconditioner(xp, K)
    V = pre._eigs()
    lam = 1.0 / pre.inv_lam
    # the top eigenpairs of K, approximately (randomised subspace iteration)
    top = np.linalg.eigvalsh(K)[::-1][: lam.size]
    assert_close(lam[:3], top[:3], "top eigenvalues", rtol=1e-6, atol=0)
    A = rng.uniform(0.1, 5.0, size=(40, 3)) * (rng.random((40, 3)) < 0.7)
    Dg = 2.0 * A
    R = rng.normal(size=(40, 3)) * (A > 0)
    out = pre.apply(pre.setup(Dg), Dg, R)
    for p in range(3):
        S = np.flatnonzero(A[:, p] > 0)
        P = np.diag(1.0 / Dg[S, p]) + (V[S] * lam) @ V[S].T
        assert_close(out[S, p], np.linalg.solve(P, R[S, p]), f"column {p}", rtol=1e-8, atol=1e-10)
        rest = out[A[:, p] == 0, p]
        assert_exact(rest, np.zeros_like(rest), "inactive rows")


@pytest.mark.parametrize("warm_start", [False, True])
def test_rbf_sample_space_fit_equals_the_eigenbasis_fit(digits, warm_start):
    """SVCCV(kernel="rbf") on the kernel matrix and on its eigenbasis (the solver before):
    same C, same fold scores, decision values within 1e-3, cold and warm-started."""
    X0, y0, X1, y1, Xte, _ = _grow(digits)
    fits = []
    for sample_space in (True, False):
        model = SVCCV(kernel="rbf", warm_start=warm_start)
        model._RBF_SAMPLE_SPACE = sample_space
        if warm_start:
            model.fit(X0, y0)
        fits.append(model.fit(X1, y1))
        assert model.warm_started_ == warm_start
    new, old = fits
    assert new.C_ == old.C_
    assert_close(new.cv_scores_, old.cv_scores_, "cv scores", rtol=0, atol=0.01)
    assert_close(
        new.decision_function(Xte), old.decision_function(Xte), "decisions", rtol=0, atol=1e-3
    )
    assert_close(new.dual_coef_, old.dual_coef_, "dual_coef_", rtol=0, atol=1e-2)


def test_solver_problem_without_weight_is_zero(rng):
    xp = get_backend("cpu")
    G = rng.normal(size=(20, 4))
    Y = np.where(rng.random((20, 2)) < 0.5, 1.0, -1.0)
    cost = np.ones((20, 2))
    cost[:, 1] = 0.0
    W, n_iter = _solver.solve(xp, G, Y, cost, tol=1e-8, max_iter=50)
    assert_exact(W[:, 1], 0.0, "W of the weightless problem")
    assert n_iter[1] == 0


@pytest.mark.parametrize("n", [30, 90])  # fewer rows than features + 1, then more
def test_linear_map_is_an_exact_change_of_basis(rng, n):
    xp = get_backend("cpu")
    X = rng.normal(size=(n, 40))
    fmap = _solver.linear_map(xp, X, np.float64)
    F = np.hstack([X, np.ones((n, 1))])
    assert_close(fmap.G @ fmap.G.T, F @ F.T, "G G^T", rtol=1e-9, atol=1e-9)
    assert_close(F @ fmap.proj, fmap.G, "F proj", rtol=1e-9, atol=1e-9)


def test_rbf_map_reproduces_the_kernel(rng):
    xp = get_backend("cpu")
    X = rng.normal(size=(50, 5))
    fmap = _solver.rbf_map(xp, X, 0.3, np.float64)
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    K = np.exp(-0.3 * sq) + 1.0  # the literal kernel plus the intercept's constant
    assert_close(fmap.G @ fmap.G.T, K, "G G^T", rtol=1e-9, atol=1e-9)
    assert_close(K @ fmap.proj, fmap.G, "K proj", rtol=1e-7, atol=1e-7)


# --------------------------------------------------------------------------------------------
# against scikit-learn on digits


def _liblinear(C, **kw):
    return LinearSVC(C=C, dual=True, tol=1e-8, max_iter=200_000, **kw)


@pytest.mark.parametrize("C", [0.1, 10.0])
def test_linear_matches_liblinear_on_digits(digits, device, C):
    Xtr, Xte, ytr, yte = digits
    ours = SVC(C=C, device=device).fit(Xtr, ytr)
    ref = _liblinear(C).fit(Xtr, ytr)
    assert_close(
        ours.decision_function(Xte), ref.decision_function(Xte), "decision", rtol=0, atol=2e-3
    )
    assert_exact(ours.predict(Xte), ref.predict(Xte), "predictions")
    assert_close(ours.coef_, ref.coef_, "coef_", rtol=0, atol=5e-3)


def test_binary_matches_liblinear_and_proba_is_a_sigmoid(digits, device):
    Xtr, Xte, ytr, yte = digits
    pick_tr, pick_te = np.isin(ytr, [3, 8]), np.isin(yte, [3, 8])
    ours = SVC(C=1.0, device=device).fit(Xtr[pick_tr], ytr[pick_tr])
    ref = _liblinear(1.0).fit(Xtr[pick_tr], ytr[pick_tr])
    z = ours.decision_function(Xte[pick_te])
    assert z.shape == (pick_te.sum(),) and ours.coef_.shape == (1, Xtr.shape[1])
    assert_close(z, ref.decision_function(Xte[pick_te]), "decision", rtol=0, atol=2e-3)
    assert_exact(ours.predict(Xte[pick_te]), np.where(z > 0, 8, 3), "predict from the sign")
    P = ours.predict_proba(Xte[pick_te])
    s = 1.0 / (1.0 + np.exp(-z.astype(np.float64) / ours.temperature_))
    assert_close(P[:, 1], s, "P(8)", rtol=1e-12, atol=1e-12)


def test_class_weight_is_a_per_sample_cost(digits):
    """Each sample's C is scaled by its own class's weight, in every one-vs-rest problem."""
    Xtr, Xte, ytr, _ = digits
    weights = {k: w for k, w in zip(range(10), np.linspace(0.2, 3.0, 10), strict=True)}
    ours = SVC(C=1.0, class_weight=weights).fit(Xtr, ytr)
    ref = _liblinear(1.0).fit(Xtr, ytr, sample_weight=np.vectorize(weights.get)(ytr))
    assert_close(
        ours.decision_function(Xte), ref.decision_function(Xte), "decision", rtol=0, atol=2e-3
    )


def test_balanced_class_weight_is_the_count_formula(digits):
    Xtr, Xte, ytr, _ = digits
    keep = np.concatenate([np.flatnonzero(ytr == k)[: 10 + 8 * k] for k in range(10)])
    counts = np.bincount(ytr[keep])
    manual = {k: keep.size / (10 * counts[k]) for k in range(10)}
    a = SVC(class_weight="balanced").fit(Xtr[keep], ytr[keep])
    b = SVC(class_weight=manual).fit(Xtr[keep], ytr[keep])
    assert_close(
        a.decision_function(Xte), b.decision_function(Xte), "decision", rtol=1e-10, atol=1e-10
    )


def test_integer_sample_weight_is_repetition(digits, rng):
    Xtr, Xte, ytr, _ = digits
    sw = rng.integers(0, 4, size=ytr.size)
    weighted = SVC(kernel="rbf", cv=None, tol=1e-10).fit(Xtr, ytr, sample_weight=sw)
    repeated = SVC(kernel="rbf", cv=None, tol=1e-10).fit(np.repeat(Xtr, sw, 0), np.repeat(ytr, sw))
    assert weighted.gamma_ == pytest.approx(repeated.gamma_, rel=1e-12)
    assert_close(
        weighted.decision_function(Xte),
        repeated.decision_function(Xte),
        "decision",
        rtol=0,
        atol=1e-6,
    )
    assert_close(
        weighted.predict_proba(Xte), repeated.predict_proba(Xte), "proba", rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("C", [1.0, 10.0])
def test_rbf_accuracy_within_half_a_point_of_sklearn_svc_on_digits(digits, C):
    Xtr, Xte, ytr, yte = digits
    ours = SVC(kernel="rbf", C=C).fit(Xtr, ytr)
    ref = SkSVC(C=C).fit(Xtr, ytr)
    assert ours.gamma_ == pytest.approx(ref._gamma, rel=1e-12)
    diff = 100 * (ours.score(Xte, yte) - ref.score(Xte, yte))
    assert abs(diff) <= 0.5, f"accuracy differs by {diff:+.2f} points"


# --------------------------------------------------------------------------------------------
# cross-validation


def test_svccv_scores_are_the_per_fold_fits(digits, device):
    Xtr, _, ytr, _ = digits
    X, y = Xtr[:300], ytr[:300]
    cv = SVCCV(Cs=[0.05, 1.0, 20.0], tol=1e-9, device=device, random_state=3).fit(X, y)
    folds = stratified_folds(y, 5, random_state=3)
    for j, C in enumerate(cv.Cs_):
        for f in range(5):
            train, test = folds != f, folds == f
            fold_model = SVC(C=C, cv=None, tol=1e-9).fit(X[train], y[train])
            assert cv.cv_scores_[j, f] == pytest.approx(fold_model.score(X[test], y[test]))
    mean = cv.cv_scores_.mean(axis=1)
    assert cv.C_ == cv.Cs_[np.flatnonzero(mean == mean.max())].min()
    refit = SVC(C=cv.C_, cv=None, tol=1e-9).fit(X, y)
    assert_close(cv.coef_, refit.coef_, "coef_ of the refit", rtol=0, atol=1e-6)


def test_svccv_agrees_with_gridsearch_of_linearsvc(digits):
    Xtr, _, ytr, _ = digits
    X, y = Xtr[:400], ytr[:400]
    cv = SVCCV(Cs=[0.01, 0.1, 1.0, 10.0]).fit(X, y)
    folds = stratified_folds(y, 5, random_state=0)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)]
    grid = GridSearchCV(_liblinear(1.0), {"C": list(cv.Cs_)}, cv=splits).fit(X, y)
    sk_scores = np.stack([grid.cv_results_[f"split{f}_test_score"] for f in range(5)], axis=1)
    assert_close(cv.cv_scores_, sk_scores, "fold accuracies", rtol=0, atol=1e-12)
    assert cv.C_ == grid.best_params_["C"]


def test_stratified_folds_rules(rng):
    y = np.concatenate([np.repeat(np.arange(12), rng.integers(1, 9, size=12)), [40, 41]])
    rng.shuffle(y)
    folds = stratified_folds(y, 5, random_state=7)
    assert_exact(folds, stratified_folds(y, 5, random_state=7), "same seed, same folds")
    classes, counts = np.unique(y, return_counts=True)
    for k, c in zip(classes, counts, strict=True):
        f = folds[y == k]
        if c == 1:
            assert_exact(f, -1, f"single sample of class {k}")
            continue
        held = np.bincount(f, minlength=5)
        assert held.max() - held.min() <= 1, f"class {k} dealt unevenly: {held}"
        assert (c - held > 0).all(), f"class {k} has a fold without training samples"
    sizes = np.bincount(folds[folds >= 0])
    assert sizes.size == 5 and sizes.max() - sizes.min() <= 1


def test_stratified_folds_fewer_samples_than_folds():
    folds = stratified_folds([0, 0, 1, 2], 5)
    assert_exact(np.sort(folds[:2]), [0, 1], "2 folds from the 2 samples that can be held out")
    assert_exact(folds[2:], -1, "single samples stay in training")
    assert_exact(stratified_folds([0, 1, 2], 5), -1, "no fold can be made")


def test_svccv_single_sample_classes(digits):
    Xtr, _, ytr, _ = digits
    idx = np.concatenate([np.flatnonzero(ytr == k)[: 1 if k < 4 else 3] for k in range(10)])
    cv = SVCCV().fit(Xtr[idx], ytr[idx])
    assert cv.cv_scores_.shape == (5, 5)
    assert_exact(cv.predict(Xtr[idx][:4]), ytr[idx][:4], "singletons classified as trained")
    only = np.concatenate([np.flatnonzero(ytr == k)[:1] for k in range(10)])
    with pytest.warns(UserWarning, match="too few labeled samples"):
        lone = SVCCV().fit(Xtr[only], ytr[only])
    assert lone.C_ == 1.0 and lone.cv_scores_.shape == (5, 0)


def test_cross_validate_c_with_any_estimator(digits):
    Xtr, _, ytr, _ = digits
    X, y = Xtr[:300], ytr[:300]
    res = cross_validate_C(LogisticRegression(max_iter=2000), X, y, Cs=[0.1, 10.0])
    folds = stratified_folds(y, 5, random_state=0)
    for j, C in enumerate([0.1, 10.0]):
        for f in range(5):
            m = LogisticRegression(C=C, max_iter=2000).fit(X[folds != f], y[folds != f])
            assert res.cv_scores_[j, f] == pytest.approx(m.score(X[folds == f], y[folds == f]))
    assert res.estimator_.C == res.C_
    ours = cross_validate_C(SVC(class_weight="balanced"), X, y, Cs=[0.1, 10.0])
    assert isinstance(ours.estimator_, SVCCV) and ours.estimator_.class_weight == "balanced"
    assert ours.C_ in (0.1, 10.0)


def test_make_cs():
    assert_close(make_cs(5), [0.01, 0.1, 1.0, 10.0, 100.0], "default grid", rtol=1e-12)
    for bad in (0, [], [1.0, -2.0], [np.nan]):
        with pytest.raises(ValueError, match="Cs"):
            make_cs(bad)


# --------------------------------------------------------------------------------------------
# calibration and the fused top-2 path


def test_temperature_matches_a_grid_search(rng):
    n, k = 300, 6
    logits = rng.normal(size=(n, k)) * 2
    y = np.where(rng.random(n) < 0.7, logits.argmax(1), rng.integers(0, k, n))
    w = rng.uniform(0.5, 2.0, n)
    a = _calibration.fit_inverse_temperature(logits, y, w)
    eps = 1.0 / (w.sum() + 2)
    T = np.full((n, k), eps / (k - 1))
    T[np.arange(n), y] = 1 - eps

    def nll(s):
        S = s * logits
        log_p = S - S.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        return -(w[:, None] * T * log_p).sum()

    grid = np.exp(np.linspace(np.log(1e-2), np.log(1e3), 20001))
    best = grid[np.argmin([nll(s) for s in grid])]
    assert a == pytest.approx(best, rel=1e-3)
    assert nll(a) <= nll(best) + 1e-9


def test_predict_proba_is_the_tempered_softmax(digits, device):
    Xtr, Xte, ytr, _ = digits
    clf = SVC(C=1.0, device=device).fit(Xtr, ytr)
    P = clf.predict_proba(Xte)
    Z = clf.decision_function(Xte).astype(np.float64) / clf.temperature_
    E = np.exp(Z - Z.max(1, keepdims=True))
    assert_close(P, E / E.sum(1, keepdims=True), "proba", rtol=1e-10, atol=1e-12)
    assert_exact(clf.classes_[P.argmax(1)], clf.predict(Xte), "argmax of proba vs predict")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top2_margin_fused_equals_unfused(digits, device, dtype, tmp_path):
    Xtr, Xte, ytr, _ = digits
    clf = SVC(kernel="rbf", C=3.0, device=device).fit(Xtr.astype(dtype), ytr)
    pool = np.lib.format.open_memmap(tmp_path / "pool.npy", "w+", dtype, Xte.shape)
    pool[:] = Xte
    pool.flush()
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    ref_margin, ref_top = top2_margin(clf.predict_proba(Xte))
    for chunk_size in (1, 7, None):
        margin, top = clf.predict_top2_margin(pool, chunk_size=chunk_size)
        assert margin.dtype == dtype and top.dtype == np.int64
        assert_exact(top, ref_top, f"top class, chunk_size={chunk_size}")
        # one-row chunks take BLAS's matrix-vector path: the kernel values round differently
        atol = 2e-5 if dtype == np.float32 else 1e-12
        assert_close(margin, ref_margin, f"margin, chunk_size={chunk_size}", rtol=0, atol=atol)


def test_top2_margin_chunked_for_a_foreign_estimator(digits):
    Xtr, Xte, ytr, _ = digits
    clf = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
    margin, top = top2_margin_chunked(clf, Xte, chunk_size=33)
    ref_margin, ref_top = top2_margin(clf.predict_proba(Xte))
    assert_close(margin, ref_margin, "margin", rtol=0, atol=1e-14)
    assert_exact(top, ref_top, "top class")


def test_float32_input_is_computed_in_float32(digits):
    Xtr, Xte, ytr, _ = digits
    a = SVC(C=1.0).fit(Xtr.astype(np.float32), ytr)
    b = SVC(C=1.0).fit(Xtr, ytr)
    za = a.decision_function(Xte.astype(np.float32))
    assert za.dtype == np.float32 and a.coef_.dtype == np.float32
    assert_close(za, b.decision_function(Xte), "float32 vs float64", rtol=0, atol=1e-3)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_path_matches_numpy(digits):
    import torch

    Xtr, Xte, ytr, _ = digits
    for est in (SVC(C=2.0), SVCCV(Cs=3), SVC(kernel="rbf")):
        P_numpy = est.fit(Xtr, ytr).predict_proba(Xte)
        with _torch_one_thread():
            b = est.set_params(device=torch.device("cpu")).fit(Xtr, ytr)
            assert_close(b.predict_proba(Xte), P_numpy, f"{est!r} proba", rtol=0, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device visible to torch")
def test_cuda_matches_numpy(digits):
    Xtr, Xte, ytr, _ = digits
    X32, T32 = Xtr.astype(np.float32), Xte.astype(np.float32)
    for kernel in ("linear", "rbf"):
        a = SVCCV(kernel=kernel).fit(X32, ytr)
        b = SVCCV(kernel=kernel, device="cuda").fit(X32, ytr)
        assert a.C_ == b.C_
        assert_close(b.decision_function(T32), a.decision_function(T32), kernel, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------------
# scikit-learn's estimator checks (all of them apply and pass) and the error paths


_LIBSVM_XFAIL = {
    # scikit-learn expects the same of its own SVC (PER_ESTIMATOR_XFAIL_CHECKS)
    "check_sample_weight_equivalence_on_dense_data": (
        "libsvm: sample_weight is not equivalent to repeated samples to 1e-7"
    ),
    # CalibratedClassifierCV(SVC(class_weight=...)) alike: the Platt sigmoids are fitted on
    # the held-out class frequencies, so extreme class weights are calibrated away
    "check_class_weight_classifiers": "Platt calibration re-weighs classes by frequency",
}


@parametrize_with_checks(
    [
        SVC(),
        SVC(kernel="rbf"),
        SVCCV(Cs=3),
        SVCCV(Cs=3, kernel="rbf", loss="hinge", calibration="platt", tol=1e-3),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if getattr(estimator, "loss", None) == "hinge" and name in _LIBSVM_XFAIL:
        pytest.skip(_LIBSVM_XFAIL[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny check datasets: calibration folds
        check(estimator)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"kernel": "poly"}, "kernel='poly'"),
        ({"C": 0.0}, "C=0.0"),
        ({"C": "1"}, "C='1'"),
        ({"gamma": -1.0}, "gamma=-1.0"),
        ({"gamma": "wide"}, "gamma='wide'"),
        ({"class_weight": "auto"}, "class_weight='auto'"),
        ({"cv": 1}, "cv=1"),
        ({"tol": 0}, "tol=0"),
        ({"max_iter": 0}, "max_iter=0"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_bad_parameters_raise(params, match):
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match=match):
        SVC(**params).fit(X, y)


def test_bad_inputs_raise(digits):
    Xtr, Xte, ytr, _ = digits
    with pytest.raises(ValueError, match="2 classes"):
        SVC().fit(Xtr[:5], np.zeros(5))
    with pytest.raises(ValueError, match="zero"):
        SVC().fit(Xtr[:10], ytr[:10], sample_weight=np.zeros(10))
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        SVC().fit(Xtr[:10], ytr[:10], sample_weight=np.ones(9))
    with pytest.raises(ValueError, match="-1.0"):
        SVC().fit(Xtr[:10], ytr[:10], sample_weight=-np.ones(10))
    clf = SVC().fit(Xtr, ytr)
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(Xte[:, :10])
    with pytest.raises(ValueError, match="chunk_size=0"):
        clf.predict_top2_margin(Xte, chunk_size=0)
    bad = Xte.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.decision_function(bad, chunk_size=2)
    with pytest.raises(TypeError, match="device"):
        SVC(device=0).fit(Xtr, ytr)


def test_nan_in_a_pool_chunk_raises(digits, device):
    Xtr, Xte, ytr, _ = digits
    clf = SVC(device=device).fit(Xtr, ytr)
    bad = Xte.copy()
    bad[-1, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict_top2_margin(bad, chunk_size=50)


def test_convergence_warning_at_max_iter(digits):
    Xtr, _, ytr, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        SVC(C=100.0, max_iter=1).fit(Xtr, ytr)


def test_refit_with_the_other_kernel_replaces_the_model(digits):
    Xtr, Xte, ytr, _ = digits
    clf = SVC(kernel="rbf").fit(Xtr, ytr)
    clf.set_params(kernel="linear").fit(Xtr, ytr)
    assert not hasattr(clf, "dual_coef_") and not hasattr(clf, "X_fit_")
    assert_close(
        clf.decision_function(Xte),
        SVC().fit(Xtr, ytr).decision_function(Xte),
        "decision",
        rtol=0,
        atol=0,
    )


# --------------------------------------------------------------------------------------------
# warm start: the C path within a fit, and one fit to the next on a growing labeled set


def _grow(digits, n0=300, n1=360):
    Xtr, Xte, ytr, yte = digits
    return Xtr[:n0], ytr[:n0], Xtr[:n1], ytr[:n1], Xte, yte


def _splits_of(folds):
    return [
        (np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(folds.max() + 1)
    ]


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_warm_start_matches_a_cold_fit_on_the_same_folds(digits, device, kernel):
    X0, y0, X1, y1, Xte, _ = _grow(digits)
    warm = SVCCV(kernel=kernel, warm_start=True, device=device).fit(X0, y0)
    assert not warm.warm_started_
    warm.fit(X1, y1)
    assert warm.warm_started_
    # rows seen before keep their fold
    folds0 = SVCCV(kernel=kernel, device=device).fit(X0, y0).folds_
    assert_exact(warm.folds_[: y0.size], folds0, "folds of the rows seen before")
    cold = SVCCV(kernel=kernel, cv=_splits_of(warm.folds_), device=device).fit(X1, y1)
    assert warm.C_ == cold.C_
    assert_close(warm.cv_scores_, cold.cv_scores_, "cv scores", rtol=0, atol=0.01)
    assert_close(
        warm.decision_function(Xte), cold.decision_function(Xte), "decisions", rtol=0, atol=1e-3
    )
    assert np.mean(warm.predict(Xte) == cold.predict(Xte)) >= 0.995


def test_warm_start_grown_folds_stay_stratified(digits, rng):
    Xtr, _, ytr, _ = digits
    clf = SVCCV(Cs=[1.0], warm_start=True)
    order = rng.permutation(ytr.size)
    sizes = [40, 80, 200, 400]
    for n in sizes:
        prev = getattr(clf, "folds_", None)
        clf.fit(Xtr[order[:n]], ytr[order[:n]])
        folds, y = clf.folds_, ytr[order[:n]]
        if prev is not None and clf.warm_started_:
            assert_exact(folds[: prev.size], prev, "folds of earlier rows")
        n_splits = folds.max() + 1
        for k in np.unique(y):
            members = folds[y == k]
            if members.size < 2:
                assert (members == -1).all()
                continue
            held = np.bincount(members[members >= 0], minlength=n_splits)
            assert held.max() - held.min() <= 1, (n, k, held)
            # every fold keeps a training sample of the class
            assert ((members[None, :] != np.arange(n_splits)[:, None]).sum(axis=1) > 0).all()


def test_warm_start_survives_new_classes_and_reordering(digits, rng):
    Xtr, Xte, ytr, yte = digits
    first = np.flatnonzero(ytr < 5)[:150]
    later = np.concatenate([first, np.flatnonzero(ytr >= 5)[:150]])
    clf = SVCCV(warm_start=True).fit(Xtr[first], ytr[first])
    perm = rng.permutation(later.size)
    clf.fit(Xtr[later[perm]], ytr[later[perm]])
    assert clf.warm_started_
    assert clf.classes_.tolist() == list(range(10))
    cold = SVCCV(cv=_splits_of(clf.folds_)).fit(Xtr[later[perm]], ytr[later[perm]])
    assert clf.C_ == cold.C_
    assert np.mean(clf.predict(Xte) == cold.predict(Xte)) >= 0.995


def test_warm_start_starts_cold_when_the_setting_changes(digits):
    X0, y0, X1, y1, _, _ = _grow(digits)
    clf = SVCCV(warm_start=True).fit(X0, y0)
    clf.set_params(kernel="rbf").fit(X1, y1)
    assert not clf.warm_started_
    clf.set_params(Cs=[0.1, 1.0]).fit(X1, y1)
    assert not clf.warm_started_
    clf.fit(X1, y1)
    assert clf.warm_started_
    clf.fit(X1.astype(np.float32), y1)
    assert not clf.warm_started_
    # warm_start=False forgets; a clone starts with nothing
    clf.set_params(warm_start=False).fit(X1, y1)
    assert not clf.warm_started_ and not hasattr(clf, "_warm_state")
    from sklearn.base import clone

    assert not hasattr(clone(SVCCV(warm_start=True).fit(X0, y0)), "_warm_state")
    import pickle

    fitted = SVCCV(warm_start=True).fit(X0, y0)
    assert hasattr(fitted, "_warm_state")
    again = pickle.loads(pickle.dumps(fitted))
    assert not hasattr(again, "_warm_state")
    assert_exact(again.predict(X1), fitted.predict(X1), "predictions after pickling")


def test_c_path_equals_the_one_batch_solve(digits):
    Xtr, Xte, ytr, _ = digits
    path = SVCCV(kernel="rbf").fit(Xtr[:300], ytr[:300])
    batch = SVCCV(kernel="rbf")
    batch._C_PATH = False
    batch.fit(Xtr[:300], ytr[:300])
    assert path.C_ == batch.C_
    assert_close(path.cv_scores_, batch.cv_scores_, "cv scores", rtol=0, atol=0.01)
    assert_close(
        path.decision_function(Xte), batch.decision_function(Xte), "decisions", rtol=0, atol=1e-3
    )


def test_bad_cv_parameters_raise():
    X = np.arange(40.0).reshape(20, 2)
    y = np.arange(20) % 2
    for params, match in [
        ({"loss": "l1"}, "loss='l1'"),
        ({"calibration": "beta"}, "calibration='beta'"),
        ({"warm_start": "yes"}, "warm_start='yes'"),
        ({"loss": "hinge", "warm_start": True}, "warm_start=True needs"),
    ]:
        with pytest.raises(ValueError, match=match):
            SVCCV(**params).fit(X, y)
