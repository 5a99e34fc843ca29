"""GPU k-center greedy: one fused pass over the features per step, ``kernels/kcenter.cu``.

The twin of :mod:`alamp_fast.coreset`: squared distances in float64, the running nearest
distance updated in place, argmax with the lowest row on ties. Each step is one kernel that
also picks the next center on the device (the last block reduces the per-block partials), so
the host only enqueues ``b - 1`` launches. The initial distances to the labeled set: nearest
labeled row by cuBLAS GEMM (``|l|^2 - 2 x.l``, CuPy matmul) in row blocks on features centred
at the labeled mean (the CPU's numerics), then the distance to it recomputed exactly.
Selections equal the CPU's unless two candidates are within float64 rounding of each other
(the sums are accumulated in a different order).
"""

from __future__ import annotations

import numpy as np

from alamp_fast._validate import check_budget
from alamp_fast.cuda import _checks, _instantiations, _kernels

__all__ = ["kcenter_greedy"]

_BLOCK = 256
# the center is kept in shared memory as float64 up to this many features (48 KB without
# opting in to more); longer rows read it through L1/L2
_SMEM_CENTER_MAX = 6000
# GEMM block of the initial pass: at most this many (rows x labeled) elements, and at most a
# quarter of the free device memory
_INIT_BLOCK_ELEMS = 1 << 28


def name_expressions() -> list[str]:
    return _instantiations.kcenter()


def _row_launch(X, per_lane: int = 4):
    n, d = X.shape
    vec = _kernels.vector_width(X, d)
    group = _kernels.lanes_per_row(d // vec, per_lane)
    rows_per_block = (_BLOCK // 32) * (32 // group)
    return vec, group, rows_per_block


def nearest_labeled_d2(X, labeled, *, block_elems: int | None = None):
    """Squared distance (float64) of every row of ``X`` to its nearest labeled row."""
    import cupy

    n, d = X.shape
    gemm_dtype = np.float64 if X.dtype == np.float64 else np.float32
    L = cupy.ascontiguousarray(X[labeled])
    # the CPU's numerics (alamp_fast.coreset._nearest_d2): centre at the labeled mean, rounded
    # to the features' dtype, before the GEMM, whose rounding error scales with |x| |l|
    # (features offset by 1000 otherwise get the wrong nearest point in float32)
    mu = L.astype(np.float64).mean(axis=0).astype(X.dtype)
    Lc = L - mu
    l2 = (Lc.astype(np.float64) ** 2).sum(axis=1).astype(X.dtype).astype(gemm_dtype)
    Lg = Lc.astype(gemm_dtype, copy=False)
    out = cupy.empty(n, dtype=np.float64)
    if block_elems is None:
        free, _ = cupy.cuda.runtime.memGetInfo()
        block_elems = min(_INIT_BLOCK_ELEMS, free // 4 // np.dtype(gemm_dtype).itemsize)
    rows = max(1, int(block_elems) // max(labeled.size, d, 1))
    vec, group, rows_per_block = _row_launch(X)
    kernel = _kernels.function("kcenter", f"dist_to_rows<{_kernels.CTYPE[X.dtype]}, {vec}>")
    for start in range(0, n, rows):
        block = X[start : start + rows]
        m = block.shape[0]
        g = (block - mu).astype(gemm_dtype, copy=False) @ Lg.T
        g *= -2
        g += l2
        nearest = cupy.argmin(g, axis=1)
        del g
        kernel(
            (_kernels.grid_size(m, rows_per_block, kernel, _BLOCK),),
            (_BLOCK,),
            (block, np.int64(m), np.int32(d), np.int32(group), L, nearest, out[start : start + m]),
        )
    return out


def kcenter_greedy(features, labeled, b):
    """GPU :func:`alamp_fast.kcenter_greedy`: ``(b,)`` CuPy int64 indices in the order chosen.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> X = cupy.asarray([[0.0], [1.0], [5.0], [10.0]])
    >>> afc.kcenter_greedy(X, cupy.asarray([0]), 2).get().tolist()
    [3, 2]
    """
    import cupy

    X = _checks.float_array(features, "features", 2)
    if X.size and not bool(cupy.isfinite(X).all()):
        _checks.raise_non_finite_matrix(X, "features")
    n, d = X.shape
    lab = _checks.index_array(labeled, "labeled", n)
    b = check_budget(b, n - lab.size, "unlabeled candidates")
    chosen = cupy.empty(b, dtype=np.int64)
    if b == 0:
        return chosen
    if lab.size:
        min_d2 = nearest_labeled_d2(X, lab)
        min_d2[lab] = -1.0
        # first maximum: the lowest row among equal distances
        pick = int(cupy.flatnonzero(min_d2 == min_d2.max())[0])
    else:
        min_d2 = cupy.full(n, np.inf)
        pick = 0
    chosen[0] = pick
    min_d2[pick] = -1.0
    if b == 1:
        return chosen

    center = X[pick].astype(np.float64)
    vec, group, rows_per_block = _row_launch(X)
    smem = d <= _SMEM_CENTER_MAX
    kernel = _kernels.function(
        "kcenter", f"kcenter_step<{_kernels.CTYPE[X.dtype]}, {vec}, {'true' if smem else 'false'}>"
    )
    shared = d * 8 if smem else 0
    grid = _kernels.grid_size(n, rows_per_block, kernel, _BLOCK, shared)
    part_best = cupy.empty(grid, dtype=np.float64)
    part_arg = cupy.empty(grid, dtype=np.int64)
    counter = cupy.zeros(1, dtype=np.uint32)
    for step in range(1, b):
        kernel(
            (grid,),
            (_BLOCK,),
            (
                X,
                np.int64(n),
                np.int32(d),
                np.int32(group),
                min_d2,
                center,
                chosen,
                np.int64(step),
                part_best,
                part_arg,
                counter,
            ),
            shared_mem=shared,
        )
    return chosen
