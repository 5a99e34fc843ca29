"""The paper's SVM: libsvm's C-SVC (hinge loss, one-vs-one) on one kernel cache per fit.

scikit-learn's ``SVC`` computes its kernel afresh in every ``fit`` of a grid search (libsvm
evaluates kernel rows on demand, a 1,024-d dot product per entry). Here the squared distances
of the labeled rows are computed once per :meth:`SVCCV.fit` (one float64 matrix product) and
every fold and every ``C`` runs libsvm (through scikit-learn's ``SVC(kernel="precomputed")``)
on slices of ``exp(-gamma_f * D)``, ``gamma_f`` computed on the fold's training rows exactly as
``SVC(gamma="scale")`` does. The models are libsvm's own, so the chosen ``C`` and the
predictions are those of ``GridSearchCV(SVC())`` on the same folds.

Probabilities are Platt's sigmoids fitted per class on the held-out one-vs-rest decision
values of the folds, as ``CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)``
does with the same folds (:func:`fit_platt`, :func:`platt_proba`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

# Platt fits rescale decision values above this magnitude (scikit-learn's threshold)
_PLATT_MAX_ABS = 30.0
_EXP_CLAMP = 80.0


def sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of all row pairs, float64, clamped at 0."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    D = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :]
    D -= 2.0 * (A @ B.T)
    return np.maximum(D, 0.0, out=D)


def scale_gamma(X: np.ndarray) -> float:
    """``1 / (n_features * X.var())`` as ``SVC(gamma="scale")`` computes it (float64)."""
    var = float(np.asarray(X, dtype=np.float64).var())
    return 1.0 / (X.shape[1] * var) if var != 0 else 1.0


def libsvm_fit(K: np.ndarray, y: np.ndarray, C: float, class_weight, sample_weight, tol):
    """libsvm's C-SVC on a precomputed kernel (scikit-learn's ``SVC``, one-vs-one)."""
    from sklearn.svm import SVC as _LibSVC

    model = _LibSVC(kernel="precomputed", C=float(C), class_weight=class_weight, tol=tol)
    return model.fit(K, y, sample_weight=sample_weight)


def fit_platt(F: np.ndarray, positive: np.ndarray, sample_weight=None) -> tuple[float, float]:
    """Platt's sigmoid ``P(positive | f) = 1 / (1 + exp(a f + b))`` by maximum likelihood.

    The same objective, priors, start and optimiser as scikit-learn's sigmoid calibration
    (Platt 2000 with the Bayesian target smoothing; L-BFGS-B), so the fitted ``(a, b)`` agree
    with ``CalibratedClassifierCV(method="sigmoid")`` to the optimiser's tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> a, b = fit_platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    >>> bool(a < 0)
    True
    """
    F = np.asarray(F, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    w = np.ones(F.size) if sample_weight is None else np.asarray(sample_weight, np.float64)
    scale = 1.0
    top = float(np.max(np.abs(F))) if F.size else 0.0
    if top >= _PLATT_MAX_ABS:
        scale = top
        F = F / scale
    prior1 = float(w[positive].sum())
    prior0 = float(w[~positive].sum())
    T = np.where(positive, (prior1 + 1.0) / (prior1 + 2.0), 1.0 / (prior0 + 2.0))

    def loss_grad(ab):
        # half binomial loss of raw prediction r = -(a F + b) against targets T
        r = -(ab[0] * F + ab[1])
        loss = w @ (np.logaddexp(0.0, r) - T * r)
        g = w * (expit(r) - T)  # d loss / d r
        return loss, np.array([-(g @ F), -g.sum()])

    ab0 = np.array([0.0, np.log((prior0 + 1.0) / (prior1 + 1.0))])
    res = minimize(
        loss_grad,
        ab0,
        method="L-BFGS-B",
        jac=True,
        options={"gtol": 1e-6, "ftol": 64 * np.finfo(float).eps},
    )
    return float(res.x[0] / scale), float(res.x[1])


def fit_platt_all(Z: np.ndarray, y_enc: np.ndarray, n_classes: int, sample_weight=None):
    """``(n_cols, 2)`` Platt parameters for each decision column of ``Z``.

    ``Z`` has one column per class, or one column (``classes_[1]``) for two classes.
    """
    if Z.shape[1] == 1:
        return np.array([fit_platt(Z[:, 0], y_enc == 1, sample_weight)])
    return np.array([fit_platt(Z[:, k], y_enc == k, sample_weight) for k in range(n_classes)])


def platt_proba(xp, Z, ab):
    """Calibrated probabilities from decision values ``Z`` and Platt parameters ``ab``.

    Each column goes through its sigmoid; two classes give ``[1 - p, p]``, more are
    normalised to sum to one (uniform where every sigmoid is 0), as scikit-learn's
    ``CalibratedClassifierCV`` does.
    """
    a = ab[:, 0][None, :]
    b = ab[:, 1][None, :]
    t = Z * a + b
    # clamped so exp cannot overflow (float32 at 89): the sigmoid is then 0 or 1 to 1e-35
    t = xp.where(t > _EXP_CLAMP, _EXP_CLAMP, xp.where(t < -_EXP_CLAMP, -_EXP_CLAMP, t))
    P = 1.0 / (1.0 + xp.exp(t))
    if ab.shape[0] == 1:
        return xp.concat([1.0 - P, P], 1)
    total = xp.sum(P, 1, keepdims=True)
    n_classes = ab.shape[0]
    return xp.where(total > 0, P / xp.where(total > 0, total, 1.0), 1.0 / n_classes)
