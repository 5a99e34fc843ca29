"""The one set of input checks, for any array library.

Every check raises ``ValueError`` or ``TypeError`` with the offending value in the message, at
the public boundary, so the kernels below can assume clean, contiguous input. The checks of
shape and dtype read only an array's ``shape`` and ``dtype`` attributes (:func:`check_float`,
:func:`check_index_meta`, :func:`check_labels_meta`, :func:`check_n_classes`), so numpy, CuPy
and torch arrays are checked by the same code without a copy or a host stand-in; the
value checks (range, duplicates, finiteness) take the values the caller computed on its own
device (:func:`check_index_range`, :func:`raise_duplicate`, :func:`non_finite_error`). The
scalar checks (:func:`is_int`, :func:`check_int`, :func:`check_budget`, :func:`check_bool`,
:func:`as_rng`) are the package's integer / flag / seed checkers.
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


class IntegerError(TypeError, ValueError):
    """A value that should be an integer is not. Both a ``TypeError`` (its type is wrong) and a
    ``ValueError`` (what the checkers of several modules raised before they were merged here),
    so callers catching either keep working."""


def dtype_name(dtype) -> str:
    """``float32``, ``int64``, ``bfloat16``...: a dtype of any library by its name."""
    return str(dtype).replace("torch.", "")


def _np_dtype(dtype):
    """``dtype`` as a numpy dtype, or None when numpy has no such type (torch's bfloat16...)."""
    if type(dtype).__module__.split(".")[0] != "torch":
        try:
            return np.dtype(dtype)
        except TypeError:
            return None
    try:
        return np.dtype(dtype_name(dtype))
    except TypeError:
        return None


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


def check_float(x, name: str, ndim: int, *, allow_int: bool = False) -> None:
    """Raise unless ``x`` (any array: only ``x.shape`` and ``x.dtype`` are read) has ``ndim``
    dimensions and a float16/32/64 dtype (or an integer one, with ``allow_int``)."""
    shape = tuple(x.shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {shape}")
    dt = _np_dtype(x.dtype)
    if (
        dt is None
        or dt.kind == "b"
        or not (dt in FLOAT_DTYPES or (allow_int and dt.kind in "iu"))
    ):
        kinds = "float16/32/64" + (" or integer" if allow_int else "")
        raise TypeError(f"{name} must be {kinds}, got dtype {dtype_name(x.dtype)}")


def check_n_classes(x, name: str = "probs") -> None:
    """Raise unless the 2-D ``x`` (any array) has at least 2 columns (classes)."""
    if x.shape[1] < 2:
        raise ValueError(
            f"{name} needs at least 2 classes for a margin, got shape {tuple(x.shape)}"
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
    check_float(arr, name, ndim, allow_int=allow_int)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or +-Inf, naming the first bad position and value."""
    finite = np.isfinite(arr)
    if not finite.all():
        raise_non_finite(arr, name, finite)


def non_finite_error(name: str, pos, value) -> ValueError:
    """The error for the NaN/Inf ``value`` found at index ``pos`` (a tuple) of ``name``."""
    where = ", ".join(str(int(p)) for p in pos)
    return ValueError(f"{name}[{where}] = {float(value)!r} is not finite (NaN or Inf)")


def raise_non_finite(
    arr: np.ndarray, name: str, finite: np.ndarray | None = None, first_row: int = 0
) -> None:
    """Raise ValueError naming the first NaN/Inf of ``arr`` (searching from ``first_row``)."""
    part = arr[first_row:]
    if finite is None:
        finite = np.isfinite(part)
    pos = np.unravel_index(int(np.argmin(finite.ravel())), part.shape)
    pos = (pos[0] + first_row, *pos[1:])
    raise non_finite_error(name, pos, arr[pos])


def check_index_meta(x, name: str, n: int) -> str:
    """Check an index argument's shape and dtype (any array library): ``'empty'``, ``'mask'``
    (a boolean mask of shape (n,)) or ``'indices'`` (1-D integers, values not yet checked)."""
    shape = tuple(x.shape)
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return "empty"
    dt = _np_dtype(x.dtype)
    if dt is not None and dt.kind == "b":
        if shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n},), got {shape}")
        return "mask"
    if dt is None or dt.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {dtype_name(x.dtype)}")
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D, got shape {shape}")
    return "indices"


def check_index_range(lo: int, hi: int, name: str, n: int) -> None:
    """Raise unless the smallest and largest index (Python ints, so uint64 is exact) are in
    range(n)."""
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds index {bad}, out of range for {n} samples")


def raise_duplicate(name: str, value: int):
    """Raise the error for the smallest duplicated index ``value`` of ``name``."""
    raise ValueError(f"{name} holds duplicated index {int(value)}")


def as_index_array(idx, name: str, n: int) -> np.ndarray:
    """``idx`` as int64 indices into range(n); reject out-of-range, duplicates, non-integers."""
    if idx is None:
        return np.empty(0, dtype=np.int64)
    reject_unsupported(idx, name)
    arr = np.asarray(idx)
    _check_object(arr, idx, name)
    kind = check_index_meta(arr, name, n)
    if kind == "empty":
        return np.empty(0, dtype=np.int64)
    if kind == "mask":
        return np.flatnonzero(arr).astype(np.int64)
    # Python ints: exact for uint64 beyond 2**63
    check_index_range(int(arr.min()), int(arr.max()), name, n)
    arr = arr.astype(np.int64, copy=False)
    seen = np.zeros(n, dtype=bool)
    seen[arr] = True
    if int(seen.sum()) != arr.size:
        u, c = np.unique(arr, return_counts=True)
        raise_duplicate(name, u[c > 1][0])
    return arr


def is_int(value) -> bool:
    """True for Python and numpy integers, False for bools (and everything else)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]`` (either bound optional).

    Python and numpy integers pass (and 0-d integer arrays, through ``operator.index``);
    bools, floats (``2.0`` included) and strings raise :class:`IntegerError`, an out-of-range
    value ``ValueError``, both naming ``name`` and the value.
    """
    if isinstance(value, (bool, np.bool_)):
        raise IntegerError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise IntegerError(f"{name} must be an integer, got {value!r}") from None
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def as_rng(seed, name: str = "seed") -> np.random.Generator:
    """A numpy Generator from ``seed``: None, a non-negative int, or a Generator (passed
    through). Bools, floats, strings: TypeError; a negative int: ValueError."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be None, a non-negative int or a numpy Generator, got {seed!r}"
        )
    if is_int(seed) and seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be None, a non-negative int or a numpy Generator, got {seed!r}"
        ) from exc


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool (Python or numpy); TypeError otherwise (``'no'`` is not
    False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_budget(b, n_candidates: int, what: str = "candidates") -> int:
    """``b`` as an int in [0, n_candidates]."""
    b_int = check_int(b, "budget b")  # IntegerError (a TypeError) naming b
    if b_int < 0:
        raise ValueError(f"budget b={b_int} must be >= 0")
    if b_int > n_candidates:
        raise ValueError(f"budget b={b_int} exceeds the {n_candidates} {what}")
    return b_int


def check_labels_meta(x, name: str, n: int, integral=None) -> None:
    """Raise unless ``x`` (any array) is 1-D of length ``n`` with an integer dtype.

    ``integral`` is called (no argument) only for a float dtype: True when every value is a
    finite whole number, which the error then says (the caller computes it on its device).
    """
    shape = tuple(x.shape)
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D, got shape {shape}")
    if shape[0] != n:
        raise ValueError(f"{name} has {shape[0]} entries but scores have {n}")
    dt = _np_dtype(x.dtype)
    if dt is None or dt.kind not in "iu":
        if dt is not None and dt.kind == "f" and n and integral is not None and integral():
            raise TypeError(
                f"{name} must be an integer array, got dtype {dtype_name(x.dtype)} "
                "(cast with .astype(np.int64) if the values are class indices)"
            )
        raise TypeError(f"{name} must be an integer array, got dtype {dtype_name(x.dtype)}")


def as_labels(labels, name: str, n: int) -> np.ndarray:
    """Integer class labels of length n as int64."""
    reject_unsupported(labels, name)
    arr = np.asarray(labels)
    _check_object(arr, labels, name)
    check_labels_meta(
        arr,
        name,
        n,
        lambda: bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))),
    )
    return arr.astype(np.int64, copy=False)
