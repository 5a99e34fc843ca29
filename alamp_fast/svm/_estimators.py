"""The scikit-learn-compatible classifiers :class:`SVC` and :class:`SVCCV`.

Why one module of this size: :class:`SVC` and :class:`SVCCV` are two faces of one base class
(``_BaseSVM``: fit, calibration, scoring); SVCCV adds the C search and its warm starts, which use
the base's private state, so splitting them would only move privates across a module line.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_array
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from alamp_fast._validate import is_int as _is_int
from alamp_fast.svm import _calibration as cal
from alamp_fast.svm import _hinge, _solver
from alamp_fast.svm._backend import get_backend
from alamp_fast.svm._cv import DEFAULT_CS, fallback_c, make_cs, pick_c, stratified_folds

_KERNELS = ("linear", "rbf")
# elements of one prediction chunk's widest array (X chunk, kernel chunk or probabilities)
_CHUNK_ELEMS = 1 << 24


class _BaseSVM(ClassifierMixin, BaseEstimator):
    """Parameter checks, the batched fit and the chunked predictions shared by both classes."""

    # RBF on numpy: solve in sample space on the kernel matrix (no eigendecomposition); False
    # is the eigenbasis solver used before (and on torch), kept for benchmarks' reference
    _RBF_SAMPLE_SPACE = True

    # ---------------------------------------------------------------- parameters
    def _check_params(self):
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel={self.kernel!r} is not supported; choose from {_KERNELS}")
        gamma = self.gamma
        if isinstance(gamma, str):
            if gamma not in ("scale", "auto"):
                raise ValueError(f"gamma={gamma!r} must be 'scale', 'auto' or a positive float")
        elif not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not gamma > 0:
            raise ValueError(f"gamma={gamma!r} must be 'scale', 'auto' or a positive float")
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight={cw!r} must be None, 'balanced' or a dict")
        if not isinstance(self.tol, numbers.Real) or not self.tol > 0:
            raise ValueError(f"tol={self.tol!r} must be a positive float")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter!r} must be a positive int")
        return get_backend(self.device)

    def _splits(self, y_enc, keep, allow_none: bool):
        """The folds as ``[(train_mask, test_rows), ...]``.

        ``cv`` is an int (:func:`stratified_folds` of that many folds), an iterable of
        ``(train, test)`` index arrays into the rows given to ``fit`` (as scikit-learn's
        ``cv``), or, for :class:`SVC` only, ``None`` (returned as is). ``[]`` when fewer than
        two non-empty folds can be made.
        """
        cv = self.cv
        if cv is None and allow_none:
            return None
        n = y_enc.size
        if _is_int(cv):
            if cv < 2:
                raise ValueError(f"cv={cv!r} must be an int >= 2 or an iterable of splits")
            folds = stratified_folds(y_enc, int(cv), self.random_state)
            splits = [(folds != f, np.flatnonzero(folds == f)) for f in range(folds.max() + 1)]
        elif hasattr(cv, "__iter__") and not isinstance(cv, (str, dict)):
            # indices refer to the rows given to fit; rows of weight 0 were dropped since
            new_index = np.full(keep.size, -1)
            new_index[keep] = np.arange(n)
            splits = []
            for split in cv:
                try:
                    train, test = (new_index[np.asarray(part, dtype=np.int64)] for part in split)
                except (TypeError, ValueError, IndexError) as exc:
                    raise ValueError(
                        f"cv must yield (train, test) index arrays into the {keep.size} rows "
                        f"of X; got {split!r}"
                    ) from exc
                mask = np.zeros(n, dtype=bool)
                mask[train[train >= 0]] = True
                splits.append((mask, test[test >= 0]))
        else:
            raise ValueError(
                f"cv={cv!r} must be an int >= 2 or an iterable of (train, test) splits"
            )
        if len(splits) < 2 or any(test.size == 0 for _, test in splits):
            return []
        return splits

    # ---------------------------------------------------------------- fitting
    def _validate_fit_data(self, X, y, sample_weight):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        sw = _sample_weight(sample_weight, X.shape[0])
        # sample_weight counts repetitions: samples of weight 0 are left out entirely
        # (folds, gamma, eigenbasis), weighted samples weigh in the folds' scores and in the
        # temperature as often as their weight says
        keep = sw > 0
        if not keep.any():
            raise ValueError("sample_weight is zero for every sample; nothing to fit")
        if not keep.all():
            X, y, sw = X[keep], y[keep], sw[keep]
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes with positive "
                f"sample_weight; got {classes.size} class"
            )
        self.classes_ = classes
        self._dtype = np.dtype(X.dtype)
        return X, y_enc.astype(np.int64), sw, keep

    def _class_weights(self, y_enc: np.ndarray, sw: np.ndarray) -> np.ndarray:
        """Weight of each class index on the rows ``y_enc`` of weights ``sw``.

        ``"balanced"`` is ``n_samples / (n_classes * bincount(y))`` with the counts weighted
        by ``sw`` (repetitions); a dict follows scikit-learn's ``compute_class_weight``.
        """
        n_classes = self.classes_.size
        if isinstance(self.class_weight, str):  # "balanced", checked in _check_params
            counts = np.bincount(y_enc, weights=sw, minlength=n_classes)
            safe = np.where(counts > 0, counts, 1.0)
            return np.where(counts > 0, sw.sum() / (n_classes * safe), 1.0)
        return compute_class_weight(
            self.class_weight, classes=self.classes_, y=self.classes_[y_enc]
        )

    def _gamma(self, X: np.ndarray, sw: np.ndarray) -> float:
        if self.gamma == "scale":
            # X.var() of the repeated rows: weighted over rows, plain over features
            mean = np.average(X.mean(axis=1), weights=sw)
            var = float(np.average(((X - mean) ** 2).mean(axis=1), weights=sw))
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        return float(self.gamma)

    def _fit_batch(self, xp, X, y_enc, sw, Cs, splits, *, with_full: bool, fmap=None, W0=None):
        """Solve every (row set, C, class) problem at once.

        Row sets are the training parts of ``splits``, then (when ``with_full``) all the
        rows. Returns the feature map, the solution ``W``
        (rank, n_sets * n_Cs * n_cols) and the decision values ``G @ W`` on the host.
        """
        if fmap is None:
            fmap = self._feature_map(xp, X)
        dtype = fmap.dtype
        n = X.shape[0]
        n_classes = self.classes_.size
        # one column per class; binary problems have one: classes_[1] against classes_[0]
        targets = np.arange(n_classes) if n_classes > 2 else np.array([1])
        Ybase = np.where(y_enc[:, None] == targets[None, :], 1.0, -1.0)
        sets = [train for train, _ in splits or []] + ([np.ones(n, bool)] if with_full else [])
        costs = []
        for train in sets:
            weight = np.zeros(n)
            cw = self._class_weights(y_enc[train], sw[train])
            weight[train] = sw[train] * cw[y_enc[train]]
            costs.extend(weight[:, None] * C * np.ones(targets.size) for C in Cs)
        n_blocks = len(costs)
        Y = xp.asarray(np.tile(Ybase, (1, n_blocks)), dtype)
        cost = xp.asarray(np.concatenate(costs, axis=1), dtype)
        if isinstance(fmap, _solver.KernelMap):
            W, n_iter = _solver.solve_dual(
                xp,
                fmap.Kpad,
                Y,
                cost,
                W0,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                precond=fmap.preconditioner(xp),
            )
        else:
            W, n_iter = _solver.solve(
                xp,
                fmap.G,
                Y,
                cost,
                W0,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                dense_band=fmap.dense_band,
            )
        Z = xp.to_numpy(fmap.decision(W)).reshape(n, n_blocks, targets.size)
        return fmap, W, Z, n_iter

    def _feature_map(self, xp, X):
        """The training rows as the solver takes them: the linear kernel's eigenbasis; for
        RBF the kernel matrix itself (the sample-space solver) or, with
        ``_RBF_SAMPLE_SPACE = False``, its eigenbasis (the solver before, kept as the
        benchmarks' reference)."""
        dtype = xp.float_dtype(self._dtype)
        Xd = xp.asarray(X, dtype)
        if self.kernel == "linear":
            return _solver.linear_map(xp, Xd, dtype)
        if self._RBF_SAMPLE_SPACE:
            # in float64 whatever the input: a sample-space step is a difference of large
            # kernel products (K X - K E), and in float32 at C = 100 their rounding stalled the
            # line search (t ~ 1/256 for 100 iterations at 3,000 Caltech rows)
            f64 = xp.float_dtype(np.float64)
            return _solver.rbf_kernel_map(xp, xp.asarray(X, f64), self.gamma_, f64)
        return _solver.rbf_map(xp, Xd, self.gamma_, dtype)

    def _held_out(self, Z, y_enc, sw, splits, n_Cs):
        """Weighted fold accuracies ``(n_Cs, n_splits)`` and the held-out values of each C.

        Returns the scores, one ``(n_held_out, n_cols)`` array of decision values per C, and
        the labels and weights of those rows.
        """
        scores = np.zeros((n_Cs, len(splits)))
        for f, (_, test) in enumerate(splits):
            for j in range(n_Cs):
                right = self._predict_index(Z[test, f * n_Cs + j]) == y_enc[test]
                scores[j, f] = np.average(right, weights=sw[test])
        held = [
            np.concatenate([Z[test, f * n_Cs + j] for f, (_, test) in enumerate(splits)])
            for j in range(n_Cs)
        ]
        rows = np.concatenate([test for _, test in splits])
        return scores, held, y_enc[rows], sw[rows]

    @staticmethod
    def _predict_index(z: np.ndarray) -> np.ndarray:
        return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)

    def _set_model(self, xp, fmap, W_full, X):
        """Public coefficients from the full-data solution ``W_full`` (rank, n_cols)."""
        coef = xp.to_numpy(fmap.coef(W_full)).astype(self._dtype).T  # (n_cols, d+1 or n)
        # a refit with the other kernel must not leave the previous kernel's attributes
        for name in ("coef_", "dual_coef_", "X_fit_", "libsvm_", "n_fit_"):
            self.__dict__.pop(name, None)
        if self.kernel == "linear":
            self.coef_ = np.ascontiguousarray(coef[:, :-1])
            self.intercept_ = coef[:, -1].copy()
        else:
            # decision = (k(x, X) + 1) @ beta: the constant kernel term is the intercept
            self.dual_coef_ = np.ascontiguousarray(coef)
            self.intercept_ = coef.sum(axis=1)
            self.X_fit_ = np.ascontiguousarray(X)

    def _calibrate(self, z_held: np.ndarray, y_held: np.ndarray, sw_held: np.ndarray) -> None:
        for name in ("temperature_", "platt_"):
            self.__dict__.pop(name, None)
        z = z_held.astype(np.float64)
        if getattr(self, "calibration", "temperature") == "platt":
            self.platt_ = _hinge.fit_platt_all(z, y_held, self.classes_.size, sw_held)
            return
        logits = cal.as_logits(np, z)
        self.temperature_ = 1.0 / cal.fit_inverse_temperature(logits, y_held, sw_held)

    # ---------------------------------------------------------------- prediction
    def _check_predict_X(self, X):
        check_is_fitted(self)
        if sp.issparse(X):
            raise TypeError(f"{type(self).__name__} does not support sparse input; pass X dense")
        if getattr(X, "ndim", 2) != 2 or not hasattr(X, "shape"):
            X = check_array(X, dtype="numeric", ensure_all_finite=False)
        validate_data(self, X, reset=False, skip_check_array=True)
        if X.shape[0] == 0:
            raise ValueError("X has 0 samples; predictions need at least one")
        return X

    def _chunks(self, X, chunk_size):
        """Decision values ``(rows, n_cols)``, chunk by chunk, on the device."""
        X = self._check_predict_X(X)
        xp = get_backend(self.device)
        dtype = xp.float_dtype(self._dtype)
        width = max(
            X.shape[1],
            self.classes_.size,
            getattr(self, "X_fit_", X[:0]).shape[0],
            getattr(self, "n_fit_", 0),
        )
        if chunk_size is None:
            chunk_size = max(256, _CHUNK_ELEMS // width)
        elif not _is_int(chunk_size) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive int or None")
        if getattr(self, "libsvm_", None) is not None:
            for start in range(0, X.shape[0], chunk_size):
                Xc = xp.load_rows(X[start : start + chunk_size], self._dtype)
                yield self._libsvm_decision(Xc)
            return
        b = xp.asarray(self.intercept_, dtype)
        if self.kernel == "linear":
            W = xp.asarray(self.coef_.T, dtype)
        else:
            W = xp.asarray(self.dual_coef_.T, dtype)
            X_fit = xp.asarray(self.X_fit_, dtype)
        for start in range(0, X.shape[0], chunk_size):
            Xc = xp.load_rows(X[start : start + chunk_size], self._dtype)
            if self.kernel == "linear":
                yield Xc @ W + b
            else:
                yield _solver.rbf_kernel(xp, Xc, X_fit, self.gamma_) @ W + b

    def decision_function(self, X, chunk_size=None):
        """One-vs-rest decision values.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            May be an ``np.memmap``: it is read ``chunk_size`` rows at a time.
        chunk_size : int, optional
            Rows per chunk (default: about 16M elements of the widest array per chunk).

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            (positive means ``classes_[1]``, as in scikit-learn).
        """
        xp = get_backend(self.device)
        out = np.concatenate([xp.to_numpy(Z) for Z in self._chunks(X, chunk_size)])
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X, chunk_size=None):
        """Class labels: the largest decision value (``classes_[1]`` when positive)."""
        xp = get_backend(self.device)
        idx = []
        for Z in self._chunks(X, chunk_size):
            if hasattr(self, "platt_"):
                # the argmax of the calibrated probabilities, as CalibratedClassifierCV predicts
                idx.append(xp.to_numpy(xp.argmax(self._proba(xp, Z), 1)).astype(np.int64))
            elif Z.shape[1] == 1:
                idx.append(xp.to_numpy(Z[:, 0] > 0).astype(np.int64))
            else:
                idx.append(xp.to_numpy(xp.argmax(Z, 1)).astype(np.int64))
        return self.classes_[np.concatenate(idx)]

    def predict_proba(self, X, chunk_size=None):
        """Calibrated probabilities ``softmax(decision_function(X) / temperature_)``.

        For two classes ``[1 - s, s]`` with ``s = sigmoid(decision / temperature_)``.
        ``temperature_`` was fitted on held-out decision values (see the class docstring).

        Returns
        -------
        ndarray of shape (n_samples, n_classes), rows summing to 1, columns ``classes_``.
        """
        xp = get_backend(self.device)
        parts = [xp.to_numpy(self._proba(xp, Z)) for Z in self._chunks(X, chunk_size)]
        return np.concatenate(parts)

    def predict_log_proba(self, X, chunk_size=None):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X, chunk_size))

    def _proba(self, xp, Z):
        if hasattr(self, "platt_"):
            return _hinge.platt_proba(xp, Z, xp.asarray(self.platt_, Z.dtype))
        return cal.softmax(xp, cal.as_logits(xp, Z) * (1.0 / self.temperature_))

    def predict_top2_margin(self, X, chunk_size=None):
        """``af.top2_margin(self.predict_proba(X))`` without the whole probability matrix.

        The pool is streamed in chunks of ``chunk_size`` rows (an ``np.memmap`` works); each
        chunk's probabilities live only on the device, where their top-2 is taken, and only
        two numbers per row come back.

        Returns
        -------
        margin : (n_samples,) float32 or float64 (the fitted dtype)
            ``P(c1|x) - P(c2|x)``.
        top_class : (n_samples,) int64
            Column index of the most probable class (``classes_[top_class]`` is the label);
            ties go to the lowest index.

        Examples
        --------
        >>> import numpy as np
        >>> from alamp_fast.svm import SVC
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(60, 4)); y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
        >>> clf = SVC(C=1.0).fit(X, y)
        >>> margin, top = clf.predict_top2_margin(X, chunk_size=16)
        >>> margin.shape, bool((top == clf.predict(X)).all())
        ((60,), True)
        """
        xp = get_backend(self.device)
        margins, tops = [], []
        for Z in self._chunks(X, chunk_size):
            m, top = xp.top2(self._proba(xp, Z))
            margins.append(m)
            tops.append(top)
        return np.concatenate(margins), np.concatenate(tops)


class SVC(_BaseSVM):
    """One-vs-rest SVM (squared hinge) on CPU (numpy) or GPU (torch), with probabilities.

    The model of scikit-learn's ``LinearSVC`` (``loss="squared_hinge"``, one-vs-rest, the
    intercept a regularised constant feature as with liblinear's ``intercept_scaling=1``)
    for ``kernel="linear"``, and the same loss in the RBF kernel's feature space for
    ``kernel="rbf"`` (the intercept a constant added to the kernel). Every class, and the
    calibration folds, are solved as one batched problem (see :mod:`alamp_fast.svm`).

    Parameters
    ----------
    kernel : {"linear", "rbf"}
    C : float
        Inverse regularisation: ``C`` times the sum of squared hinge losses.
    gamma : "scale", "auto" or float
        RBF width as in scikit-learn's ``SVC``: ``"scale"`` is
        ``1 / (n_features * X.var())`` of the training set, ``"auto"`` ``1 / n_features``.
    class_weight : None, "balanced" or dict
        Multiplies ``C`` for the samples of each class, in every one-vs-rest problem (each
        sample by its own class's weight, as ``sample_weight=class_weight[y]``; liblinear's
        ``LinearSVC`` weights only the positives of each problem). ``"balanced"`` is
        ``n_samples / (n_classes * bincount(y))``: the cost-sensitive SVM.
    cv : int, iterable of (train, test) index arrays, or None
        Folds whose held-out decision values fit the probability temperature (they are
        solved in the same batch as the final model); an int means
        :func:`alamp_fast.svm.stratified_folds`. ``None`` fits the temperature on the
        training decision values instead: cheaper, and overconfident.
    tol : float
        Stopping tolerance of each problem's Newton iterations: its gradient norm relative to
        the norm at ``w = 0`` divided by the largest sample cost (``docs/svm.md``).
    max_iter : int
        Newton iterations per problem (10 to 20 are typical).
    device : "cpu", "cuda", "cuda:N" or torch.device
        ``"cpu"`` runs numpy; anything else runs torch on that device (``torch.device("cpu")``
        runs the torch code on the host). Fitted attributes are numpy arrays either way.
    random_state : int, RandomState or None
        Shuffling of the calibration folds.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        Linear kernel only.
    dual_coef_ : ndarray of shape (n_classes or 1, n_train)
        RBF kernel only: ``decision = rbf(x, X_fit_) @ dual_coef_.T + intercept_``.
    X_fit_ : ndarray of shape (n_train, n_features)
        RBF kernel only: the training rows with positive weight.
    intercept_ : ndarray of shape (n_classes,) or (1,)
    gamma_ : float
        The RBF width used (also set for the linear kernel, unused there).
    temperature_ : float
        ``predict_proba`` is ``softmax(decision_function / temperature_)``.
    n_iter_ : int
        Largest number of Newton iterations over the problems.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from alamp_fast.svm import SVC
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SVC(C=0.1).fit(X[:1000] / 16, y[:1000])
    >>> float(clf.score(X[1000:] / 16, y[1000:])) > 0.9
    True
    >>> clf.predict_proba(X[:2] / 16).shape
    (2, 10)
    """

    def __init__(
        self,
        kernel="linear",
        C=1.0,
        *,
        gamma="scale",
        class_weight=None,
        cv=5,
        tol=1e-5,
        max_iter=100,
        device="cpu",
        random_state=0,
    ):
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.class_weight = class_weight
        self.cv = cv
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit the one-vs-rest SVM and its probability temperature.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            float32 input is computed in float32 (faster), anything else in float64; the RBF
            kernel's Newton iterations run in float64 either way (coefficients and outputs
            keep the input's dtype).
        y : array of shape (n_samples,)
        sample_weight : array of shape (n_samples,), optional
            Multiplies each sample's ``C``; samples of weight 0 are dropped.

        Returns
        -------
        self
        """
        xp = self._check_params()
        if isinstance(self.C, bool) or not isinstance(self.C, numbers.Real) or not self.C > 0:
            raise ValueError(f"C={self.C!r} must be a positive float")
        X, y_enc, sw, keep = self._validate_fit_data(X, y, sample_weight)
        self.gamma_ = self._gamma(X, sw)
        splits = self._splits(y_enc, keep, allow_none=True)
        if splits == []:
            warnings.warn(
                "too few samples per class for calibration folds; the probability "
                "temperature is fitted on the training decision values",
                stacklevel=2,
            )
        fmap, W, Z, n_iter = self._fit_batch(
            xp, X, y_enc, sw, [float(self.C)], splits, with_full=True
        )
        self.n_iter_ = int(n_iter.max())
        n_cols = Z.shape[2]
        full = np.arange(W.shape[1] - n_cols, W.shape[1])  # the last block: all the rows
        self._set_model(xp, fmap, xp.take_cols(W, full), X)
        if splits:
            _, held, y_held, sw_held = self._held_out(Z, y_enc, sw, splits, 1)
            self._calibrate(held[0], y_held, sw_held)
        else:
            self._calibrate(Z[:, -1], y_enc, sw)
        return self


class SVCCV(_BaseSVM):
    """:class:`SVC` with ``C`` chosen by cross-validation, like ``LogisticRegressionCV``.

    With the default ``loss="squared_hinge"`` every class, every fold and every ``C`` are
    solved as batched problems on one eigenbasis of the labeled set's kernel (computed once
    per fit and shared by the folds); the ``C`` path of each fold is warm-started, smallest
    ``C`` first. The best ``C`` (mean held-out accuracy over the folds, ties to the smaller
    ``C``) is then refitted on all the labeled data, warm-started from the folds' solutions.
    The probabilities are calibrated on the held-out decision values of the chosen ``C``.
    Folds are :func:`alamp_fast.svm.stratified_folds`: a class with a single labeled sample
    is never held out. When no two folds can be made, ``C`` is the middle of the grid (with a
    warning).

    ``loss="hinge"`` is libsvm's C-SVC (one-vs-one, scikit-learn's ``SVC``) on a kernel
    computed once per fit and sliced for every fold and ``C``; with ``kernel="rbf"`` and
    ``calibration="platt"`` it is the paper's classifier (``make_classifier("paper")``):
    the model, ``C`` and probabilities of ``GridSearchCV(SVC())`` followed by
    ``CalibratedClassifierCV(SVC(C=best), ensemble=False)`` on the same folds.

    Parameters
    ----------
    Cs : int or sequence of float
        The grid. An int ``k`` means ``np.logspace(-2, 2, k)``; the default 5 is
        0.01, 0.1, 1, 10, 100.
    kernel, gamma, class_weight, tol, max_iter, device, random_state
        As in :class:`SVC`. With ``loss="hinge"``, ``tol`` is libsvm's stopping tolerance
        (scikit-learn's ``SVC`` default is 1e-3, the paper preset's value), ``max_iter`` is
        unused, and ``gamma="scale"`` is computed per fold on its training rows, as
        scikit-learn's ``SVC`` does inside a grid search.
    cv : int or iterable of (train, test) index arrays
        Number of :func:`alamp_fast.svm.stratified_folds` (fewer when fewer samples can be
        held out), or the folds themselves.
    loss : {"squared_hinge", "hinge"}
        ``"squared_hinge"``: the batched one-vs-rest Newton solver (numpy or torch).
        ``"hinge"``: libsvm's one-vs-one C-SVC, CPU only (``device="cpu"``).
    calibration : {"temperature", "platt"}
        ``"temperature"``: ``softmax(decision / T)`` with one fitted ``T``. ``"platt"``: one
        Platt sigmoid per class on the one-vs-rest decision values, normalised to sum to 1
        (``CalibratedClassifierCV(method="sigmoid")``); ``predict`` is then the argmax of the
        probabilities. Both are fitted on the folds' held-out decision values.
    warm_start : bool
        Keep the solution of every fold and ``C`` and start the next ``fit`` from it
        (``loss="squared_hinge"`` only). Made for active learning, where each ``fit`` sees the
        previous labeled set plus a new batch: rows seen before (matched by content) keep
        their fold, new rows are dealt to the folds class by class, and each problem starts
        from the previous iteration's solution mapped onto the new labeled set. Any change of
        ``Cs``, ``kernel``, ``cv``, dtype or number of folds starts cold.

    Attributes
    ----------
    C_ : float
        The chosen ``C``.
    Cs_ : ndarray of shape (n_Cs,)
    cv_scores_ : ndarray of shape (n_Cs, n_folds)
        Held-out accuracy of every ``C`` on every fold.
    classes_, coef_, dual_coef_, X_fit_, intercept_, gamma_, n_iter_
        As in :class:`SVC`, for the refitted model (``loss="hinge"``: ``X_fit_`` holds the
        support vectors, ``libsvm_`` the fitted ``sklearn.svm.SVC`` on the precomputed
        kernel, ``n_fit_`` its number of training rows).
    temperature_ : float
        ``calibration="temperature"`` only.
    platt_ : ndarray of shape (n_classes or 1, 2)
        ``calibration="platt"`` only: ``(a, b)`` of each class's sigmoid
        ``1 / (1 + exp(a * decision + b))``.
    folds_ : ndarray of shape (n_samples,) or None
        Fold of each row given to ``fit`` with positive weight (``-1``: always in training);
        None when ``cv`` gave the folds.
    warm_started_ : bool
        Whether this fit started from the previous one's solution.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from alamp_fast.svm import SVCCV
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SVCCV(Cs=[0.01, 0.1, 1.0]).fit(X[:600] / 16, y[:600])
    >>> clf.C_ in (0.01, 0.1, 1.0), clf.cv_scores_.shape
    (True, (3, 5))
    >>> paper = SVCCV(kernel="rbf", loss="hinge", calibration="platt").fit(X[:300], y[:300])
    >>> paper.predict_proba(X[300:302]).shape
    (2, 10)
    """

    # solve a cold fit's C grid as a warm-started path (False: all C from zero in one batch,
    # the pre-warm-start solver, kept for benchmarks/bench_svm_warm.py's reference)
    _C_PATH = True
    _STICKY_FOLDS = True

    def __init__(
        self,
        Cs=DEFAULT_CS,
        kernel="linear",
        *,
        gamma="scale",
        class_weight=None,
        cv=5,
        tol=1e-5,
        max_iter=100,
        device="cpu",
        random_state=0,
        loss="squared_hinge",
        calibration="temperature",
        warm_start=False,
    ):
        self.Cs = Cs
        self.kernel = kernel
        self.gamma = gamma
        self.class_weight = class_weight
        self.cv = cv
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state
        self.loss = loss
        self.calibration = calibration
        self.warm_start = warm_start

    def __getstate__(self):
        # a pickled or copied model (sent to Dask workers, saved) carries no warm-start state:
        # it is only a starting point, and as large as the fold solutions
        state = super().__getstate__()
        state.pop("_warm_state", None)
        return state

    def _check_cv_params(self):
        xp = self._check_params()
        if self.loss not in ("squared_hinge", "hinge"):
            raise ValueError(f"loss={self.loss!r} must be 'squared_hinge' or 'hinge'")
        if self.calibration not in ("temperature", "platt"):
            raise ValueError(f"calibration={self.calibration!r} must be 'temperature' or 'platt'")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start={self.warm_start!r} must be True or False")
        if self.loss == "hinge" and xp.name != "numpy":
            raise ValueError(
                f"loss='hinge' runs libsvm on the host; device={self.device!r} needs "
                "loss='squared_hinge' (or use device='cpu')"
            )
        if self.loss == "hinge" and self.warm_start:
            raise ValueError(
                "warm_start=True needs loss='squared_hinge' (libsvm cannot start from a "
                "previous solution)"
            )
        return xp

    def fit(self, X, y, sample_weight=None):
        """Cross-validate ``C``, refit with it, and calibrate the probabilities.

        Parameters are as in :meth:`SVC.fit`.

        Returns
        -------
        self
        """
        xp = self._check_cv_params()
        Cs = make_cs(self.Cs)
        X, y_enc, sw, keep = self._validate_fit_data(X, y, sample_weight)
        self.Cs_ = Cs
        self.warm_started_ = False
        state = getattr(self, "_warm_state", None) if self.warm_start else None
        if not self.warm_start:
            self.__dict__.pop("_warm_state", None)
        if self.loss == "hinge":
            self.gamma_ = self._fold_gamma(X, sw)
            splits, folds = self._warm_splits(X, y_enc, keep, None)
        else:
            self.gamma_ = self._gamma(X, sw)
            splits, folds = self._warm_splits(X, y_enc, keep, state)
        self.folds_ = folds
        if not splits:
            best = fallback_c(Cs)
            warnings.warn(
                f"too few labeled samples for cv={self.cv!r} cross-validation (every class "
                f"has one sample); using C={Cs[best]:g} from the middle of the grid and "
                "fitting the probabilities on the training decision values",
                stacklevel=2,
            )
            self.C_ = float(Cs[best])
            self.cv_scores_ = np.zeros((Cs.size, 0))
            self.__dict__.pop("_warm_state", None)
            if self.loss == "hinge":
                self._fit_hinge_full(X, y_enc, sw)
                Z = self._libsvm_decision(X)
                self.n_iter_ = int(np.max(self.libsvm_.n_iter_))
                self._calibrate(Z, y_enc, sw)
                return self
            fmap, W, Z, n_iter = self._fit_batch(xp, X, y_enc, sw, [self.C_], None, with_full=True)
            self.n_iter_ = int(n_iter.max())
            self._set_model(xp, fmap, W, X)
            self._calibrate(Z[:, 0], y_enc, sw)
            return self
        if self.loss == "hinge":
            return self._fit_hinge(X, y_enc, sw, Cs, splits)
        fmap = self._feature_map(xp, X)
        n_cols = self.classes_.size if self.classes_.size > 2 else 1
        W0 = self._warm_W0(xp, fmap, X, Cs, len(splits), n_cols, state)
        if W0 is not None:
            # every fold and C from the previous fit's solution: one batch
            self.warm_started_ = True
            fmap, W, Z, n_iter = self._fit_batch(
                xp, X, y_enc, sw, Cs, splits, with_full=False, fmap=fmap, W0=W0
            )
        elif self._C_PATH:
            W, Z, n_iter = self._c_path(xp, fmap, X, y_enc, sw, Cs, splits, n_cols)
        else:  # every C from zero in one batch (the solver before warm starts; benchmarks)
            _, W, Z, n_iter = self._fit_batch(
                xp, X, y_enc, sw, Cs, splits, with_full=False, fmap=fmap
            )
        scores, held, y_held, sw_held = self._held_out(Z, y_enc, sw, splits, Cs.size)
        best = pick_c(Cs, scores)
        self.C_ = float(Cs[best])
        self.cv_scores_ = scores
        # warm start of the refit: the mean of the folds' solutions at the chosen C
        W0_full = 0.0
        for f in range(len(splits)):
            start = (f * Cs.size + best) * n_cols
            W0_full = W0_full + xp.take_cols(W, np.arange(start, start + n_cols))
        fmap, W_full, _, n_iter_full = self._fit_batch(
            xp,
            X,
            y_enc,
            sw,
            [self.C_],
            None,
            with_full=True,
            fmap=fmap,
            W0=W0_full * (1.0 / len(splits)),
        )
        self.n_iter_ = int(max(n_iter.max(), n_iter_full.max()))
        self._set_model(xp, fmap, W_full, X)
        self._calibrate(held[best], y_held, sw_held)
        if self.warm_start:
            self._keep_state(xp, fmap, W, X, folds, Cs, n_cols)
        return self

    # ---------------------------------------------------------------- squared hinge
    def _c_path(self, xp, fmap, X, y_enc, sw, Cs, splits, n_cols):
        """Every fold's problems along the ``C`` path, smallest ``C`` first, each ``C``
        warm-started from the solution of the previous one (all folds in one batch).

        Returns ``W`` (rank, n_folds * n_Cs * n_cols), ``Z`` (n, n_folds * n_Cs, n_cols) in
        the layout of :meth:`_fit_batch` and the Newton iterations of every problem.
        """
        n_sets = len(splits)
        order = np.argsort(Cs, kind="stable")
        W_all = xp.zeros((fmap.rank, n_sets * Cs.size * n_cols), fmap.dtype)
        Z_all = np.zeros((X.shape[0], n_sets * Cs.size, n_cols), dtype=np.float64)
        n_iter_all = np.zeros(n_sets * Cs.size * n_cols, dtype=np.int64)
        W_prev = None
        for j in order:
            _, W, Z, n_iter = self._fit_batch(
                xp, X, y_enc, sw, [Cs[j]], splits, with_full=False, fmap=fmap, W0=W_prev
            )
            W_prev = W
            for f in range(n_sets):
                block = f * Cs.size + j
                cols = np.arange(block * n_cols, (block + 1) * n_cols)
                _solver_put(
                    xp, W_all, cols, xp.take_cols(W, np.arange(f * n_cols, (f + 1) * n_cols))
                )
                Z_all[:, block] = Z[:, f]
                n_iter_all[cols] = n_iter[f * n_cols : (f + 1) * n_cols]
        return W_all, Z_all.astype(self._dtype), n_iter_all

    def _warm_splits(self, X, y_enc, keep, state):
        """The folds, and each row's fold id (``None`` for user-given folds).

        Without a usable previous state these are the folds of :meth:`_splits`; with one, rows
        seen in the previous fit keep their fold and new rows are dealt to the folds class by
        class (:func:`_extend_folds`).
        """
        if not _is_int(self.cv):
            return self._splits(y_enc, keep, allow_none=False), None
        folds = None
        if state is not None and state["cv"] == int(self.cv) and self._STICKY_FOLDS:
            prev = np.array([state["fold_of"].get(k, -2) for k in _row_keys(X)], np.int64)
            folds = _extend_folds(
                y_enc, self.classes_, state["labels"], prev, int(self.cv), self.random_state
            )
        if folds is None:
            folds = stratified_folds(y_enc, int(self.cv), self.random_state)
        if folds.max() < 1:
            return [], folds
        splits = [(folds != f, np.flatnonzero(folds == f)) for f in range(folds.max() + 1)]
        if any(test.size == 0 for _, test in splits):
            return [], folds
        return splits, folds

    def _warm_W0(self, xp, fmap, X, Cs, n_sets, n_cols, state):
        """The previous fit's fold solutions mapped onto this fit's eigenbasis, or None.

        A solution is kept as decision-function coefficients (``[coef; intercept]`` for the
        linear kernel, dual coefficients of the previous rows for RBF); since the columns of
        ``G`` are orthogonal, ``W0 = proj^T w`` (linear) and ``W0 = G[old]^T beta`` (RBF)
        give the same decision values on the new rows, up to the new kernel's span.
        """
        if state is None:
            return None
        same = (
            state["kernel"] == self.kernel
            and state["dtype"] == self._dtype
            and np.array_equal(state["Cs"], Cs)
            and state["n_sets"] == n_sets
            and state["n_features"] == X.shape[1]
        )
        if not same:
            return None
        # columns: previous class column -> this fit's class column
        prev_labels = state["labels"]
        lookup = {c: i for i, c in enumerate(self.classes_.tolist())}
        if (prev_labels.size > 2) != (self.classes_.size > 2) or state["n_cols"] < 1:
            return None
        if self.classes_.size > 2:
            col_map = np.array([lookup.get(c, -1) for c in prev_labels.tolist()])
        else:
            if not np.array_equal(prev_labels, self.classes_):
                return None
            col_map = np.array([0])
        coef = xp.asarray(state["coef"], fmap.dtype)
        if self.kernel == "linear":
            W_prev = fmap.proj.T @ coef
        else:
            pos = np.array([state["row_of"].get(k, -1) for k in _row_keys(X)], np.int64)
            new_rows = np.flatnonzero(pos >= 0)
            if new_rows.size == 0:
                return None
            beta = coef[xp.index(pos[new_rows])]
            if isinstance(fmap, _solver.KernelMap):  # sample space: the coefficients as such
                W_prev = xp.zeros((fmap.n, beta.shape[1]), fmap.dtype)
                W_prev[xp.index(new_rows)] = beta
            else:
                W_prev = fmap.G[xp.index(new_rows)].T @ beta
        n_blocks = n_sets * Cs.size
        W0 = xp.zeros((fmap.rank, n_blocks * n_cols), fmap.dtype)
        src, dst = [], []
        for block in range(n_blocks):
            for t_old, t_new in enumerate(col_map):
                if t_new >= 0:
                    src.append(block * state["n_cols"] + t_old)
                    dst.append(block * n_cols + t_new)
        if not src:
            return None
        _solver_put(xp, W0, np.array(dst), xp.take_cols(W_prev, np.array(src)))
        return W0

    def _keep_state(self, xp, fmap, W, X, folds, Cs, n_cols):
        if folds is None:  # user-given folds: nothing to carry over
            self.__dict__.pop("_warm_state", None)
            return
        coef = fmap.coef(W)
        keys = _row_keys(X)
        self._warm_state = {
            "kernel": self.kernel,
            "dtype": self._dtype,
            "Cs": Cs.copy(),
            "cv": int(self.cv),
            "n_sets": int(folds.max()) + 1,
            "n_cols": n_cols,
            "n_features": X.shape[1],
            "labels": self.classes_.copy(),
            "coef": xp.to_numpy(coef),
            "row_of": {k: i for i, k in enumerate(keys)},
            "fold_of": {k: int(f) for k, f in zip(keys, folds, strict=True)},
        }

    # ---------------------------------------------------------------- hinge (libsvm)
    def _fit_hinge(self, X, y_enc, sw, Cs, splits):
        """libsvm on slices of one squared-distance matrix, for every fold and C."""
        D = _hinge.sq_distances(X, X)
        n_classes = self.classes_.size
        labels = self.classes_[y_enc]
        weighted = not np.all(sw == 1.0)
        scores = np.zeros((Cs.size, len(splits)))
        n_cols = n_classes if n_classes > 2 else 1
        held = [np.zeros((y_enc.size, n_cols)) for _ in Cs]
        test_rows = []
        n_iter = 0
        for f, (train_mask, test) in enumerate(splits):
            train = np.flatnonzero(train_mask)
            gamma = self._fold_gamma(X[train], sw[train])
            K_train = np.exp(D[np.ix_(train, train)] * -gamma)
            K_test = np.exp(D[np.ix_(test, train)] * -gamma)
            test_rows.append(test)
            for j, C in enumerate(Cs):
                model = _hinge.libsvm_fit(
                    K_train,
                    labels[train],
                    C,
                    self.class_weight,
                    sw[train] if weighted else None,
                    float(self.tol),
                )
                n_iter = max(n_iter, int(np.max(model.n_iter_)))
                right = model.predict(K_test) == labels[test]
                scores[j, f] = np.average(right, weights=sw[test])
                held[j][test] = _ovr_columns(model, K_test, self.classes_)
        best = pick_c(Cs, scores)
        self.C_ = float(Cs[best])
        self.cv_scores_ = scores
        self._fit_hinge_full(X, y_enc, sw, D=D)
        # libsvm's iterations: the largest over every fold's, C's and the refit's models
        self.n_iter_ = max(n_iter, int(np.max(self.libsvm_.n_iter_)))
        rows = np.concatenate(test_rows)
        self._calibrate(held[best][rows], y_enc[rows], sw[rows])
        return self

    def _fold_gamma(self, X_train, sw_train) -> float:
        """``gamma`` of a row set: ``SVC(gamma="scale")``'s float64 ``X.var()`` when every
        weight is 1, the weighted (repetitions) variance otherwise."""
        if self.gamma == "scale" and np.all(sw_train == 1.0):
            return _hinge.scale_gamma(X_train)
        return self._gamma(X_train, sw_train)

    def _fit_hinge_full(self, X, y_enc, sw, D=None):
        if D is None:
            D = _hinge.sq_distances(X, X)
        for name in ("coef_", "dual_coef_", "X_fit_", "intercept_"):
            self.__dict__.pop(name, None)
        weighted = not np.all(sw == 1.0)
        model = _hinge.libsvm_fit(
            np.exp(D * -self.gamma_),
            self.classes_[y_enc],
            self.C_,
            self.class_weight,
            sw if weighted else None,
            float(self.tol),
        )
        self.libsvm_ = model
        self.n_fit_ = X.shape[0]
        self.X_fit_ = np.ascontiguousarray(X[model.support_])
        self.intercept_ = model.intercept_.copy()

    def _libsvm_decision(self, Xc) -> np.ndarray:
        """One-vs-rest-shaped decision values of libsvm's model, ``(rows, n_cols)``."""
        Xc = np.asarray(Xc)
        K = np.zeros((Xc.shape[0], self.n_fit_))
        K[:, self.libsvm_.support_] = np.exp(_hinge.sq_distances(Xc, self.X_fit_) * -self.gamma_)
        return _ovr_columns(self.libsvm_, K, self.classes_)


def _ovr_columns(model, K, classes) -> np.ndarray:
    """``model.decision_function(K)`` as ``(rows, n_cols)`` over all of ``classes``.

    A fold whose training rows miss a class gives that column the lowest float, as
    scikit-learn's ``cross_val_predict`` does.
    """
    Z = model.decision_function(K)
    if classes.size == 2:
        return Z.reshape(-1, 1)
    out = np.full((K.shape[0], classes.size), np.finfo(np.float64).min)
    cols = np.searchsorted(classes, model.classes_)
    if model.classes_.size == 2:
        out[:, cols[1]] = Z
        out[:, cols[0]] = -Z
    else:
        out[:, cols] = Z
    return out


def _row_keys(X: np.ndarray) -> list[bytes]:
    """A 16-byte digest of every row's bytes: how a warm start recognises rows it has seen."""
    import hashlib

    X = np.ascontiguousarray(X)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in X]


def _solver_put(xp, dst, cols: np.ndarray, src) -> None:
    dst[:, xp.index(cols)] = src


def _extend_folds(y_enc, classes, prev_labels, prev, n_folds, random_state):
    """Folds that keep the previous fit's assignment of the rows it saw.

    ``prev`` is each row's previous fold (``-1``: always in training, ``-2``: new row).
    Classes whose previous rows all stayed in training (a single sample then) are dealt
    afresh; other classes' new rows go, one by one, to the fold holding the fewest of that
    class. Returns None when the number of folds would differ from :func:`stratified_folds`
    (then the caller deals every row afresh).
    """
    folds = stratified_folds(y_enc, n_folds, random_state)
    n_splits = int(folds.max()) + 1
    seen = prev[prev >= 0]
    if n_splits < 2 or seen.size == 0 or int(seen.max()) + 1 != n_splits:
        return None
    rng = np.random.default_rng(0 if random_state is None else _seed_of(random_state))
    out = prev.copy()
    for k in range(classes.size):
        members = np.flatnonzero(y_enc == k)
        old = prev[members]
        if members.size < 2:
            out[members] = -1
            continue
        if not (old >= 0).any():
            out[members] = folds[members]  # singleton before (or new class): fresh deal
            continue
        count = np.bincount(old[old >= 0], minlength=n_splits)
        for i in rng.permutation(members[old == -2]):
            f = int(np.argmin(count))
            out[i] = f
            count[f] += 1
        # rows kept in training before (-1) stay there unless the class needs them held out
        out[members[old == -1]] = -1
    return out


def _seed_of(random_state) -> int:
    if _is_int(random_state):
        return int(random_state)
    return 0


def _sample_weight(sample_weight, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.ndim == 0:
        return np.full(n, float(sw)) if np.isfinite(sw) and sw > 0 else _bad_weight(sw)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        _bad_weight(sw)
    return sw


def _bad_weight(sw):
    bad = np.ravel(sw)[~(np.isfinite(np.ravel(sw)) & (np.ravel(sw) >= 0))][0]
    raise ValueError(f"sample_weight must be finite and non-negative, got {bad!r}")
