"""GPU alamp score: ``(prev - cur) / (prev + cur)``, kernel ``kernels/alamp.cu``.

Bit-identical to :func:`alamp_fast.alamp_score`: both inputs are cast to the output dtype first
(float32, or float64 if either is float64), then one subtraction, addition and IEEE division.
The input check (finite, non-negative) is fused into the same pass.
"""

from __future__ import annotations

import numpy as np

from alamp_fast import _validate
from alamp_fast import alamp as cpu_alamp
from alamp_fast.cuda import _checks, _instantiations, _kernels

__all__ = ["alamp_score"]

_BLOCK = 256


def name_expressions() -> list[str]:
    return _instantiations.alamp()


def alamp_score(prev_margin, margin):
    """GPU :func:`alamp_fast.alamp_score` on CuPy (or host) arrays; returns a CuPy array.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> afc.alamp_score(cupy.asarray([0.9, 0.0]), cupy.asarray([0.1, 0.0])).get().tolist()
    [0.8, 0.0]
    """
    import cupy

    prev = _checks.float_array(prev_margin, "prev_margin", 1)
    cur = _checks.float_array(margin, "margin", 1)
    if prev.shape != cur.shape:
        raise ValueError(f"prev_margin has {prev.shape[0]} samples but margin has {cur.shape[0]}")
    dt = _validate.out_dtype(prev.dtype, cur.dtype)
    prev = prev.astype(dt, copy=False)
    cur = cur.astype(dt, copy=False)
    n = prev.shape[0]
    out = cupy.empty(n, dtype=dt)
    if n == 0:
        return out
    first_bad = _checks.first_bad_flags(1, n)
    kernel = _kernels.function("alamp", f"alamp_score_kernel<{_kernels.CTYPE[dt]}>")
    grid = _kernels.grid_size(n, _BLOCK, kernel, _BLOCK)
    kernel((grid,), (_BLOCK,), (prev, cur, np.int64(n), out, first_bad))
    if int(first_bad.get()[0]) < n:
        # error path: the CPU function names the offending value
        _checks.cpu_must_raise(cpu_alamp.alamp_score.cpu_impl, prev.get(), cur.get())
    return out
