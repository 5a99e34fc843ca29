"""Input checks of the GPU implementations, raising exactly the CPU checks' errors.

The checks themselves are cheap tests on the device (shape, dtype, a min/max, flags the kernels
set); when one fails, the CPU function of :mod:`alamp_fast._validate` is called on a host
stand-in of the input and raises its own error, so a user sees one set of messages whatever the
backend and the messages live in one place. Whole-array NaN/Inf checks are fused into the
kernels, which report the first bad index.
"""

from __future__ import annotations

import numpy as np

from alamp_fast import _validate

FLOAT_DTYPES = tuple(np.dtype(d) for d in _validate.FLOAT_DTYPES)


def is_device_array(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def stand_in(x) -> np.ndarray:
    """A host array with the shape and dtype of ``x`` and no memory behind it (zero strides),
    for the CPU checks that look only at those. Never copy it: it would be full size."""
    return np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=x.dtype), shape=x.shape, strides=(0,) * len(x.shape)
    )


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
    if x.ndim != ndim or not (
        x.dtype in FLOAT_DTYPES or (allow_int and x.dtype.kind in "iu")
    ):
        cpu_must_raise(_validate.as_float_array, stand_in(x), name, ndim, allow_int=allow_int)
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    return cupy.ascontiguousarray(x)


def host_float_matrix(x, check) -> np.ndarray:
    """A host 2-D float16/32/64 array for streaming, without copying it (memmaps stay mapped);
    ``check`` (the CPU's validation) runs on a stand-in when shape or dtype are wrong."""
    if _validate._is_sparse(x):
        cpu_must_raise(check, x)  # the CPU names the sparse type before converting anything
    arr = np.asarray(x)
    if arr.dtype == object:
        cpu_must_raise(check, x)
    if arr.ndim != 2 or arr.dtype not in FLOAT_DTYPES or arr.shape[1] < 2:
        cpu_must_raise(check, stand_in(arr))
    return arr


def raise_non_finite_row(row_values: np.ndarray, row: int, name: str):
    """The CPU's error for the first NaN/Inf of a matrix, all of whose rows before ``row`` are
    finite, given that row's values (host)."""
    shim = np.lib.stride_tricks.as_strided(
        row_values, shape=(row + 1, row_values.shape[0]), strides=(0, row_values.strides[0])
    )
    cpu_must_raise(_validate.raise_non_finite, shim, name, first_row=row)


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
    if idx.size == 0:
        return cupy.empty(0, dtype=np.int64)
    if idx.dtype.kind == "b":
        if idx.shape != (n,):
            cpu_must_raise(_validate.as_index_array, stand_in(idx), name, n)
        return cupy.flatnonzero(idx).astype(np.int64)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        cpu_must_raise(_validate.as_index_array, stand_in(idx), name, n)
    # the range on the original dtype: uint64 beyond 2**63 is reported exactly, as on the CPU
    lo, hi = (int(v) for v in cupy.stack([idx.min(), idx.max()]).get())
    if lo < 0 or hi >= n:
        cpu_must_raise(_validate.as_index_array, idx.get(), name, n)
    arr = idx.astype(np.int64, copy=False)
    if int(cupy.bincount(arr, minlength=n).max()) > 1:
        cpu_must_raise(_validate.as_index_array, arr.get(), name, n)
    return cupy.ascontiguousarray(arr)


def labels(x, name: str, n: int):
    """Integer class labels of length n as an int64 device array: the rules of ``as_labels``."""
    import cupy

    if not is_device_array(x):
        return cupy.asarray(_validate.as_labels(x, name, n))
    if x.ndim != 1 or x.shape[0] != n or x.dtype.kind not in "iu":
        cpu_must_raise(_validate.as_labels, x.get(), name, n)
    return cupy.ascontiguousarray(x.astype(np.int64, copy=False))


def first_bad_flags(k: int, n: int):
    """``k`` device counters for a kernel's atomicMin of the first bad index, set to n (none)."""
    import cupy

    return cupy.full(k, n, dtype=np.uint64)


def check_rows_fit(n: int, what: str) -> None:
    """Row indices travel as 32-bit in the selection kernels' composite keys."""
    if n >= 1 << 32:
        raise NotImplementedError(f"{what} on the GPU supports fewer than 2**32 rows, got {n=}")
