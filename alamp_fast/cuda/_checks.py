"""Input checks of the GPU implementations: the checks of :mod:`alamp_fast._validate`, on the
device.

Shape and dtype are checked from the arrays' attributes by the same functions the CPU uses
(:func:`alamp_fast._validate.check_float`, ``check_index_meta``, ``check_labels_meta``), so a
user sees one set of messages whatever the backend and the messages live in one place; value
checks (a min/max, a count of duplicates, flags the kernels set) run on the device and only
their results travel to the host. Whole-array NaN/Inf checks are fused into the kernels, which
report the first bad index.
"""

from __future__ import annotations

import numpy as np

from alamp_fast import _validate

FLOAT_DTYPES = tuple(np.dtype(d) for d in _validate.FLOAT_DTYPES)


def is_device_array(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


class CheckMismatch(AssertionError):
    """The GPU check rejected an input the CPU check accepts: a bug in this module."""


def cpu_must_raise(check, *args, **kwargs):
    """Call the CPU ``check``, which raises the canonical error for this input."""
    check(*args, **kwargs)
    raise CheckMismatch(f"{check.__name__} accepted an input the GPU check rejected")


def float_array(x, name: str, ndim: int, *, allow_int: bool = False):
    """``x`` as a C-contiguous float16/32/64 CuPy array of ``ndim`` dimensions (integers ->
    float64 when ``allow_int``). Host input is checked by the CPU function, then copied."""
    import cupy

    if not is_device_array(x):
        return cupy.asarray(_validate.as_float_array(x, name, ndim, allow_int=allow_int))
    _validate.check_float(x, name, ndim, allow_int=allow_int)
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    return cupy.ascontiguousarray(x)


def probs_matrix(x, name: str = "probs"):
    """Check a 2-D float16/32/64 matrix of at least 2 columns (any array library, from its
    attributes) and return it unchanged."""
    _validate.check_float(x, name, 2)
    _validate.check_n_classes(x, name)
    return x


def host_float_matrix(x, name: str = "probs") -> np.ndarray:
    """A host 2-D float16/32/64 array of at least 2 columns for streaming, without copying it
    (memmaps stay mapped)."""
    _validate.reject_unsupported(x, name)  # names the sparse type before converting anything
    arr = np.asarray(x)
    _validate._check_object(arr, x, name)
    return probs_matrix(arr, name)


def raise_non_finite_row(row_values: np.ndarray, row: int, name: str):
    """The CPU's error for the first NaN/Inf of a matrix, all of whose rows before ``row`` are
    finite, given that row's values (host)."""
    col = int(np.argmin(np.isfinite(row_values)))
    raise _validate.non_finite_error(name, (row, col), row_values[col])


def raise_non_finite_matrix(X, name: str):
    """The CPU's error for a device matrix holding NaN/Inf."""
    import cupy

    flat = int(cupy.argmin(cupy.isfinite(X).ravel()))
    row = flat // X.shape[1]
    raise_non_finite_row(X[row].get(), row, name)


def index_array(idx, name: str, n: int):
    """``idx`` as int64 device indices into range(n): the rules of ``as_index_array``."""
    import cupy

    if idx is None:
        return cupy.empty(0, dtype=np.int64)
    if not is_device_array(idx):
        return cupy.asarray(_validate.as_index_array(idx, name, n))
    kind = _validate.check_index_meta(idx, name, n)
    if kind == "empty":
        return cupy.empty(0, dtype=np.int64)
    if kind == "mask":
        return cupy.flatnonzero(idx).astype(np.int64)
    # the range on the original dtype: uint64 beyond 2**63 is reported exactly, as on the CPU
    lo, hi = (int(v) for v in cupy.stack([idx.min(), idx.max()]).get())
    _validate.check_index_range(lo, hi, name, n)
    arr = idx.astype(np.int64, copy=False)
    counts = cupy.bincount(arr, minlength=n)
    if int(counts.max()) > 1:
        _validate.raise_duplicate(name, int(cupy.argmax(counts > 1)))  # the smallest, as on the CPU
    return cupy.ascontiguousarray(arr)


def labels(x, name: str, n: int):
    """Integer class labels of length n as an int64 device array: the rules of ``as_labels``."""
    import cupy

    if not is_device_array(x):
        return cupy.asarray(_validate.as_labels(x, name, n))
    _validate.check_labels_meta(
        x,
        name,
        n,
        lambda: bool(cupy.all(cupy.isfinite(x)) and cupy.all(x == cupy.round(x))),
    )
    return cupy.ascontiguousarray(x.astype(np.int64, copy=False))


def first_bad_flags(k: int, n: int):
    """``k`` device counters for a kernel's atomicMin of the first bad index, set to n (none)."""
    import cupy

    return cupy.full(k, n, dtype=np.uint64)


def check_rows_fit(n: int, what: str) -> None:
    """Row indices travel as 32-bit in the selection kernels' composite keys."""
    if n >= 1 << 32:
        raise NotImplementedError(f"{what} on the GPU supports fewer than 2**32 rows, got {n=}")
