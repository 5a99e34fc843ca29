"""The batched solver: many squared-hinge SVM problems on one feature matrix at once.

Why one module of this size: it is one solver (the batched Newton iteration, its line search,
CG and dense inner solves, both kernels' bases); its parts are only meaningful together.

Every problem ``p`` (a class of the one-vs-rest scheme, for one ``C``, on one CV fold) is

    min_w  0.5 ||w||^2 + sum_i cost[i, p] * max(0, 1 - y[i, p] * g_i . w)^2

over the rows ``g_i`` of one shared matrix ``G`` (n_samples, rank); ``cost[i, p]`` is
``C * sample_weight * class_weight`` and 0 for the rows a fold holds out, so the folds share
``G`` and every problem's held-out decision values come out of the same products.

``G`` is the training set in the eigenbasis of its kernel matrix (:func:`linear_map`,
:func:`rbf_map`): ``G G^T`` is the kernel matrix ``K + 1`` (the ``+ 1`` is the intercept,
a constant feature as in liblinear), and its columns are uncorrelated. The problems are solved
together by Newton's method for the squared hinge (Keerthi & DeCoste, JMLR 2005): each
iteration takes, per column, either the exact Newton step in sample space (few active rows:
large C) or preconditioned conjugate gradients with the Hessian's diagonal (most rows active:
the Hessian is then nearly diagonal in the eigenbasis), then an exact line search on the
piecewise-quadratic objective. The work is products of ``G`` with (rank, n_problems) blocks, and
problems that have converged leave the block.

The RBF kernel is solved in sample space on ``K + 1`` itself (:func:`solve_dual`, no
eigendecomposition). There the folds' problems are solved on their own training rows'
block of ``K`` (a held-out row never enters a fold's problem), and a column with many active
rows takes CG with a Nystrom preconditioner unless the system left after the preconditioner
is ill-conditioned (large ``C``), where the dense solve is faster. Near the solution the line
search on the host only visits the entries that can cross the margin.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from alamp_fast.svm._backend import NumpyBackend

# eigenvalues below this fraction of the largest are dropped from the kernel's eigenbasis:
# they are rounding noise of the float64 kernel matrix (exact duplicates give zeros)
_EIG_RTOL = 1e-10
# conjugate gradients stop at this fraction of the gradient's norm (liblinear's TRON uses 0.1
# too); the line search makes an inexact direction safe
_CG_RTOL = 0.1
_CG_MAX_ITER = 50
# a column takes the exact Newton step in sample space when it has at most _EXACT_MAX_ACTIVE
# active rows, or at most _EXACT_FRACTION of its rows and _EXACT_HARD_MAX: CG needs many
# iterations there (RBF at 2,020 rows: 122 s with the first rule alone, 35 s with both), while
# the dense solve grows as the cube of the active rows. The second rule (the "band") is the RBF
# eigenbasis's: in the linear kernel's eigenbasis (rank d + 1) CG is cheaper there (3,000
# Caltech rows, 5 C x 5 folds: a warm-started fit 9.4 instead of 12.4 CPU-seconds, a cold
# one 29 instead of 34), so linear maps turn it off (``FeatureMap.dense_band``)
_EXACT_MAX_ACTIVE = 384
_EXACT_FRACTION = 0.5
_EXACT_HARD_MAX = 768
# the kernel matrix G G^T is kept (for those steps) up to this many training rows
_KERNEL_MAX_N = 16384
# elements per stacked batch of the exact steps' dense systems (64 MB in float32)
_EXACT_CHUNK_ELEMS = 1 << 24
_LINE_SEARCH_ITER = 8
_STALL_ITER = 3


@dataclass
class FeatureMap:
    """Training rows in the kernel eigenbasis and the map back to the model's coefficients.

    ``G`` is (n_samples, rank) in the compute dtype. For the linear kernel ``proj`` is
    (n_features + 1, rank) and ``proj @ W`` is ``[coef; intercept]``; for the RBF kernel it
    is (n_samples, rank) and ``proj @ W`` is the dual coefficients of the training rows.
    """

    G: object
    proj: object
    # whether columns with at most half their rows active (and at most _EXACT_HARD_MAX) take
    # the dense step (:func:`_newton_direction`)
    dense_band: bool = True

    @property
    def rank(self) -> int:
        return int(self.G.shape[1])

    @property
    def dtype(self):
        return self.G.dtype

    def decision(self, W):
        """Decision values of the training rows, ``G @ W``."""
        return self.G @ W

    def coef(self, W):
        """``[coef; intercept]`` (linear) or dual coefficients (RBF) of the solution ``W``."""
        return self.proj @ W


@dataclass
class KernelMap:
    """Training rows as their kernel matrix ``K + 1`` (the ``+ 1`` is the intercept).

    ``Kpad`` is (n + 1, n + 1) in the compute dtype: ``Kpad[:n, :n] = K + 1`` and a last zero
    row and column where the active-set systems point their padding. A solution ``W`` is
    (n, P) sample-space coefficients: the primal ``w = G^T W`` for any ``G`` with
    ``G G^T = K + 1`` (:func:`solve_dual`), so ``W`` is the model's dual coefficients and no
    eigendecomposition is needed.
    """

    Kpad: object
    precond: object = None

    def preconditioner(self, xp):
        """The :class:`_NystromPreconditioner` of ``K``, made once per map (all folds, ``C``
        and the refit share it)."""
        if self.precond is None:
            self.precond = _NystromPreconditioner(xp, self.K)
        return self.precond

    @property
    def n(self) -> int:
        return int(self.Kpad.shape[0]) - 1

    @property
    def K(self):
        return self.Kpad[: self.n, : self.n]

    @property
    def rank(self) -> int:
        return self.n

    @property
    def dtype(self):
        return self.Kpad.dtype

    def decision(self, W):
        return self.K @ W

    def coef(self, W):
        return W


def linear_map(xp, X, dtype) -> FeatureMap:
    """Eigenbasis of ``[X, 1]``: from its (d+1)^2 covariance, or its n^2 Gram when n <= d."""
    n, d = X.shape
    f64 = xp.float_dtype(np.float64)
    F = xp.concat([xp.astype(X, f64), xp.ones((n, 1), f64)], 1)
    if n > d + 1:
        lam, V = xp.eigh(F.T @ F)
        keep = _keep(xp, lam)
        V = xp.take_cols(V, keep)
        return FeatureMap(G=xp.astype(F @ V, dtype), proj=xp.astype(V, dtype), dense_band=False)
    lam, U = xp.eigh(F @ F.T)
    keep = _keep(xp, lam)
    U, root = xp.take_cols(U, keep), xp.sqrt(lam[xp.index(keep)])
    G, proj = xp.astype(U * root, dtype), xp.astype(F.T @ (U / root), dtype)
    return FeatureMap(G=G, proj=proj, dense_band=False)


def rbf_map(xp, X, gamma: float, dtype) -> FeatureMap:
    """Eigenbasis of the RBF kernel matrix plus 1 (the intercept), in float64."""
    X64 = xp.astype(X, xp.float_dtype(np.float64))
    lam, U = xp.eigh(rbf_kernel(xp, X64, X64, gamma) + 1.0)
    keep = _keep(xp, lam)
    U, root = xp.take_cols(U, keep), xp.sqrt(lam[xp.index(keep)])
    return FeatureMap(G=xp.astype(U * root, dtype), proj=xp.astype(U / root, dtype))


def rbf_kernel_map(xp, X, gamma: float, dtype) -> KernelMap:
    """The RBF kernel matrix plus 1 of the training rows (distances in float64)."""
    n = X.shape[0]
    X64 = xp.astype(X, xp.float_dtype(np.float64))
    Kpad = xp.zeros((n + 1, n + 1), dtype)
    Kpad[:n, :n] = xp.astype(rbf_kernel(xp, X64, X64, gamma) + 1.0, dtype)
    return KernelMap(Kpad=Kpad)


def _keep(xp, lam) -> np.ndarray:
    """Indices of the eigenvalues to keep, largest first."""
    lam_host = xp.to_numpy(lam)
    top = float(lam_host.max()) if lam_host.size else 0.0
    keep = np.flatnonzero(lam_host > top * _EIG_RTOL)[::-1].copy()
    if keep.size == 0:  # all-zero kernel cannot happen with the +1 intercept; be explicit
        raise ValueError("the kernel matrix of the training set is zero")
    return keep


def rbf_kernel(xp, A, B, gamma: float):
    """``exp(-gamma ||a - b||^2)`` for all row pairs, via one matrix product."""
    sq = xp.sum(A * A, 1, keepdims=True) + xp.sum(B * B, 1, keepdims=True).T - 2.0 * (A @ B.T)
    # rounding can leave tiny negative squared distances; clamp before the exponential
    return xp.exp(xp.maximum(sq, 0.0) * (-gamma))


def solve(xp, G, Y, cost, W0=None, *, tol: float, max_iter: int, dense_band: bool = True):
    """Solve all problems (columns of ``Y`` and ``cost``) by batched Newton iterations.

    Parameters
    ----------
    xp : backend
    G : (n, r) array
    Y : (n, P) array of +-1
    cost : (n, P) array, >= 0
    W0 : (r, P) array, optional warm start
    tol : float
        A problem stops when its gradient norm is below ``tol * |g0| / max(1, max cost)``,
        ``g0`` its gradient at ``w = 0`` (``|g0|`` grows with ``C``; the division keeps the
        accuracy of the decision values from degrading at large ``C``), or when rounding
        stops its progress (no decision value moves, or the objective is flat).
    max_iter : int
        Newton iterations per problem.
    dense_band : bool
        Whether the columns with more than ``_EXACT_MAX_ACTIVE`` active rows, but at most half
        their rows and ``_EXACT_HARD_MAX``, take the dense step (:func:`_newton_direction`).

    Returns
    -------
    W : (r, P) array
    n_iter : (P,) int ndarray, Newton iterations each problem took
    """
    n, r = G.shape
    P = Y.shape[1]
    dtype = G.dtype
    G2T = (G * G).T
    # the kernel matrix G G^T, for the exact Newton steps of columns with few active rows
    K = None
    if n <= _KERNEL_MAX_N:
        K = xp.zeros((n + 1, n + 1), dtype)
        K[:n, :n] = G @ G.T
    W_out = xp.zeros((r, P), dtype) if W0 is None else W0 + 0.0
    n_iter = np.zeros(P, dtype=np.int64)
    # gradient norm at w = 0, where every sample is a margin violator: -2 G^T (cost * y)
    g0 = _col_norm(xp, 2.0 * (G.T @ (cost * Y)))
    stop = tol * g0 / np.maximum(1.0, xp.to_numpy(xp.amax(cost, 0)).astype(np.float64))
    live = np.flatnonzero(g0 > 0)  # a problem with no weighted sample is solved by w = 0
    W, Yl, Cl = (xp.take_cols(a, live) for a in (W_out, Y, cost))
    stop = stop[live]
    n_rows = xp.to_numpy(xp.sum(Cl > 0, 0)).astype(np.int64)  # rows each problem trains on
    # a column also stops when rounding blocks progress: no decision value moves, or its
    # objective has not decreased beyond rounding for _STALL_ITER iterations in a row. In
    # float32 at C = 100 the Hessian's condition number (~1e4) times the rounding of w puts a
    # floor under the gradient norm, though the decision values are then accurate to ~1e-3
    eps = float(np.finfo(xp.to_numpy(G[:1, :1]).dtype).eps)
    tiny_move = np.zeros(live.size, dtype=bool)
    prev_obj = np.full(live.size, np.inf)
    n_flat = np.zeros(live.size, dtype=np.int64)
    Z = G @ W
    for _ in range(max_iter):
        if live.size == 0:
            break
        M = 1.0 - Yl * Z  # margin violation per sample
        A = Cl * (M > 0)  # cost on the active rows: the generalised Hessian's weights
        grad = W - 2.0 * (G.T @ (A * M * Yl))
        gnorm = _col_norm(xp, grad)
        obj = xp.to_numpy(0.5 * xp.sum(W * W, 0) + xp.sum(A * M * M, 0)).astype(np.float64)
        n_flat = np.where(prev_obj - obj <= 64 * eps * np.abs(obj), n_flat + 1, 0)
        prev_obj = obj
        converged = gnorm <= stop
        done = converged | tiny_move | (n_flat >= _STALL_ITER)
        if done.any():
            idx = np.flatnonzero(~done)
            _put_cols(xp, W_out, live[done], xp.take_cols(W, np.flatnonzero(done)))
            live, stop, gnorm, prev_obj, n_flat, n_rows = (
                a[idx] for a in (live, stop, gnorm, prev_obj, n_flat, n_rows)
            )
            if live.size == 0:
                break
            W, Z, M, A, grad, Yl, Cl = (xp.take_cols(a, idx) for a in (W, Z, M, A, grad, Yl, Cl))
        n_iter[live] += 1
        step, Gstep = _newton_direction(xp, G, G2T, K, A, grad, gnorm, n_rows, dense_band)
        t = _line_search(xp, W, grad, step, M, Yl * Gstep, Cl)
        W = W + t * step
        move = t * Gstep
        Z = Z + move
        tiny_move = _col_absmax(xp, move) <= 16 * eps * np.maximum(1.0, _col_absmax(xp, Z))
    if live.size:
        _put_cols(xp, W_out, live, W)
        warnings.warn(
            f"the SVM solver stopped at max_iter={max_iter} Newton iterations with "
            f"{live.size} of {P} problems above tol={tol}; raise max_iter or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return W_out, n_iter


def _newton_direction(xp, G, G2T, K, A, grad, gnorm, n_rows, dense_band=True):
    """Newton step and ``G @ step`` of every column, by one of two routes.

    Columns with few active rows (large ``C``: the support vectors) take the exact step in
    sample space, one small dense solve each; the rest take preconditioned CG, which
    converges in a few iterations when most rows are active, because the Hessian is then
    nearly diagonal in the eigenbasis.
    """
    n_active = xp.to_numpy(xp.sum(A > 0, 0)).astype(np.int64)
    exact = (n_active <= _EXACT_MAX_ACTIVE) | (
        dense_band & (n_active <= _EXACT_FRACTION * n_rows) & (n_active <= _EXACT_HARD_MAX)
    )
    if K is None:
        exact[:] = False
    if exact.all():
        return _woodbury_step(xp, G, K, A, grad, n_active)
    step = xp.zeros(grad.shape, grad.dtype)
    Gstep = xp.zeros(A.shape, A.dtype)
    if exact.any():
        cols = np.flatnonzero(exact)
        s_e, Gs_e = _woodbury_step(
            xp, G, K, xp.take_cols(A, cols), xp.take_cols(grad, cols), n_active[cols]
        )
        _put_cols(xp, step, cols, s_e)
        _put_cols(xp, Gstep, cols, Gs_e)
    cols = np.flatnonzero(~exact)
    A_c = xp.take_cols(A, cols)
    diag = 1.0 + 2.0 * (G2T @ A_c)
    s_c, Gs_c = _pcg(xp, G, A_c, xp.take_cols(grad, cols), diag, _CG_RTOL * gnorm[cols])
    _put_cols(xp, step, cols, s_c)
    _put_cols(xp, Gstep, cols, Gs_c)
    return step, Gstep


def _woodbury_step(xp, G, K, A, grad, n_active: np.ndarray):
    """Exact Newton step ``-H^{-1} grad`` of columns with few active rows, and ``G @ step``.

    With ``S`` the active rows and ``D = 2 cost_S``, ``H = I + G_S^T D G_S`` and, by the
    Woodbury identity, ``H^{-1} grad = grad - G_S^T (D^{-1} + K_SS)^{-1} G_S grad``: one
    dense system of the size of the active set per column (padded to a multiple of 32 rows and
    stacked by size for the GPU). The systems are solved for the step (not for the new
    ``w``), so their rounding error shrinks with the gradient and float32 suffices although
    their condition number reaches 1e5 at C = 100. ``K`` is ``G G^T`` with one extra zero
    row and column, where padding points.
    """
    u = G @ grad  # G grad: the right-hand sides of the systems
    B = _active_systems(xp, G.dtype, K, A, u, n_active)
    GtB = G.T @ B
    return GtB - grad, G @ GtB - u


def _active_systems(xp, dtype, K, A, u, n_active: np.ndarray):
    """``B`` (n, q): on each column's active rows ``S``, ``(D^{-1} + K_SS)^{-1} u_S`` with
    ``D = 2 A_S``; zero elsewhere. ``K`` has the extra zero row and column of the padding."""
    n, q = A.shape
    mask = xp.to_numpy(A > 0)
    _, row_of = np.nonzero(mask.T)  # active rows, grouped by column
    B = xp.zeros((n, q), dtype)
    starts = np.concatenate([[0], np.cumsum(n_active)])
    # pad each system to a multiple of 32 rows: stacking needs one size, and rounding up to
    # powers of two instead would cost up to 8x the flops of the solve
    size = 32 * np.maximum(1, -(-n_active // 32))
    for s in np.unique(size[n_active > 0]):
        cols = np.flatnonzero((size == s) & (n_active > 0))
        per_chunk = max(1, _EXACT_CHUNK_ELEMS // (s * s))
        for lo in range(0, cols.size, per_chunk):
            chunk = cols[lo : lo + per_chunk]
            pos = np.arange(s)[None, :]
            valid = pos < n_active[chunk][:, None]
            at = np.minimum(starts[chunk][:, None] + pos, row_of.size - 1)
            rows = np.where(valid, row_of[at], n)  # (chunk, s), padding -> the zero row n
            colmat = np.broadcast_to(chunk[:, None], rows.shape)
            rows_t, cols_t, valid_t = (
                xp.index(a) for a in (np.minimum(rows, n - 1), colmat, valid)
            )
            cost = A[rows_t, cols_t]
            # padded slots get 1 on the diagonal and 0 on the right: their solution is 0
            diag = xp.where(valid_t, 0.5 / xp.where(valid_t, cost, 1.0), 1.0)
            rhs = xp.where(valid_t, u[rows_t, cols_t], 0.0)
            v = xp.solve_active(K, rows, valid, diag, rhs)
            B[rows_t[valid_t], cols_t[valid_t]] = v[valid_t]
    return B


def _col_absmax(xp, a) -> np.ndarray:
    return xp.to_numpy(xp.amax(abs(a), 0)).astype(np.float64)


def _col_norm(xp, a) -> np.ndarray:
    return np.sqrt(xp.to_numpy(xp.sum(a * a, 0)).astype(np.float64))


def _put_cols(xp, dst, cols: np.ndarray, src) -> None:
    if xp.name == "numpy":  # half the time of dst[:, cols] = src on (rows, columns) blocks
        np.put_along_axis(dst, np.broadcast_to(cols[None, :], src.shape), src, axis=1)
    else:
        dst[:, xp.index(cols)] = src


def _pcg(xp, G, A, grad, diag, stop: np.ndarray):
    """Preconditioned CG on ``(I + 2 G^T diag(A) G) step = -grad`` for every column.

    Column ``j`` stops when its residual norm is below ``stop[j]``. Returns the steps and
    ``G @ step``, accumulated from the products CG computes anyway, so the line search needs
    no extra product with ``G``.
    """
    step_out = xp.zeros(grad.shape, grad.dtype)
    Gstep_out = xp.zeros(A.shape, A.dtype)
    res = -grad
    z = res / diag
    p = z
    rz = xp.sum(res * z, 0, keepdims=True)
    step = xp.zeros(grad.shape, grad.dtype)
    Gstep = xp.zeros(A.shape, A.dtype)
    live = np.arange(grad.shape[1])
    for _ in range(_CG_MAX_ITER):
        Gp = G @ p
        Hp = p + 2.0 * (G.T @ (A * Gp))
        pHp = xp.sum(p * Hp, 0, keepdims=True)
        # a column whose residual is exactly zero has p = 0; keep it at rest
        alpha = xp.where(pHp > 0, rz / xp.where(pHp > 0, pHp, 1.0), 0.0)
        step = step + alpha * p
        Gstep = Gstep + alpha * Gp
        res = res - alpha * Hp
        done = _col_norm(xp, res) <= stop
        if done.any():
            # columns leave the block as they converge: the hard (large-C) problems need
            # many more iterations than the rest (a Newton step at 3,200 x 2,525: 11 s -> 1.6 s)
            cols = np.flatnonzero(done)
            _put_cols(xp, step_out, live[cols], xp.take_cols(step, cols))
            _put_cols(xp, Gstep_out, live[cols], xp.take_cols(Gstep, cols))
            idx = np.flatnonzero(~done)
            live, stop = live[idx], stop[idx]
            if live.size == 0:
                return step_out, Gstep_out
            step, Gstep, res, p, rz, A, diag = (
                xp.take_cols(a, idx) for a in (step, Gstep, res, p, rz, A, diag)
            )
        z = res / diag
        rz_new = xp.sum(res * z, 0, keepdims=True)
        beta = xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0)
        rz = rz_new
        p = z + beta * p
    _put_cols(xp, step_out, live, step)
    _put_cols(xp, Gstep_out, live, Gstep)
    return step_out, Gstep_out


def _line_search(xp, W, grad, step, M, yGs, cost):
    """Exact minimiser ``t`` of the objective along ``step``, per column.

    ``phi(t) = 0.5 ||W + t step||^2 + sum cost * max(0, M - t yGs)^2`` is convex and
    piecewise quadratic; Newton steps on ``phi'`` are kept inside a bracket that shrinks
    with every evaluation (bisection when Newton leaves it).
    """
    ws = xp.sum(W * step, 0, keepdims=True)
    ss = xp.sum(step * step, 0, keepdims=True)
    # phi'(0) = grad . step < 0: the scale against which phi'(t) counts as zero
    d0 = abs(xp.sum(grad * step, 0, keepdims=True))
    return _line_search_terms(xp, ws, ss, d0, M, yGs, cost)


def _line_search_terms(xp, ws, ss, d0, M, yGs, cost):
    """:func:`_line_search` from the products ``W . step``, ``step . step`` and
    ``|grad . step|`` (each (1, P)), however they were computed.

    On the host, when few entries can be active for some ``t`` in ``[0, _LINE_SEARCH_SPAN]``
    (near the solution the steps are short and few rows cross the margin), the search runs
    on those entries only (:func:`_line_search_entries`).
    """
    if xp.name == "numpy":
        flat = _entries_in_span(M, yGs, cost)
        if flat.size <= _LINE_SEARCH_SPARSE * M.size:
            return _line_search_entries(ws, ss, d0, M, yGs, cost, flat)
    return _line_search_dense(xp, ws, ss, d0, M, yGs, cost)


# the host line search keeps the entries active somewhere in t = 0 .. this span
_LINE_SEARCH_SPAN = 2.0
# ... when they are at most this fraction of all (far from the solution, with long steps,
# most are, and the dense passes are faster: a cold fit's first iterations)
_LINE_SEARCH_SPARSE = 0.25


def _entries_in_span(M, yGs, cost) -> np.ndarray:
    """Flat indices of the entries that can be active for some ``t`` in ``[0, span]``."""
    return np.flatnonzero((M > np.minimum(_LINE_SEARCH_SPAN * yGs, 0.0)) & (cost > 0))


def _line_search_entries(ws, ss, d0, M, yGs, cost, flat=None):
    """:func:`_line_search_dense` (numpy) on the entries that matter for ``t <= span``.

    ``phi'(t)`` and ``phi''(t)`` sum over the entries with ``M - t yGs > 0`` and positive cost.
    An entry with ``M <= 0`` and ``M <= span * yGs`` is inactive for every ``t`` in
    ``[0, span]`` (``M - t yGs`` is at most ``max(M, M - span yGs)`` there), so for those
    ``t`` the sums over the other entries are the same numbers: they are gathered once, and
    every iteration of the search is a pass over them instead of over ``(n, P)``. The
    iterations, bracket and stopping rule are those of :func:`_line_search_dense`; a column
    whose search goes past ``span`` is searched again by it. The sums are float64 whatever
    the inputs' dtype (float32 sums moved a search's iterates near a kink by rounding).
    """
    n, P = M.shape
    dtype = ws.dtype
    if flat is None:
        flat = _entries_in_span(M, yGs, cost)
    col = flat % P
    m, g = M.ravel()[flat], yGs.ravel()[flat]
    cg = cost.ravel()[flat] * g
    cg2 = cg * g
    ws, ss, d0 = (np.asarray(a, np.float64).ravel() for a in (ws, ss, d0))
    t = np.ones(P)
    lo = np.zeros(P)
    hi = np.full(P, np.inf)
    beyond = np.zeros(P, dtype=bool)
    for _ in range(_LINE_SEARCH_ITER):
        beyond |= t > _LINE_SEARCH_SPAN
        R = m - t[col] * g
        active = R > 0
        d1 = ws + t * ss - 2.0 * np.bincount(col, cg * np.maximum(R, 0.0), P)
        d2 = ss + 2.0 * np.bincount(col, cg2 * active, P)
        t, lo, hi, settled = _safeguarded_newton(np.where, t, lo, hi, d1, d2, d0)
        if settled.all():
            break
    redo = np.flatnonzero(beyond)
    if redo.size:  # on all their rows, summed in float64 as above
        t[redo] = _line_search_dense(
            NumpyBackend(),
            *(a[None, redo] for a in (ws, ss, d0)),
            *(np.asarray(a[:, redo], np.float64) for a in (M, yGs, cost)),
        )[0]
    return t.astype(dtype)[None, :]


def _line_search_dense(xp, ws, ss, d0, M, yGs, cost):
    """:func:`_line_search_terms` on every entry of ``(n, P)``."""
    c_yGs = cost * yGs
    c_yGs2 = c_yGs * yGs
    t = xp.ones(ws.shape, ws.dtype)
    lo = xp.zeros(ws.shape, ws.dtype)
    hi = xp.zeros(ws.shape, ws.dtype) + np.inf
    for _ in range(_LINE_SEARCH_ITER):
        R = M - t * yGs
        active = R > 0
        d1 = ws + t * ss - 2.0 * xp.sum(c_yGs * xp.relu_(R), 0, keepdims=True)
        d2 = ss + 2.0 * xp.sum(c_yGs2 * active, 0, keepdims=True)
        t, lo, hi, settled = _safeguarded_newton(xp.where, t, lo, hi, d1, d2, d0)
        if bool(xp.to_numpy(settled).all()):
            break
    return t


def _safeguarded_newton(where, t, lo, hi, d1, d2, d0):
    """One step of the line search on the derivative ``d1`` (curvature ``d2``): the bracket
    ``[lo, hi]`` of the root narrowed by the sign of ``d1``, then Newton's step where it stays
    inside, else bisection (doubling while no upper end is known). Settled entries (derivative
    ~0 relative to ``d0``, or no curvature at all) keep their ``t``. ``where``: the array
    library's ``where``. Returns ``(t, lo, hi, settled)``."""
    lo = where(d1 < 0, t, lo)
    hi = where(d1 > 0, t, hi)
    newton = t - d1 / where(d2 > 0, d2, 1.0)
    inside = (newton > lo) & (newton < hi)
    mid = where(hi < np.inf, 0.5 * (lo + hi), 2.0 * t)
    settled = (abs(d1) <= 1e-6 * d0) | (d2 <= 0)
    return where(settled, t, where(inside, newton, mid)), lo, hi, settled


# ---------------------------------------------------------------- sample space (RBF)
_DUAL_CG_MAX_ITER = 100
# flops of the dense active-set systems that large-C columns may take instead of CG, per
# Newton iteration (1e11: a few seconds on one core, less than the CG products it replaces)
_DUAL_EXACT_FLOPS = 1e11
# ... and only the columns whose preconditioned CG system has at least this condition number
_DUAL_SLOW_CG_COND = 1000.0


def solve_dual(xp, Kpad, Y, cost, B0=None, *, tol: float, max_iter: int, precond=None):
    """:func:`solve` in sample space: the same problems and iterations, without a factor of K.

    The primal ``w = G^T b`` of any ``G`` with ``G G^T = K`` (``K = Kpad[:n, :n]``, the kernel
    matrix plus 1) is carried as its sample-space coefficients ``b``: the decision values are
    ``K b``, every inner product of two primal vectors ``G^T a`` and ``G^T b`` is ``a . K b``,
    and the gradient is ``G^T e`` with ``e = b - 2 A M Y``. A Newton iteration then costs one
    product ``K E`` (the gradient's ``G grad``, from which its norm follows) and one ``K D`` of
    the direction, where :func:`solve` needs four products with ``G``; and no eigenbasis of
    ``K`` is computed (at 3,000 rows its ``eigh`` took 17 s on one core). The directions are
    those of :func:`solve`: the exact Newton step on the active rows (Chapelle 2007; the
    Woodbury form of :func:`_woodbury_step`), by dense solves where few rows are active and by
    conjugate gradients on the same system where many are.

    A problem only touches the rows where its cost is positive or its start is nonzero (a CV
    fold's problems never the rows it holds out: their coefficients stay zero and their cost
    is zero), so the columns are solved in groups of equal row sets, each on its own block
    ``K[rows, rows]`` (:func:`_row_sets`): the same iterations, with every kernel product and
    every per-row pass over ``(rows, columns)`` instead of ``(n, columns)`` (5 folds: 0.64 of
    the product flops, 0.8 of the rest). The decision values of the other rows (held-out
    rows) are the caller's ``K @ B``.

    Parameters and stopping rules are those of :func:`solve`; ``B0`` (n, P) is a warm start in
    sample space; ``precond`` a :class:`_NystromPreconditioner` of ``K`` to reuse.

    Returns
    -------
    B : (n, P) array, the dual coefficients (decision values ``K @ B``)
    n_iter : (P,) int ndarray
    """
    n = Kpad.shape[0] - 1
    P = Y.shape[1]
    K = Kpad[:n, :n]
    B_out = xp.zeros((n, P), Kpad.dtype) if B0 is None else B0 + 0.0
    n_iter = np.zeros(P, dtype=np.int64)
    if precond is None:
        precond = _NystromPreconditioner(xp, K)
    unfinished = 0
    for rows, cols in _row_sets(xp, cost, B0):
        budget = _DUAL_EXACT_FLOPS * cols.size / P
        if rows is None:  # every row: the matrices as they are
            sub = (xp.take_cols(a, cols) for a in (Y, cost))
            B0_g = None if B0 is None else xp.take_cols(B0, cols)
            Kp, pre = Kpad, precond
        else:
            r = xp.index(rows)
            sub = (xp.take_cols(a, cols)[r] for a in (Y, cost))
            B0_g = None if B0 is None else xp.take_cols(B0, cols)[r]
            Kp = xp.zeros((rows.size + 1, rows.size + 1), Kpad.dtype)
            Kp[: rows.size, : rows.size] = xp.take_cols(K[r], rows)
            pre = precond.restrict(rows)
        B_g, n_iter_g, left = _solve_dual_rows(
            xp, Kp, *sub, B0_g, tol=tol, max_iter=max_iter, precond=pre, exact_flops=budget
        )
        if rows is None:
            _put_cols(xp, B_out, cols, B_g)
        else:
            B_out[xp.index(rows)[:, None], xp.index(cols)[None, :]] = B_g
        n_iter[cols] = n_iter_g
        unfinished += left
    if unfinished:
        warnings.warn(
            f"the SVM solver stopped at max_iter={max_iter} Newton iterations with "
            f"{unfinished} of {P} problems above tol={tol}; raise max_iter or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return B_out, n_iter


# row sets restricted to fewer than this fraction of the rows get their own block of K
_ROW_SET_FRACTION = 0.95
# more distinct row sets than this (e.g. leave-one-out folds): every column on all rows
_MAX_ROW_SETS = 32


def _row_sets(xp, cost, B0):
    """The columns grouped by the rows their problems touch: ``[(rows, cols), ...]``.

    A column touches the rows of positive cost and those where its start ``B0`` is nonzero;
    elsewhere its coefficients stay zero and its objective does not look. ``rows`` is None
    for the group solved on every row (the columns whose row set is not much smaller, and all
    of them when there are too many distinct sets); columns that touch no row are left out
    (their solution is zero).
    """
    used = xp.to_numpy(cost > 0)
    if B0 is not None:
        used = used | xp.to_numpy(B0 != 0)
    n, P = used.shape
    _, first, group = np.unique(
        np.packbits(used, axis=0).T, axis=0, return_index=True, return_inverse=True
    )
    group = group.ravel()
    sizes = used[:, first].sum(0)
    small = (sizes > 0) & (sizes <= _ROW_SET_FRACTION * n)
    if small.sum() > _MAX_ROW_SETS:
        small[:] = False
    out = []
    full = np.flatnonzero(~small[group] & (sizes[group] > 0))
    if full.size:
        out.append((None, full))
    for g in np.flatnonzero(small):
        out.append((np.flatnonzero(used[:, first[g]]), np.flatnonzero(group == g)))
    return out


def _solve_dual_rows(
    xp, Kpad, Y, cost, B0, *, tol: float, max_iter: int, precond, exact_flops: float
):
    """:func:`solve_dual` of columns that share their rows, on those rows' block of ``K``.

    Returns ``B``, the iterations of every column and the number of columns left above the
    tolerance at ``max_iter`` (the caller warns).
    """
    n = Kpad.shape[0] - 1
    P = Y.shape[1]
    dtype = Kpad.dtype
    K = Kpad[:n, :n]
    B_out = xp.zeros((n, P), dtype) if B0 is None else B0 + 0.0
    n_iter = np.zeros(P, dtype=np.int64)
    CY = cost * Y
    # |2 G^T (cost * y)|: the gradient's norm at w = 0
    g0 = 2.0 * np.sqrt(np.maximum(xp.to_numpy(xp.sum(CY * (K @ CY), 0)).astype(np.float64), 0))
    stop = tol * g0 / np.maximum(1.0, xp.to_numpy(xp.amax(cost, 0)).astype(np.float64))
    live = np.flatnonzero(g0 > 0)
    B, Yl, Cl = (xp.take_cols(a, live) for a in (B_out, Y, cost))
    stop = stop[live]
    n_rows = xp.to_numpy(xp.sum(Cl > 0, 0)).astype(np.int64)
    eps = float(np.finfo(xp.to_numpy(Kpad[:1, :1]).dtype).eps)
    tiny_move = np.zeros(live.size, dtype=bool)
    prev_obj = np.full(live.size, np.inf)
    n_flat = np.zeros(live.size, dtype=np.int64)
    Z = K @ B if B0 is not None else xp.zeros(B.shape, dtype)
    for _ in range(max_iter):
        if live.size == 0:
            break
        M = 1.0 - Yl * Z
        A = Cl * (M > 0)
        E = B - 2.0 * (A * M * Yl)  # gradient = G^T E
        KE = K @ E  # = G @ gradient
        gnorm = np.sqrt(np.maximum(xp.to_numpy(xp.sum(E * KE, 0)).astype(np.float64), 0.0))
        obj = xp.to_numpy(0.5 * xp.sum(B * Z, 0) + xp.sum(A * M * M, 0)).astype(np.float64)
        n_flat = np.where(prev_obj - obj <= 64 * eps * np.abs(obj), n_flat + 1, 0)
        prev_obj = obj
        done = (gnorm <= stop) | tiny_move | (n_flat >= _STALL_ITER)
        if done.any():
            idx = np.flatnonzero(~done)
            _put_cols(xp, B_out, live[done], xp.take_cols(B, np.flatnonzero(done)))
            live, stop, gnorm, prev_obj, n_flat, n_rows = (
                a[idx] for a in (live, stop, gnorm, prev_obj, n_flat, n_rows)
            )
            if live.size == 0:
                break
            B, Z, M, A, E, KE, Yl, Cl = (
                xp.take_cols(a, idx) for a in (B, Z, M, A, E, KE, Yl, Cl)
            )
        n_iter[live] += 1
        D, KD = _dual_direction(xp, Kpad, K, A, E, KE, gnorm, n_rows, precond, exact_flops)
        t = _line_search_terms(
            xp,
            xp.sum(Z * D, 0, keepdims=True),  # w . step
            xp.sum(D * KD, 0, keepdims=True),  # step . step
            abs(xp.sum(KE * D, 0, keepdims=True)),  # |grad . step|
            M,
            Yl * KD,
            Cl,
        )
        B = B + t * D
        move = t * KD
        Z = Z + move
        tiny_move = _col_absmax(xp, move) <= 16 * eps * np.maximum(1.0, _col_absmax(xp, Z))
    if live.size:
        _put_cols(xp, B_out, live, B)
    return B_out, n_iter, int(live.size)


def _dual_direction(xp, Kpad, K, A, E, KE, gnorm, n_rows, precond, exact_flops=None):
    """Newton step ``D`` (the primal step is ``G^T D``) and ``K @ D`` of every column.

    The step is ``G^T (X - E)`` with ``X`` the solution of ``(D^{-1} + K_SS) X_S = (K E)_S``
    on each column's active rows ``S`` (``D = 2 A_S``): dense solves for the columns with few
    active rows (the rules of :func:`_newton_direction`), conjugate gradients for the rest.
    """
    n_active = xp.to_numpy(xp.sum(A > 0, 0)).astype(np.int64)
    exact = (n_active <= _EXACT_MAX_ACTIVE) | (
        (n_active <= _EXACT_FRACTION * n_rows) & (n_active <= _EXACT_HARD_MAX)
    )
    # the columns where the preconditioned CG is slow take the dense solves too, the smallest
    # first, as long as those stay within a flop budget: the kernel's tail below the
    # preconditioner's eigenvalues leaves the system a condition number of about
    # 1 + 2 max(D) lam_k (lam_k the smallest eigenvalue taken out), and CG's iterations grow as
    # its square root. At 3,000 Caltech rows, with ~2,300 active rows: cost 1, 10 and 100
    # (condition ~30, 300, 3,000) took 8-13, 27-41 and 85-100 CG iterations, and the dense
    # solves 3 to 17 times as long as CG at cost 1 and 10, about as long at cost 100
    cond = 1.0 + 4.0 * _col_absmax(xp, A) * precond.lam_min()
    big_c = np.flatnonzero(~exact & (cond >= _DUAL_SLOW_CG_COND))
    if big_c.size:
        big_c = big_c[np.argsort(n_active[big_c], kind="stable")]
        flops = np.cumsum(n_active[big_c].astype(np.float64) ** 3 / 3.0)
        budget = _DUAL_EXACT_FLOPS if exact_flops is None else exact_flops
        exact[big_c[flops <= budget]] = True
    if exact.all():
        X = _active_systems(xp, K.dtype, Kpad, A, KE, n_active)
        return X - E, K @ X - KE
    X = xp.zeros(A.shape, A.dtype)
    KX = xp.zeros(A.shape, A.dtype)
    if exact.any():
        cols = np.flatnonzero(exact)
        X_e = _active_systems(
            xp, K.dtype, Kpad, xp.take_cols(A, cols), xp.take_cols(KE, cols), n_active[cols]
        )
        _put_cols(xp, X, cols, X_e)
        _put_cols(xp, KX, cols, K @ X_e)
    cols = np.flatnonzero(~exact)
    X_c, KX_c = _dual_cg(
        xp, K, xp.take_cols(A, cols), xp.take_cols(KE, cols), gnorm[cols], precond
    )
    _put_cols(xp, X, cols, X_c)
    _put_cols(xp, KX, cols, KX_c)
    return X - E, KX - KE


class _NystromPreconditioner:
    """``(D^{-1} + V_S diag(lam) V_S^T)^{-1}`` for the active-set systems of :func:`_dual_cg`.

    ``V, lam`` are approximately the top ``_NYSTROM_RANK`` eigenpairs of ``K`` (randomised
    subspace iteration, computed on first use; any ``V`` and positive ``lam`` give an SPD
    preconditioner, so their accuracy only affects the number of CG iterations): the kernel's few large eigenvalues are what makes ``D^{-1} + K_SS`` ill-conditioned
    (RBF at 3,000 Caltech rows: 3,524, 100, 62, ... down to 0.02), and with them taken out the
    preconditioned system's condition number is about ``1 + 2 max(D) lam_{k+1}``. Applied per
    column by the Woodbury identity: ``D - D V (diag(1/lam) + V^T D V)^{-1} V^T D``, a
    ``k x k`` system per column (randomised Nyström preconditioning, Frangella, Tropp and
    Udell 2023, with the exact top of the spectrum).
    """

    def __init__(self, xp, K):
        self.xp, self.K = xp, K
        self.V = None

    def _eigs(self):
        if self.V is None:
            xp, K = self.xp, self.K
            n = K.shape[0]
            k = min(_NYSTROM_RANK, n)
            Q = np.random.default_rng(0).standard_normal((n, min(n, k + 16)))
            Q = xp.asarray(Q, K.dtype)
            for _ in range(_NYSTROM_POWER + 1):
                Q = xp.asarray(_orthonormal(xp.to_numpy(K @ Q)), K.dtype)
            Qh = xp.to_numpy(Q).astype(np.float64)
            Bm = Qh.T @ xp.to_numpy(K @ Q).astype(np.float64)
            lam, U = np.linalg.eigh(0.5 * (Bm + Bm.T))
            top = np.argsort(lam)[::-1][:k]
            lam, V = lam[top], Qh @ U[:, top]
            keep = lam > 0
            V, lam = V[:, keep], lam[keep]
            self.V = xp.asarray(V, K.dtype)
            self.VT = xp.asarray(np.ascontiguousarray(V.T), K.dtype)
            # rows' outer products v_i v_i^T, flattened: V^T diag(d) V = (VV^T d) for all d
            self.VV = xp.asarray((V[:, :, None] * V[:, None, :]).reshape(V.shape[0], -1).T,
                                 K.dtype)
            self.inv_lam = 1.0 / lam
        return self.V

    def restrict(self, rows: np.ndarray) -> _NystromPreconditioner:
        """The same preconditioner for the block ``K[rows, rows]`` (the rows of ``V``; it
        only ever acts on active rows, which lie in ``rows``): the same numbers, computed on
        ``rows`` only. ``lam_max`` stays that of ``K``, a bound for the block's."""
        self._eigs()
        xp = self.xp
        sub = _NystromPreconditioner(xp, None)
        sub.V = self.V[xp.index(rows)]
        sub.VT = xp.take_cols(self.VT, rows)
        sub.VV = xp.take_cols(self.VV, rows)
        sub.inv_lam = self.inv_lam
        return sub

    def lam_min(self) -> float:
        """The smallest eigenvalue the preconditioner takes out of ``K``."""
        self._eigs()
        return float(1.0 / self.inv_lam.max())

    def lam_max(self) -> float:
        self._eigs()
        return float(1.0 / self.inv_lam.min())

    def setup(self, Dg):
        """The per-column ``k x k`` inverses for the diagonal weights ``Dg`` (n, q)."""
        xp = self.xp
        V = self._eigs()
        k = V.shape[1]
        Q = xp.to_numpy(self.VV @ Dg).astype(np.float64).T.reshape(-1, k, k)
        Q[:, np.arange(k), np.arange(k)] += self.inv_lam
        return np.linalg.inv(Q)  # on the host: (q, k, k) of 32 x 32

    def apply(self, Qinv, Dg, R):
        xp = self.xp
        DR = Dg * R
        T = xp.to_numpy(self.VT @ DR).astype(np.float64)  # (k, q)
        S = np.einsum("pkl,lp->kp", Qinv, T)
        return DR - Dg * (self.V @ xp.asarray(S, DR.dtype))


def _orthonormal(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall ``Y`` (float64 QR on one BLAS thread: a
    (1500, 48) QR took 1.5 s on two threads of a busy machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.qr(Y.astype(np.float64))[0]


_NYSTROM_RANK = 32
_NYSTROM_POWER = 2


def _dual_cg(xp, K, A, U, gnorm, precond):
    """Preconditioned conjugate gradients on ``(D^{-1} + K_SS) x = U_S`` per column
    (``D = 2 A``, ``S`` its active rows); returns ``x`` (zero off ``S``) and ``K @ x``.

    Started from 0, every iterate gives a descent direction ``G^T (x - E)``: ``U_S . x`` grows
    towards ``U_S^T (D^{-1} + K_SS)^{-1} U_S``, which is below ``|grad|^2`` (Woodbury), so
    ``grad . step = U_S . x - |grad|^2 < 0``. A column stops when the residual of the primal
    Newton system, ``2 G^T (A r)`` for the residual ``r`` here, is below ``_CG_RTOL`` times the
    gradient's norm (as :func:`_pcg`), tested by its bound ``2 |A r| sqrt(lam_max(K))``; the
    line search makes the inexact step safe.
    """
    mask = A > 0
    Dg = 2.0 * A
    inv = xp.where(mask, 0.5 / xp.where(mask, A, 1.0), 0.0)  # D^{-1} on S
    Qinv = precond.setup(Dg)
    x_out = xp.zeros(A.shape, A.dtype)
    Kx_out = xp.zeros(A.shape, A.dtype)
    res = xp.where(mask, U, 0.0)
    stop = _CG_RTOL * gnorm / (2.0 * np.sqrt(precond.lam_max()))
    z = precond.apply(Qinv, Dg, res)
    p = z
    rz = xp.sum(res * z, 0, keepdims=True)
    x = xp.zeros(A.shape, A.dtype)
    Kx = xp.zeros(A.shape, A.dtype)
    live = np.arange(A.shape[1])
    for _ in range(_DUAL_CG_MAX_ITER):
        Kp = K @ p
        Mp = xp.where(mask, Kp + inv * p, 0.0)
        pMp = xp.sum(p * Mp, 0, keepdims=True)
        alpha = xp.where(pMp > 0, rz / xp.where(pMp > 0, pMp, 1.0), 0.0)
        x = x + alpha * p
        Kx = Kx + alpha * Kp
        res = res - alpha * Mp
        done = _col_norm(xp, A * res) <= stop
        if done.any():
            cols = np.flatnonzero(done)
            _put_cols(xp, x_out, live[cols], xp.take_cols(x, cols))
            _put_cols(xp, Kx_out, live[cols], xp.take_cols(Kx, cols))
            idx = np.flatnonzero(~done)
            live, stop = live[idx], stop[idx]
            if live.size == 0:
                return x_out, Kx_out
            x, Kx, res, p, rz, mask, inv, Dg, A = (
                xp.take_cols(a, idx) for a in (x, Kx, res, p, rz, mask, inv, Dg, A)
            )
            Qinv = Qinv[idx]
        z = precond.apply(Qinv, Dg, res)
        rz_new = xp.sum(res * z, 0, keepdims=True)
        beta = xp.where(rz > 0, rz_new / xp.where(rz > 0, rz, 1.0), 0.0)
        rz = rz_new
        p = z + beta * p
    _put_cols(xp, x_out, live, x)
    _put_cols(xp, Kx_out, live, Kx)
    return x_out, Kx_out
