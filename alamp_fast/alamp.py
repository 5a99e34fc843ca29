"""The alamp score: the shift from certainty at iteration k-1 to uncertainty at iteration k.

``alamp(x) = (m_{k-1}(x) - m_k(x)) / (m_{k-1}(x) + m_k(x))`` (Aggarwal, Popescu, Hudelot), in
[-1, 1] for non-negative certainty measures; the highest scores are queried first.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import numpy_route, twins
from alamp_fast._validate import as_float_array, out_dtype, raise_non_finite

__all__ = ["alamp_score"]


@twins()
def _alamp_kernel(prev, cur, out):
    """Fused score + input check: one read of each input, one write; True if any input was
    negative, NaN or Inf."""
    n = prev.shape[0]
    bad = 0
    for i in prange(n):
        p = prev[i]
        c = cur[i]
        s = p + c
        # p >= 0 is False for NaN; c < inf rejects +Inf (and NaN)
        ok = p >= 0 and c >= 0 and p < np.inf and c < np.inf
        bad += not ok
        out[i] = (p - c) / s if s != 0 else 0.0
    return bad > 0


def _alamp_numpy(prev, cur, out) -> bool:
    """:func:`_alamp_kernel` with numpy; True if any input was negative, NaN or Inf."""
    with np.errstate(all="ignore"):
        s = prev + cur
        np.divide(prev - cur, s, out=out)
        out[s == 0] = 0
        ok = (prev >= 0) & (cur >= 0) & (prev < np.inf) & (cur < np.inf)
    return not ok.all()


@dispatch("alamp_score")
def alamp_score(prev_margin, margin):
    """alamp score per sample: ``(prev - cur) / (prev + cur)``, 0.0 where both are 0.

    A sample the previous model was sure about (large ``prev_margin``) that the current model
    finds ambiguous (small ``margin``) scores close to 1. Works for any non-negative certainty
    measure in place of the margin (e.g. the top-1 probability).

    Parameters
    ----------
    prev_margin, margin : (n_samples,) float16/32/64, finite and >= 0
        Certainty of the previous (k-1) and current (k) models for the same samples.

    Returns
    -------
    (n_samples,) float32, or float64 if either input is float64. Computed in that dtype, so the
    values equal ``(prev - cur) / (prev + cur)`` evaluated by numpy in the output dtype.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> af.alamp_score(np.array([0.9, 0.5, 0.0]), np.array([0.1, 0.5, 0.0])).tolist()
    [0.8, 0.0, 0.0]
    """
    prev = as_float_array(prev_margin, "prev_margin", 1)
    cur = as_float_array(margin, "margin", 1)
    if prev.shape != cur.shape:
        raise ValueError(f"prev_margin has {prev.shape[0]} samples but margin has {cur.shape[0]}")
    dt = out_dtype(prev.dtype, cur.dtype)
    prev = prev.astype(dt, copy=False)
    cur = cur.astype(dt, copy=False)
    out = np.empty(prev.shape[0], dtype=dt)
    if out.size == 0:
        return out
    if numpy_route(out.size):  # the same IEEE operations in the same dtype: the same bits
        bad = _alamp_numpy(prev, cur, out)
    else:
        bad = _alamp_kernel(prev, cur, out, work=out.size)
    if bad:
        # error path only: find the first offending value with numpy
        for name, arr in (("prev_margin", prev), ("margin", cur)):
            finite = np.isfinite(arr)
            if not finite.all():
                raise_non_finite(arr, name, finite)
        for name, arr in (("prev_margin", prev), ("margin", cur)):
            if (arr < 0).any():
                i = int(np.argmax(arr < 0))
                raise ValueError(
                    f"{name}[{i}] = {float(arr[i])!r} is negative; alamp needs a non-negative "
                    "certainty measure such as the top-2 margin"
                )
    return out
