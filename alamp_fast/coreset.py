"""Core-set selection by k-center greedy (Sener & Savarese), exact and O(n d) per step.

Each step takes the candidate farthest (Euclidean) from its nearest labeled-or-chosen point,
then lowers every candidate's running nearest distance with one fused pass over the features:
no ``n x n`` or ``n x labeled`` matrix is ever built, extra memory is O(n).

Speed without giving up exactness
---------------------------------
Every distance that decides a pick is the float64 distance ``sum_j (x_j - c_j)^2`` computed
from the original rows (:func:`_row_sqdist`). Cheaper arithmetic only *screens*:

* the first nearest-labeled search runs one BLAS GEMM per row block (float32 for float32
  input); every labeled row whose GEMM distance lies within a proven rounding bound of the
  row's best is re-measured exactly, so the minimum is the exact one, not the GEMM's guess;
* each greedy step takes a float32 dot product per row (``|x|^2 + |c|^2 - 2 x.c`` on centred
  data) and re-measures exactly only the rows for which the new center could be nearer than
  the current nearest within that bound (a few rows per step).

The bounds are the standard ones (``gamma_d |x| |c|`` for a d-term float32 dot product in any
summation order, plus the float32 rounding of the centred rows), taken with a 2x margin, so the
picks are those of the exact float64 algorithm. Data whose range would overflow float32
products (above about 1e18 after centring) or underflow skip the screen and use the exact
float64 pass for every row.

All ``b`` steps of a query run inside one compiled call (:func:`_greedy_run`); small pools
run serially, larger ones with the rows split over the threads at every step.
:class:`KCenterState` keeps every row's nearest-labeled distance between queries of one AL
run, so a later query folds in only the newly labeled rows.
"""

from __future__ import annotations

import hashlib
import time

import numba
import numpy as np
from numba import njit, prange

from alamp_fast import _parallel
from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import twins
from alamp_fast._validate import as_float_array, as_index_array, check_budget, check_finite

__all__ = ["kcenter_greedy", "KCenterState"]

# Rows per block of the nearest-labeled search: the (rows x n_labeled) GEMM block stays at a
# few MiB (cache-resident for the screening pass) whatever n is.
_INIT_BLOCK_ELEMS = 1 << 22
# the float32 screen is used up to this many features (its rounding bound grows with d)
_SCREEN_MAX_D = 1 << 20
# centred row norms above this would overflow float32 products (2**62 * 2**62 < 2**128)
_SCREEN_MAX_NORM = 2.0**60
# an offset (|mean|) up to this multiple of the rows' rms spread is screened uncentred (no
# centred copy of the pool); beyond it the screen would re-measure too many rows
_CENTRE_RATIO = 4.0
# float64 magnitudes above this overflow the float64 squared distances
_MAX_ABS64 = 1e150
# steps timed with each build before the rest of a query runs with the faster one
_PROBE_STEPS = 4
_U32 = 2.0**-24
_U64 = 2.0**-53
# absolute slack for float32 underflow (each product may lose up to 2**-149)
_ABS_SLACK = 2.0**-100


def _tau(d: int, unit: float) -> float:
    """Relative rounding bound of a screened squared distance, per ``(|x'| + |c'|)^2``.

    d-term dot product: ``gamma_d |x'| |c'| <= gamma_d (|x'| + |c'|)^2 / 4`` (times 2 in
    ``-2 x.c``); rounding of the centred rows to the screen's precision and of the sums
    that form the screen: ``6u (|x'|+|c'|)^2``; all taken with a 2x margin. Plus the float64
    rounding of the exact distances themselves (so a row left out can never be nearer by
    rounding), ``4 gamma_d`` in float64.
    """
    return 2.0 * (2.0 * _gamma(d, unit) + 6.0 * unit) + 4.0 * _gamma(d, _U64)


def _gamma(d: int, unit: float) -> float:
    return (d + 2) * unit / (1.0 - (d + 2) * unit)


# ---------------------------------------------------------------------------------------------
# exact distances


# reassoc lets LLVM vectorise the sum of squares (float64 accumulators, float32 loads widened):
# 28 GB/s on one core vs ~4 GB/s for the sequential chain. Every exact distance in this module
# (and in alamp_fast.distributed) comes from this one function, so a pair's distance is the
# same number wherever it is measured.
@njit(fastmath={"reassoc", "contract"}, cache=True)
def _row_sqdist(X, i, c):
    """|X[i] - c|^2 in float64 (``c`` float64)."""
    s = 0.0
    for j in range(X.shape[1]):
        t = np.float64(X[i, j]) - c[j]
        s += t * t
    return s


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _sqdist_rows(X, lo, hi, c, out):
    """out[i - lo] = |X[i] - c|^2 for lo <= i < hi (float64)."""
    for i in range(lo, hi):
        out[i - lo] = _row_sqdist(X, i, c)


@twins()
def _step(X, center, min_d2, n_chunks, chunk_best, chunk_arg):
    """min_d2 = min(min_d2, |x - center|^2) for candidates (min_d2 >= 0), and the per-chunk
    argmax of the updated min_d2 (strict > keeps the lowest index within a chunk).

    One unscreened step (every distance exact), used per chunk by :mod:`alamp_fast.distributed`.
    """
    n = X.shape[0]
    c = center.astype(np.float64)
    size = (n + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        lo = ch * size
        hi = min(n, lo + size)
        best = -1.0
        arg = -1
        for i in range(lo, hi):
            m = min_d2[i]
            if m < 0.0:  # labeled or already chosen
                continue
            d = _row_sqdist(X, i, c)
            if d < m:
                m = d
                min_d2[i] = d
            if m > best:
                best = m
                arg = i
        chunk_best[ch] = best
        chunk_arg[ch] = arg


# ---------------------------------------------------------------------------------------------
# the greedy loop: all steps of a query in one compiled call


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _dot32(S, i, k):
    """float32 dot product of rows i and k of ``S`` (vectorised, float32 accumulators)."""
    acc = np.float32(0.0)
    for j in range(S.shape[1]):
        acc += S[i, j] * S[k, j]
    return acc


@twins()
def _greedy_run(X, S, A, a, tau, slack, min_d2, pick, pos, n_steps, chosen, cbest, carg):
    """Run greedy steps ``pos .. pos + n_steps - 1``: record ``pick``, lower the running minima,
    take the next pick. Returns the pick after the last step (-1 once ``chosen`` is full).

    ``S`` (float32, the screen: centred rows, or ``X`` itself) with ``A = |S_i|^2`` and
    ``a = |S_i|`` in float64; ``S.shape[0] == 0`` disables the screen (every distance exact).
    A row is re-measured exactly unless its screened distance minus the bound
    ``tau (a_i + a_c)^2 + slack`` is at least its current minimum.
    """
    n = X.shape[0]
    d = X.shape[1]
    n_chunks = cbest.shape[0]
    size = (n + n_chunks - 1) // n_chunks
    screen = S.shape[0] > 0
    c = np.empty(d)
    for s in range(n_steps):
        chosen[pos + s] = pick
        min_d2[pick] = -1.0
        if pos + s + 1 == chosen.shape[0]:
            return -1
        for j in range(d):
            c[j] = X[pick, j]
        Ac = A[pick] if screen else 0.0
        ac = a[pick] if screen else 0.0
        for ch in prange(n_chunks):
            lo = ch * size
            hi = min(n, lo + size)
            best = -1.0
            arg = -1
            for i in range(lo, hi):
                m = min_d2[i]
                if m < 0.0:  # labeled or already chosen
                    continue
                exact = True
                if screen:
                    da = A[i] + Ac - 2.0 * np.float64(_dot32(S, i, pick))
                    r = a[i] + ac
                    exact = da - (tau * r * r + slack) < m
                if exact:
                    dd = _row_sqdist(X, i, c)
                    if dd < m:
                        m = dd
                        min_d2[i] = dd
                if m > best:
                    best = m
                    arg = i
            cbest[ch] = best
            carg[ch] = arg
        # chunks cover increasing rows: the first chunk holding the max has the lowest index
        best = -1.0
        pick = -1
        for ch in range(n_chunks):
            if cbest[ch] > best:
                best = cbest[ch]
                pick = carg[ch]
    return pick


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _row_norms(S, A, a):
    for i in range(S.shape[0]):
        s = 0.0
        for j in range(S.shape[1]):
            t = np.float64(S[i, j])
            s += t * t
        A[i] = s
        a[i] = np.sqrt(s)


def _screen(X: np.ndarray):
    """The float32 screen of ``X``: ``(S, A, a, tau)``, or None where it cannot be trusted.

    ``S`` is ``X`` itself for float32 rows near the origin (no copy), otherwise the float32
    rows centred at the pool mean.
    """
    n, d = X.shape
    if n == 0 or d == 0 or d > _SCREEN_MAX_D:
        return None
    mu = X.mean(axis=0, dtype=np.float64)
    centre = True
    if X.dtype == np.float32:
        # rms spread from a sample of rows (the decision only affects speed)
        sample = X[:: max(1, n // 256)].astype(np.float64) - mu
        spread2 = float(np.einsum("ij,ij->", sample, sample)) / sample.shape[0]
        centre = float(mu @ mu) > _CENTRE_RATIO**2 * max(spread2, 1e-300)
    if centre:
        with np.errstate(over="ignore", invalid="ignore"):
            S = np.empty((n, d), dtype=np.float32)
            rows = max(1, _INIT_BLOCK_ELEMS // d)
            for lo in range(0, n, rows):
                S[lo : lo + rows] = X[lo : lo + rows] - mu
    else:
        S = X
    A = np.empty(n)
    a = np.empty(n)
    _row_norms(S, A, a)
    if not (np.isfinite(A).all() and float(a.max()) <= _SCREEN_MAX_NORM):
        return None
    return S, A, a, _tau(d, _U32)


def _greedy(X: np.ndarray, min_d2: np.ndarray, first: int, b: int) -> np.ndarray:
    """The ``b`` picks starting at ``first``; ``min_d2`` (updated in place) holds each row's
    exact squared distance to its nearest labeled row, -1 for labeled rows."""
    n, d = X.shape
    chosen = np.empty(b, dtype=np.int64)
    scr = _screen(X) if b > 1 else None
    if scr is None:
        S, A, a, tau = np.empty((0, max(d, 1)), np.float32), np.empty(0), np.empty(0), 0.0
    else:
        S, A, a, tau = scr
    slack = (4.0 * d + 16.0) * _ABS_SLACK
    # per step: one screened pass over the rows (float32 dot products), a parallel region
    # only where the pass is large enough to pay for waking the threads at every step
    args = (X, S, A, a, tau, slack, min_d2)
    one = (np.empty(1), np.empty(1, dtype=np.int64))
    if _greedy_run.pick(X.size) is _greedy_run.serial:
        _greedy_run.serial(*args, first, 0, b, chosen, *one)
        return chosen
    n_chunks = min(n, 4 * numba.get_num_threads())
    many = (np.empty(n_chunks), np.empty(n_chunks, dtype=np.int64))
    if b < 4 * _PROBE_STEPS or _parallel.PARALLEL_MIN_WORK == 0:
        _greedy_run.parallel(*args, first, 0, b, chosen, *many)
        return chosen
    # A parallel region per step pays off on idle cores and loses when another process holds
    # one: time a few steps each way, then run the rest in one call with the faster build.
    pick, pos = first, 0
    per_step = {}
    for name, kern, bufs in (
        ("parallel", _greedy_run.parallel, many),
        ("serial", _greedy_run.serial, one),
    ):
        t0 = time.perf_counter()
        pick = kern(*args, pick, pos, _PROBE_STEPS, chosen, *bufs)
        per_step[name] = time.perf_counter() - t0
        pos += _PROBE_STEPS
    if per_step["parallel"] <= per_step["serial"]:
        _greedy_run.parallel(*args, pick, pos, b - pos, chosen, *many)
    else:
        _greedy_run.serial(*args, pick, pos, b - pos, chosen, *one)
    return chosen


# ---------------------------------------------------------------------------------------------
# nearest labeled row: blocked GEMM screen + exact re-measure


@njit(cache=True)
def _nearest_block(X, lo, xn, V, lmax, L64, tau, slack, out):
    """For rows lo .. lo + V.shape[0] - 1: the exact min over labeled rows of |X[i] - L[j]|^2.

    ``V[r, j]`` approximates ``|l'_j|^2 - 2 x'_i . l'_j`` (centred rows; from the GEMM), so
    ``|x'_i|^2 + V[r, j]`` is the squared distance within ``E = tau (|x'_i| + lmax)^2 + slack``
    (``xn[r] = |x'_i|``, ``lmax`` the largest ``|l'_j|``). Only a j with
    ``V[r, j] <= min_k V[r, k] + 2E`` can be nearest; those are re-measured exactly from the
    float64 labeled rows ``L64``.
    """
    nl = V.shape[1]
    for r in range(V.shape[0]):
        # four independent running minima: the compare-select chain is latency-bound
        u0 = u1 = u2 = u3 = V[r, 0]
        j4 = nl - nl % 4
        for j in range(0, j4, 4):
            v0 = V[r, j]
            v1 = V[r, j + 1]
            v2 = V[r, j + 2]
            v3 = V[r, j + 3]
            u0 = v0 if v0 < u0 else u0
            u1 = v1 if v1 < u1 else u1
            u2 = v2 if v2 < u2 else u2
            u3 = v3 if v3 < u3 else u3
        for j in range(j4, nl):
            v0 = V[r, j]
            u0 = v0 if v0 < u0 else u0
        vmin = np.float64(min(min(u0, u1), min(u2, u3)))
        e = xn[r] + lmax
        thr = vmin + 2.0 * (tau * e * e + slack)
        best = np.inf
        i = lo + r
        for j in range(nl):
            if np.float64(V[r, j]) <= thr:
                dd = _row_sqdist(X, i, L64[j])
                if dd < best:
                    best = dd
        out[r] = best


def _nearest_d2(X: np.ndarray, L_raw: np.ndarray) -> np.ndarray:
    """Exact squared distance of every row of ``X`` to its nearest row of ``L_raw`` (float64).

    Row blocks of ``X`` meet the labeled rows in one BLAS GEMM each (float32 for float32
    input, against ``-2 L'`` with ``|l'|^2`` added, so the block holds the distance screen
    directly), on data centred at the labeled mean where the rows lie far from the origin; a
    serial pass then re-measures exactly every labeled row that the GEMM's rounding bound
    cannot rule out, so the result is the exact minimum of :func:`_row_sqdist`, whichever
    rows it is split into (``min`` over two labeled sets equals one search over both).
    Only BLAS's thread pool runs during the search (the screening pass is serial), so two
    pools never compete for the cores. Also used per chunk by :mod:`alamp_fast.distributed`.
    """
    n, d = X.shape
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    if L_raw.shape[0] == 0 or d == 0:
        out.fill(np.inf if L_raw.shape[0] == 0 else 0.0)
        return out
    L64 = np.ascontiguousarray(L_raw, dtype=np.float64)
    mu = L64.mean(axis=0)
    Lc64 = L64 - mu
    spread2 = float(np.einsum("ij,ij->", Lc64, Lc64)) / L64.shape[0]
    del Lc64
    if float(mu @ mu) <= _CENTRE_RATIO**2 * max(spread2, 1e-300):
        mu = None  # near the origin: no centring (no copy of the row blocks)
    # float32 GEMM where the input is float32 and no product can overflow, per row block;
    # float64 otherwise (the exact fallback for magnitudes beyond ~1e18)
    screens = {}

    def screen(dt):
        if dt not in screens:
            m = np.zeros(d) if mu is None else mu.astype(dt).astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):  # checked through lmax
                Lg = (L64 - m).astype(dt)
                l2 = np.einsum("ij,ij->i", Lg, Lg, dtype=np.float64)
                lmax = float(np.sqrt(l2.max()))
                ok = dt == np.float64 or (np.isfinite(lmax) and lmax <= _SCREEN_MAX_NORM)
                screens[dt] = (
                    None if mu is None else m.astype(dt),
                    np.ascontiguousarray(Lg.T) * dt(-2),  # exact scaling
                    l2.astype(dt),
                    lmax,
                    _tau(d, _U32 if dt == np.float32 else _U64),
                    ok,
                )
        return screens[dt]

    slack = (4.0 * d + 16.0) * _ABS_SLACK
    rows = min(n, max(1, _INIT_BLOCK_ELEMS // max(L64.shape[0], d, 1)))
    x2 = np.empty(rows)
    xn = np.empty(rows)
    f32 = X.dtype == np.float32 and d < _SCREEN_MAX_D and screen(np.float32)[5]
    for start in range(0, n, rows):
        block = X[start : start + rows]
        m = block.shape[0]
        for dt in (np.float32, np.float64) if f32 else (np.float64,):
            mu_g, m2LT, l2g, lmax, tau, _ = screen(dt)
            Xb = block.astype(dt, copy=False)
            if mu_g is not None:
                with np.errstate(over="ignore", invalid="ignore"):
                    Xb = Xb - mu_g
            _row_norms(Xb, x2[:m], xn[:m])
            if dt == np.float64 or float(xn[:m].max()) <= _SCREEN_MAX_NORM:
                break  # (NaN from an overflow fails the test too)
        V = Xb @ m2LT
        V += l2g
        _nearest_block(X, start, xn[:m], V, lmax, L64, tau, slack, out[start : start + m])
    return out


# ---------------------------------------------------------------------------------------------
# state kept between queries


class KCenterState:
    """Each pool row's nearest-labeled distance, kept between the queries of one AL run.

    Pass the same object to every :func:`kcenter_greedy` call of a run (same ``features``,
    labeled set growing): a query then measures only the rows labeled since the previous one
    against the pool, instead of the whole labeled set. The picks are exactly those of a call
    without state. If the labeled set shrank, or the features changed shape, dtype or content
    (checked on a sample of rows, not every value: do not edit the array in place between
    queries), the state starts over with a full search.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> X = np.arange(10.0).reshape(-1, 1) ** 2
    >>> st = af.KCenterState()
    >>> first = af.kcenter_greedy(X, [0], 2, state=st)
    >>> later = af.kcenter_greedy(X, [0, *first.tolist()], 2, state=st)
    >>> later.tolist() == af.kcenter_greedy(X, [0, *first.tolist()], 2).tolist()
    True
    """

    def __init__(self) -> None:
        self._key = None
        self._labeled = None  # bool mask
        self._min_d2 = None  # exact nearest-labeled squared distance, -1 on labeled rows
        self.rows_measured = 0  # labeled rows searched against the pool by the last query

    def reset(self) -> None:
        """Forget the stored distances (the next query runs a full search)."""
        self.__init__()

    @staticmethod
    def _fingerprint(X: np.ndarray) -> tuple:
        n = X.shape[0]
        h = hashlib.blake2b(digest_size=16)
        if n:
            rows = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))
            h.update(np.ascontiguousarray(X[rows]).tobytes())
        return (X.shape, X.dtype.str, h.hexdigest())

    def _nearest(self, X: np.ndarray, lab: np.ndarray) -> np.ndarray:
        """min_d2 for ``lab`` (a copy the greedy loop may change)."""
        n = X.shape[0]
        mask = np.zeros(n, dtype=bool)
        mask[lab] = True
        key = self._fingerprint(X)
        if (
            self._key != key
            or self._min_d2 is None
            or bool((self._labeled & ~mask).any())  # a labeled row was removed
        ):
            new = lab
            min_d2 = np.full(n, np.inf)
        else:
            new = np.flatnonzero(mask & ~self._labeled)
            min_d2 = self._min_d2.copy()
        if new.size:
            np.minimum(min_d2, _nearest_d2(X, X[new]), out=min_d2)
        min_d2[lab] = -1.0
        self._key, self._labeled, self._min_d2 = key, mask, min_d2
        self.rows_measured = int(new.size)
        return min_d2.copy()


@dispatch("kcenter_greedy")
def kcenter_greedy(features, labeled, b, *, state=None):
    """k-center greedy core-set selection.

    Each of the ``b`` steps takes the unlabeled row with the largest Euclidean distance to its
    nearest labeled-or-already-chosen row; equal distances go to the lower index.

    Parameters
    ----------
    features : (n_samples, n_features) float16/32/64, finite
        Dense arrays only: convert a scipy.sparse matrix with ``.toarray()``.
    labeled : int indices or boolean mask
        Rows already labeled; they are never picked. May be empty: then every candidate is
        infinitely far from the (empty) labeled set, so the first pick is the lowest-index
        candidate (row 0), and the greedy rule runs from there. Pass a random labeled seed
        instead if a random start is wanted.
    b : int
        Number of rows to pick, ``0 <= b <= n_samples - len(labeled)``.
    state : KCenterState, optional
        Keeps the nearest-labeled distances between the queries of one AL run (same
        ``features``, growing ``labeled``): a query then searches only the newly labeled rows.
        Same picks as without it. NumPy (and torch CPU) input only.

    Returns
    -------
    (b,) int64 indices in the order chosen.

    Notes
    -----
    Picks follow exact float64 squared distances ``sum_j (x_j - c_j)^2`` of the original
    rows. The first nearest-labeled search is a blocked BLAS GEMM, each step a float32 dot
    product per row; both are only screens, with every distance that could matter
    re-measured exactly (see the module docstring). Extra memory: a few float64 per row,
    plus a float32 centred copy of the pool when its rows lie far from the origin or the
    input is float64. Features whose squared magnitudes overflow float64 (above about
    1e150) raise ``ValueError``.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> X = np.array([[0.0], [1.0], [5.0], [10.0]])
    >>> af.kcenter_greedy(X, [0], 2).tolist()
    [3, 2]
    """
    X = as_float_array(features, "features", 2)
    check_finite(X, "features")
    if X.dtype == np.float16:
        X = X.astype(np.float32)
    if state is not None and not isinstance(state, KCenterState):
        raise TypeError(f"state must be a KCenterState or None, got {type(state).__name__}")
    n = X.shape[0]
    lab = as_index_array(labeled, "labeled", n)
    b = check_budget(b, n - lab.size, "unlabeled candidates")
    if b == 0:
        return np.empty(0, dtype=np.int64)
    if X.dtype == np.float64 and X.size:
        big = float(np.abs(X).max())
        if big > _MAX_ABS64:
            raise ValueError(
                f"features hold a value of magnitude {big:.3g}: squared distances overflow "
                "float64 above about 1e150; rescale the features (e.g. divide by their max)"
            )
    if state is not None:
        min_d2 = state._nearest(X, lab)
    elif lab.size:
        min_d2 = _nearest_d2(X, X[lab])
        min_d2[lab] = -1.0
    else:
        min_d2 = np.full(n, np.inf)
    # first maximum: lowest index among ties (row 0 when nothing is labeled)
    first = int(np.argmax(min_d2))
    return _greedy(X, min_d2, first, b)

