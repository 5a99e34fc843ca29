"""Input checks shared by the public API.

Every check raises ``ValueError`` or ``TypeError`` with the offending value in the message, at
the public boundary, so the kernels below can assume clean, contiguous input.
"""

from __future__ import annotations

import operator

import numpy as np

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def out_dtype(*dtypes: np.dtype) -> np.dtype:
    """float64 if any input is float64, else float32 (float16 is computed in float32)."""
    return (
        np.dtype(np.float64)
        if any(np.dtype(d) == np.float64 for d in dtypes)
        else np.dtype(np.float32)
    )


def _is_sparse(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("scipy.sparse") or (
        mod.split(".")[0] in ("sparse", "pydata_sparse") and hasattr(x, "todense")
    )


def reject_unsupported(x, name: str) -> None:
    """TypeError for inputs numpy cannot turn into a numeric array: scipy.sparse matrices
    (``np.asarray`` makes them 0-d object arrays) and other non-array objects."""
    if _is_sparse(x):
        raise TypeError(
            f"{name} is a sparse matrix ({type(x).__module__}.{type(x).__name__}, shape "
            f"{getattr(x, 'shape', '?')}); sparse input is not supported: convert it to a "
            f"dense array first, e.g. {name}.toarray()"
        )


def _check_object(arr: np.ndarray, x, name: str) -> None:
    """TypeError for an object that numpy wraps as a 0-d object array (not an array-like)."""
    if arr.dtype == object and arr.ndim == 0:
        obj = arr.item()  # the wrapped object, also when x is that 0-d array already
        what = type(obj).__module__ + "." + type(obj).__name__
        raise TypeError(
            f"{name} must be an array of numbers; got a {what}, which numpy turns into a "
            "0-d object array (convert it to a numpy array first, e.g. np.asarray(...) "
            "of its values, or .toarray() for sparse matrices)"
        )


def as_float_array(x, name: str, ndim: int, *, allow_int: bool = False) -> np.ndarray:
    """``x`` as a C-contiguous float16/32/64 array of ``ndim`` dimensions.

    Non-contiguous and Fortran-ordered inputs are copied to C order (results do not depend on
    the memory layout). Integer input is converted to float64 when ``allow_int``.
    """
    if hasattr(x, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a GPU array ({type(x).__module__}.{type(x).__name__}); "
            "this function's CPU path got it - pass it through the public alamp_fast API"
        )
    reject_unsupported(x, name)
    arr = np.asarray(x)
    _check_object(arr, x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype.kind == "b" or not (
        arr.dtype in FLOAT_DTYPES or (allow_int and arr.dtype.kind in "iu")
    ):
        kinds = "float16/32/64" + (" or integer" if allow_int else "")
        raise TypeError(f"{name} must be {kinds}, got dtype {arr.dtype}")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or +-Inf, naming the first bad position and value."""
    finite = np.isfinite(arr)
    if not finite.all():
        raise_non_finite(arr, name, finite)


def raise_non_finite(
    arr: np.ndarray, name: str, finite: np.ndarray | None = None, first_row: int = 0
) -> None:
    """Raise ValueError naming the first NaN/Inf of ``arr`` (searching from ``first_row``)."""
    part = arr[first_row:]
    if finite is None:
        finite = np.isfinite(part)
    pos = np.unravel_index(int(np.argmin(finite.ravel())), part.shape)
    pos = (pos[0] + first_row, *pos[1:])
    where = ", ".join(str(int(p)) for p in pos)
    raise ValueError(f"{name}[{where}] = {float(arr[pos])!r} is not finite (NaN or Inf)")


def as_index_array(idx, name: str, n: int) -> np.ndarray:
    """``idx`` as int64 indices into range(n); reject out-of-range, duplicates, non-integers."""
    if idx is None:
        return np.empty(0, dtype=np.int64)
    reject_unsupported(idx, name)
    arr = np.asarray(idx)
    _check_object(arr, idx, name)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind == "b":
        if arr.shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())  # Python ints: exact for uint64 beyond 2**63
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds index {bad}, out of range for {n} samples")
    arr = arr.astype(np.int64, copy=False)
    seen = np.zeros(n, dtype=bool)
    seen[arr] = True
    if int(seen.sum()) != arr.size:
        u, c = np.unique(arr, return_counts=True)
        raise ValueError(f"{name} holds duplicated index {int(u[c > 1][0])}")
    return arr


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool (Python or numpy); TypeError otherwise (``'no'`` is not
    False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_budget(b, n_candidates: int, what: str = "candidates") -> int:
    """``b`` as an int in [0, n_candidates]."""
    if isinstance(b, (bool, np.bool_)):
        raise TypeError(f"budget b must be an integer, got {b!r}")
    try:
        b_int = operator.index(b)
    except TypeError:
        raise TypeError(f"budget b must be an integer, got {b!r}") from None
    if b_int < 0:
        raise ValueError(f"budget b={b_int} must be >= 0")
    if b_int > n_candidates:
        raise ValueError(f"budget b={b_int} exceeds the {n_candidates} {what}")
    return b_int


def as_labels(labels, name: str, n: int) -> np.ndarray:
    """Integer class labels of length n as int64."""
    reject_unsupported(labels, name)
    arr = np.asarray(labels)
    _check_object(arr, labels, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but scores have {n}")
    if arr.dtype.kind not in "iu":
        if (
            arr.dtype.kind == "f"
            and arr.size
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            raise TypeError(
                f"{name} must be an integer array, got dtype {arr.dtype} "
                "(cast with .astype(np.int64) if the values are class indices)"
            )
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)
