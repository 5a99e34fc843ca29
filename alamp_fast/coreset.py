"""Core-set selection by k-center greedy (Sener & Savarese), exact, at most O(n d) per step.

Each step takes the candidate farthest (Euclidean) from its nearest labeled-or-chosen point,
then lowers the candidates' running nearest distances: no ``n x n`` or ``n x labeled`` matrix
is ever built, extra memory is O(n) (plus the copies named below).

Lazy steps
----------
A running nearest distance only ever goes down, so a stale one is an upper bound. The steps
keep the candidates in a max-heap of those bounds and bring only the top row up to date (the
centers chosen since its last update); when it stays on top it is the pick (Minoux's lazy
greedy, applied to farthest-first traversal). Rows far from every later pick are never
measured again: on the Caltech-101 features (6,096 x 1,024, 200 labeled, b = 200) a query
measures about 3% of the row-center distances of the eager steps, which measure all of them.
Where the bounds stay tight (rows spread evenly, e.g. a dense low-dimensional cloud) the lazy
loop hands over to the eager steps once it measured a quarter of their distances
(:func:`_lazy_run`), so a query never costs much more than the eager one.

Speed without giving up exactness
---------------------------------
Every distance that decides a pick is the float64 distance ``sum_j (x_j - c_j)^2`` computed
from the original rows (:func:`_row_sqdist`). Cheaper arithmetic only *screens*:

* the nearest-labeled search runs one BLAS GEMM per row block (float32 for float32 input);
  every labeled row whose GEMM distance lies within a proven rounding bound of the row's best
  is re-measured exactly, so the minimum is the exact one, not the GEMM's guess;
* each eager greedy step takes a float32 dot product per row (``|x|^2 + |c|^2 - 2 x.c``)
  and re-measures exactly only the rows for which the new center could be nearer than the
  current nearest within that bound (a few rows per step); on hosts with F16C, pools of 2**18
  values and more take those dot products on a float16 copy of the rows (scaled by a power of
  two; half the bytes per step; its rounding added to the bound, :func:`_half_screen`);
* the lazy steps measure every distance they use exactly.

The bounds are the standard ones (``gamma_d |x| |c|`` for a d-term float32 dot product in any
summation order, plus the float32 rounding of the screened rows), taken with a 2x margin, so
the picks are those of the exact float64 algorithm. Rows far from the origin (relative to
their spread) and float64 input are screened through a float32 copy centred at the pool mean;
data whose range would overflow float32 products (above about 1e18 after centring) or
underflow skip the screen and use the exact float64 pass for every row.

One thread pool at a time
-------------------------
The passes over the pool (row norms, centring, the search's GEMM blocks with their exact
re-measure) run on Python threads, each taking whole row blocks, with BLAS limited to one
thread meanwhile (``threadpoolctl``): BLAS's and numba's pools never compete for the cores.
The lazy steps run on one thread, all in one compiled call (:func:`_lazy_run`): each
measures few rows, so threads would cost more than they give, and a busy core cannot stall
them. The eager steps, where they take over, run inside compiled calls of many steps each
(:func:`_greedy_run`, no Python between steps); small pools run serially, larger ones split
the rows over numba's
threads at every step while that is faster: a few steps are timed each way, then segments of
16 steps run with the faster build, which is re-timed against the other when it slows down.
A parallel region per step loses 5-20x when another process holds a core (each step waits
for a descheduled thread), so a query whose pool passes got well under one CPU-second per
second per thread and that finds other processes' runnable tasks filling the cores
(``/proc/loadavg``) starts serial, and times the parallel build again only every 64 steps
(then 128, ...) while the cores look free. :class:`KCenterState` keeps every row's nearest-labeled distance between
queries of one AL run, so a later query folds in only the newly labeled rows.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

from alamp_fast import _parallel
from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import twins
from alamp_fast._simd import HAS_F16C, as_float, to_half
from alamp_fast._validate import (
    as_float_array,
    as_index_array,
    check_budget,
    check_finite,
    raise_non_finite,
)

__all__ = ["kcenter_greedy", "KCenterState"]

# Rows per block of the passes over the pool: a (rows x max(d, n_labeled)) block stays at
# 2 MiB of float32 (the GEMM's input rows and its output stay in cache between the GEMM and
# the screening pass, for two threads at once) whatever n is.
_INIT_BLOCK_ELEMS = 1 << 19
# the float32 screen is used up to this many features (its rounding bound grows with d)
_SCREEN_MAX_D = 1 << 20
# centred row norms above this would overflow float32 products (2**62 * 2**62 < 2**128)
_SCREEN_MAX_NORM = 2.0**60
# an offset (|mean|) up to this multiple of the rows' rms spread is screened uncentred (no
# centred copy of the pool); beyond it the screen would re-measure too many rows
_CENTRE_RATIO = 4.0
# float64 magnitudes above this overflow the float64 squared distances
_MAX_ABS64 = 1e150
# steps timed with the parallel build (then _RETIME_STEPS with the serial one) before the
# rest of a query runs with the faster one, in segments of _SEGMENT_STEPS; the slower build
# is timed again (_RETIME_STEPS steps) when the faster one slows down, and after
# _RECHECK_STEPS steps (then twice as many, ...)
_PROBE_STEPS = 4
_SEGMENT_STEPS = 16
_RETIME_STEPS = 2
_RECHECK_STEPS = 64
_U16 = 2.0**-11
# the greedy steps screen through a float16 copy of the pool (half the bytes per step; F16C
# hosts only) from this many steps (the copy costs about two steps), features (below, the
# rows are too short for the vector loop to gain) and values (smaller pools stay in cache),
# up to this size of copy (extra memory: half the float32 pool)
_HALF_MIN_STEPS = 8
_HALF_MIN_D = 16
_HALF_MIN_ELEMS = 1 << 18
_HALF_MAX_BYTES = 1 << 32
# the lazy greedy loop hands over to the eager steps once it measured this share of the
# distances they would have (its float64 distances on one thread cost about 2-4x a screened
# row of an eager step on two; 0 turns it off), and is not used where the chosen rows in
# float64 (b x d) would take more than this many bytes
_LAZY_MAX_SHARE = 0.25
_LAZY_MAX_BYTES = 1 << 28
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


def _slack(d: int) -> float:
    return (4.0 * d + 16.0) * _ABS_SLACK


# ---------------------------------------------------------------------------------------------
# row blocks on threads, BLAS on one thread meanwhile


@functools.lru_cache(maxsize=1)
def _blas_control():
    """A threadpoolctl controller of the loaded BLAS libraries (made once: inspecting them
    takes milliseconds), or None without threadpoolctl (then the passes run serially)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return None
    return ThreadpoolController()


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def _blas_on_one_thread():
    """BLAS limited to one thread while any caller is inside (calls from several threads at
    once, e.g. a threaded Dask scheduler, share one limit; the last one out restores it)."""
    global _blas_users, _blas_limiter
    ctl = _blas_control()
    if ctl is None:
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = ctl.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _plan(n: int, max_rows: int, work: int) -> tuple[int, int]:
    """``(rows per block, workers)`` for a pass over ``n`` rows of ``work`` elements."""
    workers = numba.get_num_threads() if work >= _parallel.PARALLEL_MIN_WORK else 1
    if workers > 1 and _blas_control() is None:
        workers = 1
    n_blocks = -(-n // max(1, max_rows))
    if workers > 1:  # whole rounds of blocks: no worker is left with one more at the end
        n_blocks = -(-n_blocks // workers) * workers
    rows = max(1, -(-n // max(1, n_blocks)))
    return rows, min(workers, -(-n // rows))


def _run_blocks(n: int, rows: int, workers: int, fn) -> None:
    """``fn(lo, hi, scratch)`` for every row block ``[lo, hi)``; ``workers`` threads take
    blocks in turn (``scratch``: a dict private to the thread, for its buffers). With more
    than one worker, BLAS is limited to one thread until all blocks are done, and the CPU
    time the workers got per second of their wall time is added to this thread's
    :data:`_share` (the greedy loop's hint that another process holds a core)."""
    starts = range(0, n, rows)
    if workers <= 1:
        scratch: dict = {}
        for lo in starts:
            fn(lo, min(n, lo + rows), scratch)
        return
    it = iter(starts)
    lock = threading.Lock()
    failed = []
    got = []  # (cpu s, wall s) per worker

    def worker():
        scratch: dict = {}
        w0, c0 = _wall(), _cpu()
        try:
            while not failed:
                with lock:
                    lo = next(it, None)
                if lo is None:
                    return
                try:
                    fn(lo, min(n, lo + rows), scratch)
                except BaseException:
                    failed.append(True)
                    raise
        finally:
            got.append((_cpu() - c0, _wall() - w0))

    with _blas_on_one_thread():
        with ThreadPoolExecutor(workers - 1) as ex:
            futures = [ex.submit(worker) for _ in range(workers - 1)]
            try:
                worker()
            finally:
                errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e
    acc = getattr(_share, "acc", None)
    if acc is not None:
        acc[0] += sum(c for c, _ in got)
        acc[1] += sum(w for _, w in got)


# CPU seconds / wall seconds of the threaded pool passes of the running query (per calling
# thread): well below 1 when another process holds a core (the workers wait for it)
_share = threading.local()
_wall = time.perf_counter
_cpu = time.thread_time
# a pass whose workers got less than this share of their wall time as CPU ran on a busy machine
_BUSY_SHARE = 0.8


def _others_running() -> int | None:
    """Runnable tasks of other processes now (``/proc/loadavg`` less this process's running
    threads, e.g. BLAS threads still spinning after the caller's last BLAS call; the median
    of three looks), or None where those files are missing."""
    seen = []
    for _ in range(3):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            own = 0
            for task in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{task}/stat") as f:
                        own += f.read().rpartition(")")[2].split()[0] == "R"
                except OSError:  # the thread ended meanwhile
                    pass
        except (OSError, ValueError, IndexError):
            return None
        seen.append(max(0, running - max(own, 1)))
    return sorted(seen)[1]


def _cores_free() -> bool:
    """Whether the cores numba's other threads need look free now (True where unknown: the
    timing then decides)."""
    others = _others_running()
    if others is None:
        return True
    try:
        total = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        total = os.cpu_count() or 1
    return others <= max(0, total - numba.get_num_threads())


def _buffer(scratch: dict, key, shape, dtype) -> np.ndarray:
    """A buffer of at least ``shape[0]`` rows kept in ``scratch`` (reused block to block)."""
    buf = scratch.get(key)
    if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:]:
        buf = scratch[key] = np.empty(shape, dtype=dtype)
    return buf[: shape[0]]


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


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _dot32(S, i, k):
    """float32 dot product of rows i and k of ``S`` (vectorised, float32 accumulators); rows
    of float16 bits (uint16) are widened exactly first, and their products are exact."""
    acc = np.float32(0.0)
    for j in range(S.shape[1]):
        acc += as_float(S[i, j]) * as_float(S[k, j])
    return acc


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _fold_rows(X, S, A, a, s2, tau, slack, min_d2, c, k, lo, hi):
    """Fold the center ``c`` (= row ``k`` of the pool, float64) into the running minima of
    rows ``lo .. hi - 1`` and return ``(max, argmax)`` of the updated minima over the
    candidates (``min_d2 >= 0``; strict > keeps the lowest index; ``(-1, -1)`` if none).

    With a screen (``S.shape[0] > 0``: float32 rows, or the float16 bits of the rows over a
    power of two ``s`` with ``s2 = s^2``; ``A = s2 |S_i|^2``, ``a = sqrt(A)``), a row is
    re-measured exactly only if its screened distance minus the bound
    ``tau (a_i + a_k)^2 + slack`` is below its current minimum; without, every row is.
    """
    screen = S.shape[0] > 0
    Ak = A[k] if screen else 0.0
    ak = a[k] if screen else 0.0
    best = -1.0
    arg = -1
    for i in range(lo, hi):
        m = min_d2[i]
        if m < 0.0:  # labeled or already chosen
            continue
        exact = True
        if screen:
            da = A[i] + Ak - 2.0 * s2 * np.float64(_dot32(S, i, k))
            r = a[i] + ak
            exact = da - (tau * r * r + slack) < m
        if exact:
            dd = _row_sqdist(X, i, c)
            if dd < m:
                m = dd
                min_d2[i] = dd
        if m > best:
            best = m
            arg = i
    return best, arg


# ---------------------------------------------------------------------------------------------
# the greedy loop: many steps per compiled call


@twins()
def _greedy_run(X, S, A, a, s2, tau, slack, min_d2, pick, pos, n_steps, chosen, cbest, carg):
    """Run greedy steps ``pos .. pos + n_steps - 1``: record ``pick``, lower the running minima,
    take the next pick. Returns the pick after the last step (-1 once ``chosen`` is full).

    ``S``, ``A``, ``a``, ``s2``: the screen of :func:`_fold_rows` (``S.shape[0] == 0``: none).
    """
    n = X.shape[0]
    n_chunks = cbest.shape[0]
    size = (n + n_chunks - 1) // n_chunks
    c = np.empty(X.shape[1])
    for s in range(n_steps):
        chosen[pos + s] = pick
        min_d2[pick] = -1.0
        if pos + s + 1 == chosen.shape[0]:
            return -1
        for j in range(X.shape[1]):
            c[j] = X[pick, j]
        for ch in prange(n_chunks):
            lo = ch * size
            cbest[ch], carg[ch] = _fold_rows(
                X, S, A, a, s2, tau, slack, min_d2, c, pick, lo, min(n, lo + size)
            )
        # chunks cover increasing rows: the first chunk holding the max has the lowest index
        best = -1.0
        pick = -1
        for ch in range(n_chunks):
            if cbest[ch] > best:
                best = cbest[ch]
                pick = carg[ch]
    return pick


# ---------------------------------------------------------------------------------------------
# the lazy greedy loop: only rows that could be the next pick are brought up to date


# (inlined into the one caller: compiled once, whatever literal types the call sites carry)
@njit(inline="always")
def _before(ka, ia, kb, ib):
    """Whether heap entry (ka, ia) comes before (kb, ib): larger key, then lower row."""
    return ka > kb or (ka == kb and ia < ib)


@njit(inline="always")
def _sift_down(key, row, size, pos):
    k, r = key[pos], row[pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and _before(key[c + 1], row[c + 1], key[c], row[c]):
            c += 1
        if not _before(key[c], row[c], k, r):
            break
        key[pos], row[pos] = key[c], row[c]
        pos = c
    key[pos], row[pos] = k, r


@njit(cache=True, nogil=True, inline="always")
def _lazy_heap(min_d2, seen, key, row):
    """The candidates (``min_d2 >= 0``) as a max-heap in ``key``/``row`` (larger bound first,
    then lower row), none of the chosen centers folded in yet (``seen = 0``); returns its
    size."""
    size = 0
    for i in range(min_d2.shape[0]):
        if min_d2[i] >= 0.0:
            key[size] = min_d2[i]
            row[size] = i
            seen[i] = 0
            size += 1
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(key, row, size, pos)
    return size


@njit(cache=True, nogil=True, inline="always")
def _lazy_top(X, min_d2, seen, key, row, size, C, nc):
    """Bring the heap's top row up to date (centers ``C[seen[i]:nc]``, each exact distance from
    :func:`_row_sqdist`) until the top stays first: then its bound is its exact running
    minimum and no other row can come before it, so it is the next pick (the lowest row among
    equal maxima). ``size >= 1``. Returns the number of distances measured."""
    measured = 0
    while True:
        i = row[0]
        measured += _catch_up(X, min_d2, seen, C, nc, i)
        key[0] = min_d2[i]
        _sift_down(key, row, size, 0)
        if row[0] == i:
            return measured


@njit(inline="always")
def _catch_up(X, min_d2, seen, C, nc, i):
    """Fold the centers ``C[seen[i]:nc]`` into row ``i``'s running minimum (exact distances
    from :func:`_row_sqdist`); returns how many were measured."""
    m = min_d2[i]
    for k in range(seen[i], nc):
        dd = _row_sqdist(X, i, C[k])
        if dd < m:
            m = dd
    measured = nc - seen[i]
    seen[i] = nc
    min_d2[i] = m
    return measured


# (the lazy loop's parts inline into it: one compile for a query; the sharded k-center of
# alamp_fast.distributed calls _lazy_heap and _lazy_top on their own)
@njit(inline="always")
def _heap_pop(key, row, size):
    """Remove the top of the heap; returns the new size."""
    size -= 1
    key[0], row[0] = key[size], row[size]
    _sift_down(key, row, size, 0)
    return size


@njit(cache=True, nogil=True)
def _lazy_run(X, min_d2, chosen, C, seen, key, row, share):
    """Greedy steps by lazy evaluation; ``chosen[0]`` holds the first pick.

    Every step lowers a row's running minimum only by folding in centers, so a row's stored
    minimum is an upper bound of its current one. The rows sit in a max-heap of those bounds
    (larger first, then lower index): the top row is brought up to date (the centers chosen
    since its last update, ``seen[i]`` of them folded so far, each exact distance from
    :func:`_row_sqdist`, the same numbers as the eager steps); if it still comes before the
    next top's bound it is the pick, otherwise it goes back in. Rows far from the next picks
    are never touched. ``C`` holds the chosen rows in float64, ``key``/``row`` are scratch
    of one entry per row.

    Returns ``(steps done, distances measured)``. It never measures more distances than the
    eager steps would (each row-center pair at most once), but each costs more (a float64
    distance on one thread against a float16 screen on all), so it stops early, with every
    row's ``min_d2`` up to date, once it measured more than ``share`` of the distances all
    ``b`` eager steps measure: the rows of this pool are then too much alike for the bounds
    to leave most of them alone, and the whole query costs at most about ``1 + 3 share``
    times the eager one. (A share of the steps done so far would hand over too early: rows
    whose bounds went stale while the picks covered far regions are each brought up to date
    once, a cost paid early that the later steps do not repeat.)
    """
    n, d = X.shape
    b = chosen.shape[0]
    first = chosen[0]
    min_d2[first] = -1.0
    for j in range(d):
        C[0, j] = X[first, j]
    size = _lazy_heap(min_d2, seen, key, row)
    nc = np.int64(1)
    evals = 0
    budget = share * size * (b - 1)
    while nc < b:
        evals += _lazy_top(X, min_d2, seen, key, row, size, C, nc)
        i = row[0]
        chosen[nc] = i
        min_d2[i] = -1.0
        for j in range(d):
            C[nc, j] = X[i, j]
        nc += 1
        size = _heap_pop(key, row, size)
        if evals > budget and nc < b:
            break
    if nc < b:  # bring every row up to date for the eager steps
        for t in range(size):
            _catch_up(X, min_d2, seen, C, nc, row[t])
    return nc, evals


def _greedy(
    X: np.ndarray, scr, min_d2: np.ndarray, first: int, b: int, busy: bool = False
) -> np.ndarray:
    """The ``b`` picks starting at ``first``; ``min_d2`` (updated in place) holds each row's
    exact squared distance to its nearest labeled row, -1 for labeled rows. ``scr``: the
    screen of :func:`_screen`, or None (every distance exact). ``busy``: another process
    seems to hold a core (start with the serial build).

    Lazy steps (:func:`_lazy_run`) first; the eager ones (:func:`_eager`) take over where
    those stop early. Both give the picks of the exact algorithm.
    """
    n, d = X.shape
    if b == 1 or _LAZY_MAX_SHARE <= 0 or b * d * 8 > _LAZY_MAX_BYTES:
        return _eager(X, scr, min_d2, first, b, busy)
    chosen = np.empty(b, dtype=np.int64)
    chosen[0] = first
    done, _ = _lazy_run(
        X,
        min_d2,
        chosen,
        np.empty((b, d)),
        np.empty(n, dtype=np.int64),
        np.empty(n),
        np.empty(n, dtype=np.int64),
        _LAZY_MAX_SHARE,
    )
    if done < b:  # min_d2 is up to date: the first maximum is the next pick
        chosen[done:] = _eager(X, scr, min_d2, int(np.argmax(min_d2)), b - done, busy)
    return chosen


def _eager(
    X: np.ndarray, scr, min_d2: np.ndarray, first: int, b: int, busy: bool = False
) -> np.ndarray:
    """:func:`_greedy` by eager steps: every step folds its pick into every row's minimum."""
    n, d = X.shape
    chosen = np.empty(b, dtype=np.int64)
    s2, slack = 1.0, _slack(d)
    if scr is None or b == 1:
        S, A, a, tau = np.empty((0, max(d, 1)), np.float32), np.empty(0), np.empty(0), 0.0
    else:
        S, A, a, tau = scr
        if _use_half(n, d, b):
            S, A, a, s2, tau, slack = _half_screen(S, a, tau, slack)
    args = (X, S, A, a, s2, tau, slack, min_d2)
    one = (np.empty(1), np.empty(1, dtype=np.int64))
    if _greedy_run.pick(X.size) is _greedy_run.serial:
        _greedy_run.serial(*args, first, 0, b, chosen, *one)
        return chosen
    n_chunks = min(n, 4 * numba.get_num_threads())
    many = (np.empty(n_chunks), np.empty(n_chunks, dtype=np.int64))
    if b < 4 * _PROBE_STEPS or _parallel.PARALLEL_MIN_WORK == 0:
        _greedy_run.parallel(*args, first, 0, b, chosen, *many)
        return chosen
    # A parallel region per step pays off on idle cores and loses much when another process
    # holds a core (a step then waits for the descheduled thread: 5-20x a serial step). Time
    # a few steps each way, then run segments with the faster build; its time per step is
    # watched segment by segment. The parallel build is timed first only when this query's
    # pool passes ran on free cores (``busy`` False); it is timed again (after 64 steps,
    # then 128, ...) only while the cores it needs look free, and the serial build is timed
    # again when the parallel one slows down.
    runs = {"parallel": (_greedy_run.parallel, many), "serial": (_greedy_run.serial, one)}
    per_step = {"parallel": math.inf}
    pick, pos = first, 0

    def run(name, k):
        nonlocal pick, pos
        kern, bufs = runs[name]
        t0 = time.perf_counter()
        pick = kern(*args, pick, pos, k, chosen, *bufs)
        per_step[name] = (time.perf_counter() - t0) / k
        pos += k

    if not busy:
        run("parallel", _PROBE_STEPS)
    run("serial", _RETIME_STEPS)  # (at idle each serial step costs about two parallel ones)
    recheck, since = _RECHECK_STEPS, 0
    while pos < b:
        cur = min(per_step, key=per_step.get)  # (ties: parallel)
        before = per_step[cur]
        k = min(_SEGMENT_STEPS, b - pos)
        run(cur, k)
        since += k
        if pos >= b:
            break
        due = since >= recheck
        if due:
            recheck, since = 2 * recheck, 0
        if cur == "parallel" and (due or per_step[cur] > 1.25 * before):
            run("serial", min(_RETIME_STEPS, b - pos))
        elif cur == "serial" and due and _cores_free():
            run("parallel", min(_RETIME_STEPS, b - pos))
    return chosen


# ---------------------------------------------------------------------------------------------
# the float32 screen: row norms, centring


@njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
def _scan(X, lo, hi, A, a, colsum):
    """Row norms (``A = |x|^2``, ``a = |x|``, float64) of rows ``lo .. hi - 1`` and their
    column sums (float64, into ``colsum``). A NaN/Inf in a row makes its ``A`` non-finite."""
    for j in range(X.shape[1]):
        colsum[j] = 0.0
    for i in range(lo, hi):
        s = 0.0
        for j in range(X.shape[1]):
            t = np.float64(X[i, j])
            s += t * t
            colsum[j] += t
        A[i] = s
        a[i] = np.sqrt(s)


@njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
def _row_norms(S, A, a):
    """``A = |S_i|^2`` and ``a = |S_i|`` (float64) for every row of ``S``."""
    for i in range(S.shape[0]):
        s = 0.0
        for j in range(S.shape[1]):
            t = np.float64(S[i, j])
            s += t * t
        A[i] = s
        a[i] = np.sqrt(s)


@njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
def _centre_rows(X, lo, hi, mu, S, A, a):
    """``S[i] = float32(X[i] - mu)`` and its norms (float64) for rows ``lo .. hi - 1``."""
    for i in range(lo, hi):
        s = 0.0
        for j in range(X.shape[1]):
            v = np.float32(np.float64(X[i, j]) - mu[j])
            S[i, j] = v
            t = np.float64(v)
            s += t * t
        A[i] = s
        a[i] = np.sqrt(s)


def _scan_pool(X: np.ndarray):
    """``(A, a, mean)`` of a float32 pool in one pass (threads over row blocks); raises
    ValueError naming the first NaN/Inf."""
    n, d = X.shape
    A = np.empty(n)
    a = np.empty(n)
    rows, workers = _plan(n, _INIT_BLOCK_ELEMS // max(d, 1), n * d)
    sums = np.zeros((-(-n // rows), d))
    _run_blocks(n, rows, workers, lambda lo, hi, _: _scan(X, lo, hi, A, a, sums[lo // rows]))
    if not math.isfinite(float(A.sum())):
        raise_non_finite(X, "features")
    return A, a, sums.sum(axis=0) / max(n, 1)


def _screen(X: np.ndarray, scan=None):
    """The float32 screen of ``X``: ``(S, A, a, tau)``, or None where it cannot be trusted.

    ``S`` is ``X`` itself for float32 rows near the origin (no copy; ``scan`` from
    :func:`_scan_pool` gives their norms and mean), otherwise the float32 rows centred at
    the pool mean.
    """
    n, d = X.shape
    if n == 0 or d == 0 or d > _SCREEN_MAX_D:
        return None
    if scan is not None:
        A, a, mu = scan
        mu2 = float(mu @ mu)
        spread2 = max(float(A.sum()) / n - mu2, 0.0)  # E|x - mu|^2 (only decides speed)
        centre = mu2 > _CENTRE_RATIO**2 * max(spread2, 1e-300)
    else:
        mu = X.mean(axis=0, dtype=np.float64)
        centre = True
    if centre:
        S = np.empty((n, d), dtype=np.float32)
        A = np.empty(n)
        a = np.empty(n)
        rows, workers = _plan(n, _INIT_BLOCK_ELEMS // d, n * d)
        with np.errstate(over="ignore", invalid="ignore"):
            _run_blocks(n, rows, workers, lambda lo, hi, _: _centre_rows(X, lo, hi, mu, S, A, a))
    else:
        S = X
    if not (np.isfinite(A).all() and float(a.max()) <= _SCREEN_MAX_NORM):
        return None
    return S, A, a, _tau(d, _U32)


# ---------------------------------------------------------------------------------------------
# the float16 screen of the greedy steps: half the bytes per step


@njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
def _half_rows(S, lo, hi, inv, s2, H, A, a):
    """``H[i]`` = the float16 bits of ``S[i] * inv`` (``inv`` a power of two: exact), ``A[i]``
    = ``s2 |H_i|^2`` (float64; ``s2 = 1 / inv^2``) and ``a = sqrt(A)``, rows ``lo .. hi - 1``."""
    for i in range(lo, hi):
        t = 0.0
        for j in range(S.shape[1]):
            h = to_half(np.float32(S[i, j] * inv))
            H[i, j] = h
            v = np.float64(as_float(h))
            t += v * v
        A[i] = t * s2
        a[i] = np.sqrt(A[i])


def _use_half(n: int, d: int, b: int) -> bool:
    """Whether the greedy steps screen through a float16 copy (:func:`_half_screen`)."""
    return (
        HAS_F16C
        and b >= _HALF_MIN_STEPS
        and d >= _HALF_MIN_D
        and n * d >= _HALF_MIN_ELEMS
        and 2 * n * d <= _HALF_MAX_BYTES
    )


def _half_screen(S: np.ndarray, a_s: np.ndarray, tau: float, slack: float):
    """The float16 screen ``(H, A, a, s2, tau, slack)`` of the float32 screen rows ``S``
    (norms ``a_s``) for :func:`_fold_rows`.

    ``H`` holds the float16 bits of ``S / s`` for the power of two ``s`` that puts the
    largest row norm just under ``2**15`` (so no value overflows float16's 65504). Its bound,
    with the float32 screen's ``tau`` and ``slack`` (which already cover the float32 dot
    product of any rows of norms ``a``):

    * each value rounds to float16 within ``u |v| + s 2**-25`` (``u = 2**-11``; below
      float16's normal range the absolute term), so ``|H_i s - S_i| <= u |S_i| + delta``
      with ``delta = sqrt(d) s 2**-25``, and the squared distance of two rows moves by at
      most ``(2u + u^2)(|S_i| + |S_k|)^2`` plus ``4 delta r + 4 delta^2`` terms; both are
      added with a 2x margin (``5u`` covers ``2 (2u + u^2)`` and the norms of ``H`` standing
      in for those of ``S``);
    * products of two float16 values are exact in float32, so the float32 dot product's
      rounding is the one the float32 screen's bound already covers.
    """
    n, d = S.shape
    amax = float(a_s.max()) if n else 0.0
    e = math.frexp(amax)[1] if amax > 0.0 else 0
    s = math.ldexp(1.0, e - 15)
    inv = np.float32(1.0 / s)  # a power of two within float32's range: exact
    H = np.empty((n, d), dtype=np.uint16)
    A = np.empty(n)
    a = np.empty(n)
    rows, workers = _plan(n, _INIT_BLOCK_ELEMS // d, n * d)
    s2 = s * s
    _run_blocks(n, rows, workers, lambda lo, hi, _: _half_rows(S, lo, hi, inv, s2, H, A, a))
    delta = math.sqrt(d) * s * 2.0**-25
    r = 2.0 * (max(float(a.max()), amax) + delta) * (1.0 + 4.0 * _U16)
    return H, A, a, s2, tau + 5.0 * _U16, slack + 2.0 * (4.0 * delta * r + 4.0 * delta * delta)


# ---------------------------------------------------------------------------------------------
# nearest labeled row: blocked GEMM screen + exact re-measure


@njit(cache=True, nogil=True)
def _nearest_block(X, lo, xn, V, l2, lmax, L64, tau, slack, out):
    """For rows lo .. lo + V.shape[0] - 1: the exact min over labeled rows of |X[i] - L[j]|^2.

    ``V[r, j]`` approximates ``-2 x'_i . l'_j`` (rows of the screen; from the GEMM) and
    ``l2[j] = |l'_j|^2``, so ``|x'_i|^2 + V[r, j] + l2[j]`` is the squared distance within
    ``E = tau (|x'_i| + lmax)^2 + slack`` (``xn[r] = |x'_i|``, ``lmax`` the largest
    ``|l'_j|``). Only a j with ``V[r, j] + l2[j] <= min_k (V[r, k] + l2[k]) + 2E`` can be
    nearest; those are re-measured exactly from the float64 labeled rows ``L64``.
    """
    nl = V.shape[1]
    for r in range(V.shape[0]):
        # four independent running minima: the compare-select chain is latency-bound
        u0 = u1 = u2 = u3 = np.float64(V[r, 0]) + l2[0]
        j4 = nl - nl % 4
        for j in range(0, j4, 4):
            v0 = np.float64(V[r, j]) + l2[j]
            v1 = np.float64(V[r, j + 1]) + l2[j + 1]
            v2 = np.float64(V[r, j + 2]) + l2[j + 2]
            v3 = np.float64(V[r, j + 3]) + l2[j + 3]
            u0 = v0 if v0 < u0 else u0
            u1 = v1 if v1 < u1 else u1
            u2 = v2 if v2 < u2 else u2
            u3 = v3 if v3 < u3 else u3
        for j in range(j4, nl):
            v0 = np.float64(V[r, j]) + l2[j]
            u0 = v0 if v0 < u0 else u0
        vmin = min(min(u0, u1), min(u2, u3))
        e = xn[r] + lmax
        thr = vmin + 2.0 * (tau * e * e + slack)
        best = np.inf
        i = lo + r
        for j in range(nl):
            if np.float64(V[r, j]) + l2[j] <= thr:
                dd = _row_sqdist(X, i, L64[j])
                if dd < best:
                    best = dd
        out[r] = best


def _search(X: np.ndarray, nl: int, block, L64: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Exact nearest-labeled squared distances ``out`` of all rows of ``X``: per row block,
    ``block(lo, hi, scratch)`` gives the GEMM input rows ``Xb``, their norms ``xn`` and the
    labeled side ``(m2LT = -2 L'^T, l2, lmax, tau)`` of the same precision; one GEMM and one
    screening pass (:func:`_nearest_block`) follow, block after block on each thread."""
    n, d = X.shape
    slack = _slack(d)
    rows, workers = _plan(n, _INIT_BLOCK_ELEMS // max(nl, d, 1), n * d)

    def run(lo, hi, scratch):
        Xb, xn, (m2LT, l2, lmax, tau) = block(lo, hi, scratch)
        V = _buffer(scratch, ("V", m2LT.dtype), (hi - lo, nl), m2LT.dtype)
        np.matmul(Xb, m2LT, out=V)
        _nearest_block(X, lo, xn, V, l2, lmax, L64, tau, slack, out[lo:hi])

    _run_blocks(n, rows, workers, run)
    return out


def _labeled_side(Lg: np.ndarray, tau: float):
    """``(-2 Lg^T, |Lg|^2, max |Lg|, tau)`` for the search's GEMM (``Lg`` the screen's rows
    of the labeled set, float32 or float64), or None if a product could overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        l2 = np.einsum("ij,ij->i", Lg, Lg, dtype=np.float64)
        lmax = float(np.sqrt(l2.max()))
    if Lg.dtype == np.float32 and not (np.isfinite(lmax) and lmax <= _SCREEN_MAX_NORM):
        return None
    return np.ascontiguousarray(Lg.T) * Lg.dtype.type(-2), l2, lmax, tau  # exact scaling


def _nearest_screened(X: np.ndarray, scr, idx: np.ndarray) -> np.ndarray:
    """Exact squared distance of every row of ``X`` to its nearest row ``X[idx]``, searched
    through the pool's screen ``scr`` (its rows and norms serve both sides of the GEMM)."""
    n = X.shape[0]
    out = np.empty(n, dtype=np.float64)
    if idx.size == 0:
        out.fill(np.inf)
        return out
    S, A, a, tau = scr
    side = _labeled_side(S[idx], tau)
    if side is None:  # (cannot happen: the screen's rows passed the same test)
        return _nearest_d2(X, X[idx])
    L64 = np.ascontiguousarray(X[idx], dtype=np.float64)
    return _search(X, idx.size, lambda lo, hi, _: (S[lo:hi], a[lo:hi], side), L64, out)


def _nearest_d2(X: np.ndarray, L_raw: np.ndarray) -> np.ndarray:
    """Exact squared distance of every row of ``X`` to its nearest row of ``L_raw`` (float64).

    Row blocks of ``X`` meet the labeled rows in one BLAS GEMM each (float32 for float32
    input, against ``-2 L'``), on data centred at the labeled mean where the rows lie far
    from the origin; a pass then re-measures exactly every labeled row that the GEMM's
    rounding bound cannot rule out, so the result is the exact minimum of
    :func:`_row_sqdist`, whichever rows it is split into (``min`` over two labeled sets
    equals one search over both). Blocks run on threads with BLAS on one thread (one pool at
    a time). Also used per chunk by :mod:`alamp_fast.distributed`.
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
    sides = {}
    for dt in (
        (np.float32, np.float64) if X.dtype == np.float32 and d < _SCREEN_MAX_D else (np.float64,)
    ):
        m = np.zeros(d) if mu is None else mu.astype(dt).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            Lg = (L64 - m).astype(dt)
        side = _labeled_side(Lg, _tau(d, _U32 if dt == np.float32 else _U64))
        if side is not None:
            sides[dt] = (None if mu is None else m.astype(dt), side)

    def block(lo, hi, scratch):
        rows = X[lo:hi]
        m = hi - lo
        x2 = _buffer(scratch, "x2", (m,), np.float64)
        xn = _buffer(scratch, "xn", (m,), np.float64)
        for dt, (mu_g, side) in sides.items():
            Xb = rows.astype(dt, copy=False)
            if mu_g is not None:
                with np.errstate(over="ignore", invalid="ignore"):
                    Xb = Xb - mu_g
            _row_norms(Xb, x2, xn)
            if dt == np.float64 or float(xn.max()) <= _SCREEN_MAX_NORM:
                return Xb, xn, side  # (NaN from an overflow fails the test too)
        raise AssertionError("unreachable: the float64 side always exists")

    return _search(X, L64.shape[0], block, L64, out)


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

    def _nearest(self, X: np.ndarray, lab: np.ndarray, search) -> np.ndarray:
        """min_d2 for ``lab`` (a copy the greedy loop may change); ``search(rows)`` gives
        every pool row's exact squared distance to its nearest of ``X[rows]``."""
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
            np.minimum(min_d2, search(new), out=min_d2)
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
    rows. The first nearest-labeled search is a blocked BLAS GEMM; the steps are lazy (only
    rows that could be the next pick are measured again), handing over to eager steps of
    a float32 (or float16) dot product per row where that is cheaper. The GEMM and the dot
    products are only screens, with every distance that could matter re-measured exactly
    (see the module docstring). Extra memory: a few float64 per row and ``b x n_features``
    float64 (the chosen rows; above 256 MiB the steps are eager), plus a float32 centred
    copy of the pool when its rows lie far from the origin or the input is float64, and a
    float16 copy (half the float32 pool, up to 4 GiB) when the eager steps take over on a
    pool of 2**18 values or more. Features whose squared magnitudes overflow float64 (above
    about 1e150) raise ``ValueError``.

    Threads: on pools of about 1e6 values and more, the passes over the pool (and the GEMM
    blocks) run on ``numba.get_num_threads()`` Python threads with BLAS limited to one
    thread meanwhile (process-wide, through threadpoolctl; restored on return). The lazy
    steps run on one thread; eager steps, where they take over, on numba's threads while
    that is faster than one thread (serial from the start when another process seems to
    hold a core).

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> X = np.array([[0.0], [1.0], [5.0], [10.0]])
    >>> af.kcenter_greedy(X, [0], 2).tolist()
    [3, 2]
    """
    _share.acc = [0.0, 0.0]  # CPU and wall seconds of this query's threaded pool passes
    try:
        return _kcenter_greedy(features, labeled, b, state)
    finally:
        _share.acc = None


def _kcenter_greedy(features, labeled, b, state):
    X = as_float_array(features, "features", 2)
    if X.dtype == np.float16:
        X = X.astype(np.float32)
    # float32: the screen's row norms and mean in the same pass as the NaN/Inf check
    scan = _scan_pool(X) if X.dtype == np.float32 and X.size else None
    if scan is None:
        check_finite(X, "features")
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
    scr = _screen(X, scan) if b > 1 or lab.size else None

    def search(rows):
        return _nearest_screened(X, scr, rows) if scr is not None else _nearest_d2(X, X[rows])

    if state is not None:
        min_d2 = state._nearest(X, lab, search)
    elif lab.size:
        min_d2 = search(lab)
        min_d2[lab] = -1.0
    else:
        min_d2 = np.full(n, np.inf)
    # first maximum: lowest index among ties (row 0 when nothing is labeled)
    first = int(np.argmax(min_d2))
    cpu, wall = _share.acc
    # both signals where both exist: this process's own threads (BLAS still spinning after
    # the caller's last call) slow the passes but end within ~0.1 s
    busy = (wall <= 0 or cpu < _BUSY_SHARE * wall) and not _cores_free()
    return _greedy(X, scr, min_d2, first, b, busy)
