"""Batched SVMs for the paper's transfer scheme: fixed features, ``C`` by cross-validation.

:class:`SVC` and :class:`SVCCV` are scikit-learn classifiers (one-vs-rest, squared hinge,
linear or RBF kernel, ``class_weight`` for the cost-sensitive variant) whose fit solves every
class, every candidate ``C`` and every cross-validation fold as one batched problem, on numpy
or on torch (CPU or CUDA). ``predict_proba`` is a softmax of the decision values with a
temperature fitted on held-out folds, and :meth:`SVC.predict_top2_margin` streams a pool of
any size to ``af.top2_margin`` of those probabilities.

:func:`cross_validate_C` chooses ``C`` the same way for any scikit-learn-compatible
classifier (``sklearn.svm.SVC``, ``thundersvm.SVC``, ``cuml.svm.SVC``...), and
:func:`top2_margin_chunked` streams any classifier's ``predict_proba``.

How it works: ``docs/svm.md``. Importing this package imports neither torch nor CuPy.
"""

from alamp_fast.svm._cv import DEFAULT_CS, make_cs, stratified_folds, top2_margin_chunked
from alamp_fast.svm._estimators import SVC, SVCCV
from alamp_fast.svm._search import CVResult, cross_validate_C

__all__ = [
    "DEFAULT_CS",
    "SVC",
    "SVCCV",
    "CVResult",
    "cross_validate_C",
    "make_cs",
    "stratified_folds",
    "top2_margin_chunked",
]
