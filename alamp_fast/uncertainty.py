"""Per-sample uncertainty from class probabilities: margin, top-2, entropy, least confidence.

All functions take ``probs`` of shape ``(n_samples, n_classes)``, float16/32/64. Rows need not
sum to 1, so SVM decision values work for :func:`margin` and :func:`top2_margin`. Outputs are
float32 for float16/float32 input and float64 for float64 input; float16 is widened to float32
exactly before any arithmetic, so ``margin`` equals ``np.float32(top1) - np.float32(top2)``.

The kernels make one pass over ``probs`` and also report whether a row held NaN or Inf, so the
finiteness check costs no second pass over the matrix.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import numpy_route, twins
from alamp_fast._simd import (
    HAS_F16C,
    as_float,
    lanes_top2_16,
    lanes_top2_32,
    lanes_top2_64,
)
from alamp_fast._validate import as_float_array, check_n_classes, raise_non_finite

__all__ = ["margin", "top2_margin", "entropy", "least_confidence"]

# float16 input is widened to float32 in row blocks of this many elements, so the float32 copy
# stays in cache-sized pieces instead of doubling the memory of a large pool.
_F16_BLOCK_ELEMS = 1 << 20

# Rows are split into this many chunks per call so each thread reuses one scratch buffer.
_N_ROW_CHUNKS = 256
# argmax travels through the SIMD lanes as a float: exact below 2**24 columns for float32
_MAX_SIMD_COLS = 1 << 24


@njit(inline="always")
def _row_top2(P, i, simd_bytes, scratch):
    """(top1, top2, first argmax, chk) of row i; chk != 0 iff the row holds NaN/Inf.

    ``P`` holds float32/float64 rows, or the uint16 bits of float16 rows (compared as integer
    keys in the vector lanes, widened to float32 in the scalar scan, F16C); ``scratch`` has
    the dtype of the results.
    ``simd_bytes`` (from :func:`_simd_bytes`) picks the widest vector the row fills.
    """
    C = P.shape[1]
    simd_cols = C  # the vector scans cover the whole row
    if simd_bytes == 64:
        lanes_top2_64(P, i, scratch)
    elif simd_bytes == 32:
        lanes_top2_32(P, i, scratch)
    elif simd_bytes == 16:
        lanes_top2_16(P, i, scratch)
    else:
        v0 = as_float(P[i, 0])
        scratch[0] = v0
        scratch[1] = -np.inf
        scratch[2] = 0
        scratch[3] = v0 - v0
        simd_cols = 1
    # read back through the typed scratch so a, b keep the compared dtype (a float64 -inf
    # literal would turn every float32 comparison below into a float64 one)
    a = scratch[0]
    b = scratch[1]
    k = np.int64(scratch[2])
    chk = scratch[3]
    # the scalar scan (rows shorter than the narrowest vector); strict > keeps the first argmax
    for j in range(simd_cols, C):
        v = as_float(P[i, j])
        # v - v is 0 for finite v and NaN for NaN/Inf: a row flag without a branch
        chk += v - v
        # selects, not branches (random rows mispredict): the vector lanes' update
        up = v > a
        lo = a if a < v else v
        b = b if b > lo else lo
        k = j if up else k
        a = v if up else a
    return a, b, k, chk


@njit(inline="always")
def _simd_bytes(C, itemsize):
    """Widest vector (64, 32, 16 bytes) that a row of ``C`` values of ``itemsize`` bytes
    fills, or 0 for the scalar scan."""
    if C >= _MAX_SIMD_COLS:
        return 0
    for nbytes in (64, 32, 16):
        # at most 16 lanes (float16 keys: 32 bytes), so the lanes merge in as few steps as
        # float32's (32 lanes of float16 keys were slower at 10-100 columns)
        if C >= nbytes // itemsize and nbytes // itemsize <= 16:
            return nbytes
    return 0


@twins()
def _top2_kernel(P, margin_out, top_out, top1_out, bad_rows):
    """Per row: (top1 - top2, first argmax, and top1 if ``top1_out`` has room); flags rows
    holding NaN/Inf in ``bad_rows``. ``P`` is float32/float64, or float16 as its uint16 bits
    (F16C hosts only): compared as integers in the vector lanes, widened to ``margin_out``'s
    float32 for the scalar scan of short rows and for the results (top1 of a zero maximum
    comes back as +0.0 from the lanes)."""
    n = P.shape[0]
    simd_bytes = _simd_bytes(P.shape[1], P.itemsize)
    n_chunks = min(n, _N_ROW_CHUNKS)
    size = (n + n_chunks - 1) // max(n_chunks, 1)
    for ch in prange(n_chunks):
        scratch = np.empty(4, dtype=margin_out.dtype)
        for i in range(ch * size, min(n, (ch + 1) * size)):
            a, b, k, chk = _row_top2(P, i, simd_bytes, scratch)
            # + (a - a), i.e. + 0.0 for finite a: a zero margin is +0.0 whatever the signs of
            # the tied zeros (the vector lanes may pair them either way)
            margin_out[i] = (a - b) + (a - a)
            top_out[i] = k
            if top1_out.shape[0]:
                top1_out[i] = a
            bad_rows[i] = chk != 0.0


@twins()
def _widen_f16(H, out):
    """out = float32(H) for float16 bits H (uint16), exact: integer bit moves LLVM vectorises,
    no F16C needed (numpy's astype(float32) ran at 2-5 ns per element here)."""
    for i in prange(H.shape[0]):
        for j in range(H.shape[1]):
            h = np.int32(H[i, j])
            sign = (h & 0x8000) << 16
            e = (h >> 10) & 0x1F
            mant = h & 0x3FF
            normal = sign | ((e + 112) << 23) | (mant << 13)
            special = sign | 0x7F800000 | (mant << 13)  # Inf / NaN
            bits = special if e == 31 else normal
            # zero and subnormals: mant * 2**-24, exact in float32
            sub = np.float32(mant) * np.float32(5.9604644775390625e-08)
            sub = -sub if sign else sub
            v = np.int32(bits).view(np.float32)
            out[i, j] = sub if e == 0 else v


@twins()
def _entropy_kernel(P, out, bad_rows):
    n, C = P.shape
    for i in prange(n):
        s = 0.0
        bad = False
        for j in range(C):
            p = np.float64(P[i, j])
            if not (p >= 0.0 and p < np.inf):
                bad = True
            elif p > 0.0:
                s -= p * np.log(p)
        out[i] = s
        bad_rows[i] = bad


def _probs(probs) -> np.ndarray:
    P = as_float_array(probs, "probs", 2)
    check_n_classes(P, "probs")
    return P


def _row_blocks(P: np.ndarray, small_as_float64: bool):
    """Yield (start, float32/64 block) over the rows; float16 is widened blockwise.

    With ``small_as_float64``, a small input (:func:`numpy_route`) is widened to float64 whole
    (exact): a kernel that computes in float64 anyway then needs one compiled build for every
    input dtype.
    """
    if small_as_float64 and numpy_route(P.size):
        yield 0, P.astype(np.float64, copy=False)
        return
    if P.dtype != np.float16:
        yield 0, P
        return
    rows = max(1, _F16_BLOCK_ELEMS // max(P.shape[1], 1))
    buf = np.empty((min(rows, P.shape[0]), P.shape[1]), dtype=np.float32)
    for start in range(0, P.shape[0], rows):
        H = P[start : start + rows].view(np.uint16)
        block = buf[: H.shape[0]]
        _widen_f16(H, block, work=block.size)
        yield start, block


def _run_rowwise(
    kernel, P: np.ndarray, outs: list[np.ndarray], *extra: np.ndarray, small_as_float64=False
) -> None:
    """Run a row kernel over ``P`` (float16 widened blockwise); raise on NaN/Inf/negatives.

    ``outs`` are per-row outputs, sliced with the row blocks; an ``extra`` output is sliced
    too when it has one entry per row (else passed as is).
    """
    n = P.shape[0]
    bad = np.empty(n, dtype=np.bool_)
    for start, block in _row_blocks(P, small_as_float64):
        stop = start + block.shape[0]
        more = [e[start:stop] if e.shape[0] == n else e for e in extra]
        kernel(block, *[o[start:stop] for o in outs], *more, bad[start:stop], work=block.size)
    if bad.any():
        row = int(np.argmax(bad))
        if kernel is _entropy_kernel and np.isfinite(P[row]).all():
            col = int(np.argmax(P[row] < 0))
            raise ValueError(
                f"entropy needs non-negative probabilities; probs[{row}, {col}] = {P[row, col]!r}"
            )
        raise_non_finite(P, "probs", first_row=row)


def _top2_numpy(P: np.ndarray, margin_out, top_out, top1_out) -> None:
    """:func:`_top2_kernel`'s results with numpy (small inputs: nothing to compile), bitwise:
    top1 at the first argmax, top2 the largest of the rest, a zero margin as +0.0."""
    W = P.astype(np.float32) if P.dtype == np.float16 else P  # exact
    finite = np.isfinite(W)
    if not finite.all():
        raise_non_finite(P, "probs", finite)
    rows = np.arange(W.shape[0])
    top = np.argmax(W, axis=1)
    a = W[rows, top]
    rest = W.copy()
    rest[rows, top] = -np.inf
    np.subtract(a, rest.max(axis=1), out=margin_out)
    margin_out += 0  # -0.0 -> +0.0, as the kernel
    top_out[:] = top
    if top1_out.shape[0]:
        top1_out[:] = a


def _top2(P: np.ndarray, want_top1: bool):
    n = P.shape[0]
    margin_out = np.empty(n, dtype=_out_dtype(P))
    top_out = np.empty(n, dtype=np.int64)
    top1_out = np.empty(n if want_top1 else 0, dtype=margin_out.dtype)
    if numpy_route(P.size):
        _top2_numpy(P, margin_out, top_out, top1_out)
    elif P.dtype == np.float16 and HAS_F16C:
        bad = np.empty(n, dtype=np.bool_)
        _top2_kernel(P.view(np.uint16), margin_out, top_out, top1_out, bad, work=P.size)
        if bad.any():
            raise_non_finite(P, "probs", first_row=int(np.argmax(bad)))
    else:  # float32/64; float16 without F16C is widened to float32 block by block
        _run_rowwise(_top2_kernel, P, [margin_out, top_out], top1_out)
    if n and not np.isfinite(margin_out).all():
        # finite inputs, infinite difference: top1 - top2 overflowed the output dtype
        i = int(np.argmin(np.isfinite(margin_out)))
        top1, top2 = np.sort(P[i].astype(np.float64))[::-1][:2]
        raise ValueError(
            f"probs[{i}]: the top-2 margin {top1!r} - ({top2!r}) overflows "
            f"{margin_out.dtype}; pass float64 values or rescale the rows"
        )
    return margin_out, top_out, top1_out


def _out_dtype(P: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if P.dtype == np.float64 else np.dtype(np.float32)


@dispatch("top2_margin")
def top2_margin(probs):
    """Top-2 margin and predicted class in one pass.

    Parameters
    ----------
    probs : array of shape (n_samples, n_classes), float16/32/64
        Class probabilities (or decision values: rows need not sum to 1). ``n_classes >= 2``.

    Returns
    -------
    margin : (n_samples,) float32 (float64 for float64 input)
        ``P(c1|x) - P(c2|x)``, the gap between the two largest values of the row (0 when the
        largest value occurs twice).
    top_class : (n_samples,) int64
        The argmax of the row; ties go to the lowest class index, as ``np.argmax``.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> m, top = af.top2_margin(np.array([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2]]))
    >>> m.round(6).tolist(), top.tolist()
    ([0.5, 0.0], [1, 0])
    """
    P = _probs(probs)
    margin_out, top_out, _ = _top2(P, want_top1=False)
    return margin_out, top_out


@dispatch("margin")
def margin(probs):
    """``P(c1|x) - P(c2|x)`` per row: the top-2 margin (low = uncertain).

    See :func:`top2_margin`, which also returns the predicted class at no extra cost.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> af.margin(np.array([[0.1, 0.7, 0.2]], dtype=np.float32)).round(6).tolist()
    [0.5]
    """
    return top2_margin(probs)[0]


@dispatch("entropy")
def entropy(probs):
    """Shannon entropy ``-sum_c p_c log p_c`` per row (natural log; high = uncertain).

    ``0 log 0`` is taken as 0. Rows are used as given (not renormalised), so pass
    probabilities; a negative entry raises ``ValueError``. Accumulated in float64.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> float(af.entropy(np.array([[0.5, 0.5]]))[0]) == float(np.log(2))
    True
    """
    P = _probs(probs)
    out = np.empty(P.shape[0], dtype=np.float64)
    _run_rowwise(_entropy_kernel, P, [out], small_as_float64=True)
    return out.astype(_out_dtype(P), copy=False)


@dispatch("least_confidence")
def least_confidence(probs):
    """``1 - max_c P(c|x)`` per row (high = uncertain).

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> af.least_confidence(np.array([[0.25, 0.75]])).tolist()
    [0.25]
    """
    _, _, top = _top2(_probs(probs), want_top1=True)
    return (top.dtype.type(1) - top).astype(top.dtype, copy=False)
