"""k-center greedy on FAISS (optional backend: ``pip install faiss-cpu``, or ``faiss-gpu``).

:func:`kcenter_greedy_faiss` runs the same greedy rule as :func:`alamp_fast.kcenter_greedy`
with FAISS doing the distance work:

* ``index="flat"``: the nearest-labeled search is an exact ``IndexFlatL2`` search, each
  greedy step one ``faiss.pairwise_distances`` of the new center against the pool. FAISS
  computes squared distances in float32 as ``|x|^2 + |c|^2 - 2 x.c``; the nearest labeled row
  it returns is then re-measured exactly (float64), but which row is nearest, and every
  per-step distance, carry float32 rounding.
* ``index="hnsw"``: the nearest-labeled search is approximate (``IndexHNSWFlat`` over the
  labeled rows, for pools of 1e7 and more where even one GEMM pass is long); a row whose
  true nearest labeled row HNSW misses gets a larger starting distance. The greedy steps are
  those of ``"flat"``.

Default per size
----------------
``alamp_fast.kcenter_greedy`` stays the default at every size measured: in
``benchmarks/results/faiss_cpu.json`` (2-core CPU, 200 labeled, b = 20, d = 512) FAISS
``"flat"`` took 4.5x its time at 1e5 rows and 5.4x at 1e6, and ``"hnsw"`` 10.5x and 11.6x
(HNSW pays off only when the labeled set is large; the nearest-labeled search against 200
rows is a small GEMM, and the lazy greedy steps measure few rows). Pools of 1e7 rows and more
did not fit this machine's memory and were not measured.

Exactness contract
------------------
``alamp_fast.kcenter_greedy`` (the default, numba) is exact: its picks follow exact float64
distances, whatever the data's offset or magnitude. ``"flat"`` gives the same picks except
where two candidates' (or two labeled rows') squared distances agree to within float32
rounding of ``|x|^2`` (near ties, and features far from the origin relative to their spread);
``"hnsw"`` can further differ wherever HNSW misses a nearest labeled row. Both are measured
against the exact algorithm by ``benchmarks/bench_faiss.py``, which reports their covering
radius against the exact one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alamp_fast._validate import as_float_array, as_index_array, check_budget, check_finite
from alamp_fast.coreset import _nearest_d2, _row_sqdist

__all__ = ["kcenter_greedy_faiss", "covering_radius", "faiss_available"]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "kcenter_greedy_faiss needs FAISS: pip install faiss-cpu (or faiss-gpu)"
        ) from exc
    return faiss


@njit(cache=True)
def _exact_to_kernel(X, L64, nearest, out):
    for i in range(X.shape[0]):
        out[i] = _row_sqdist(X, i, L64[nearest[i]])


def _exact_to(X: np.ndarray, L64: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Exact squared distance of each row to the labeled row FAISS chose for it."""
    out = np.empty(X.shape[0])
    _exact_to_kernel(X, L64, np.ascontiguousarray(nearest, dtype=np.int64), out)
    return out


def kcenter_greedy_faiss(
    features, labeled, b, *, index: str = "flat", hnsw_m: int = 32, ef_search: int = 64
):
    """k-center greedy with FAISS computing the distances (see the module docstring).

    Parameters
    ----------
    features, labeled, b
        As for :func:`alamp_fast.kcenter_greedy` (float16 is widened to float32, float64
        is searched in float32: FAISS indexes hold float32).
    index : "flat" or "hnsw"
        Exact (``IndexFlatL2``) or approximate (``IndexHNSWFlat``) nearest-labeled search.
    hnsw_m, ef_search : int
        HNSW graph degree and search breadth (``index="hnsw"`` only).

    Returns
    -------
    (b,) int64 indices in the order chosen.
    """
    if index not in ("flat", "hnsw"):
        raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
    faiss = _faiss()
    X = as_float_array(features, "features", 2)
    check_finite(X, "features")
    if X.dtype == np.float16:
        X = X.astype(np.float32)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X32.shape
    lab = as_index_array(labeled, "labeled", n)
    b = check_budget(b, n - lab.size, "unlabeled candidates")
    chosen = np.empty(b, dtype=np.int64)
    if b == 0:
        return chosen
    if lab.size:
        L = np.ascontiguousarray(X32[lab])
        if index == "flat":
            ix = faiss.IndexFlatL2(d)
        else:
            ix = faiss.IndexHNSWFlat(d, hnsw_m)
            ix.hnsw.efSearch = ef_search
        ix.add(L)
        _, nearest = ix.search(X32, 1)
        min_d2 = _exact_to(X, X[lab].astype(np.float64), nearest[:, 0])
        min_d2[lab] = -1.0
        pick = int(np.argmax(min_d2))
    else:
        min_d2 = np.full(n, np.inf)
        pick = 0
    for step in range(b):
        chosen[step] = pick
        min_d2[pick] = -1.0
        if step + 1 == b:
            break
        dist = faiss.pairwise_distances(X32[pick : pick + 1], X32)[0]
        np.minimum(min_d2, dist, out=min_d2, where=min_d2 >= 0)
        pick = int(np.argmax(min_d2))
    return chosen


def covering_radius(features, centers) -> float:
    """max over rows of the exact Euclidean distance to the nearest of ``centers``."""
    X = as_float_array(features, "features", 2)
    if X.dtype == np.float16:
        X = X.astype(np.float32)
    c = np.asarray(centers, dtype=np.int64)
    return float(np.sqrt(_nearest_d2(X, X[c]).max()))
