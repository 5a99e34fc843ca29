"""Probabilities from one-vs-rest decision values: a softmax with one fitted temperature.

``predict_proba = softmax(decision_function / T)`` (for two classes, the logistic function of
the single decision value over ``T``). ``T`` is fitted by maximum likelihood on decision
values the model did not train on: the held-out rows of the cross-validation folds. One
scalar keeps the argmax (``predict_proba`` and ``predict`` agree) and the order of every
row's classes, so only the spread of the probabilities is calibrated.
"""

from __future__ import annotations

import numpy as np

# bounds of the fitted inverse temperature a = 1 / T: decision values are in margin units
# (about -1..1), so a in [0.01, 1000] spans near-uniform to near-one-hot probabilities
_A_MIN, _A_MAX = 1e-2, 1e3


def as_logits(xp, Z):
    """(n, n_classes) logits from decision values: ``[0, z]`` for one binary column."""
    if Z.shape[1] == 1:
        return xp.concat([Z * 0.0, Z], 1)
    return Z


def softmax(xp, L):
    """Row softmax of ``L`` (shifted by the row max: no overflow)."""
    E = xp.exp(L - xp.amax(L, 1, keepdims=True))
    return E / xp.sum(E, 1, keepdims=True)


def fit_inverse_temperature(logits: np.ndarray, y: np.ndarray, sample_weight=None) -> float:
    """Scale ``a`` minimising the NLL of ``softmax(a * logits)`` against smoothed labels.

    The targets are Platt's: the true class gets ``1 - eps`` and the others share ``eps``,
    with ``eps = 1 / (n + 2)`` (``n`` the total ``sample_weight``), so separable held-out
    values give a finite scale. The NLL is convex in ``a``; safeguarded Newton inside
    ``[0.01, 1000]``.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[2.0, -1.0], [-1.0, 2.0], [1.0, 0.5]])
    >>> a = fit_inverse_temperature(z, np.array([0, 1, 1]))
    >>> 0.01 <= a <= 1000
    True
    """
    L = np.asarray(logits, dtype=np.float64)
    n, n_classes = L.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    eps = 1.0 / (w.sum() + 2)
    T = np.full((n, n_classes), eps / (n_classes - 1))
    T[np.arange(n), y] = 1.0 - eps
    target = (w[:, None] * T * L).sum()

    def derivatives(a):
        S = a * L
        S -= S.max(axis=1, keepdims=True)
        P = np.exp(S)
        P /= P.sum(axis=1, keepdims=True)
        mean = (P * L).sum(axis=1)
        var = (P * L * L).sum(axis=1) - mean**2
        return w @ mean - target, max(w @ var, 0.0)

    a, lo, hi = 1.0, _A_MIN, _A_MAX
    for _ in range(100):
        d1, d2 = derivatives(a)
        if d1 > 0:
            hi = a
        else:
            lo = a
        a_new = a - d1 / d2 if d2 > 0 else np.nan
        if not lo < a_new < hi:
            a_new = np.sqrt(lo * hi)  # bisect in log scale: a spans five decades
        if abs(a_new - a) <= 1e-12 * a:
            return float(a_new)
        a = a_new
    return float(a)
