"""The fine-tuning (FT) scheme in the AL protocol: a ResNet-18 fine-tuned at every iteration.

The SVM scheme (:func:`alamp_fast.al.protocol.simulate`) trains a shallow classifier on fixed
features. Here the network itself is trained: at every iteration a fresh ResNet-18 starts from
the source weights (all layers but ``fc``; random initialisation without weights), is
fine-tuned on the labeled images (:mod:`alamp_fast.finetune.train`, the paper's settings), and
one forward pass over the pool gives both the class probabilities the strategies read and the
penultimate features that ``coreset`` and ``badge`` use: the *current* model's features, not
fixed ones.

:func:`simulate_ft` runs the protocol of :func:`~alamp_fast.al.protocol.simulate` (same initial
batches for every strategy, same seeds, same per-iteration records) and returns the same
:class:`~alamp_fast.al.protocol.SimulationResult`, so :func:`alamp_fast.al.report.write_results`
and the plots work unchanged. On imbalanced pools the FT counterpart of the cost-sensitive
SVM is *thresholding*: probabilities divided by the labeled class priors, for the test
predictions and for the acquisition alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from alamp_fast.al.imbalance import IMBALANCED_IR
from alamp_fast.al.loop import (
    PoolView,
    open_checkpoint,
    prepare_protocol,
    run_protocol,
    warm_up,
)
from alamp_fast.al.results import SimulationResult, fit_seed, strategy_seed
from alamp_fast.al.strategies import (
    Strategy,
    _as_probs,
    _is_int,
    _name_seed,
    _scalar_int,
    canonical_name,
    get_strategy,
)
from alamp_fast.badge import badge

try:  # scikit-learn is a dependency; the guard mirrors protocol.py
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover
    BaseEstimator = ClassifierMixin = object

__all__ = [
    "FT_STRATEGIES",
    "BadgeSampling",
    "FineTuneClassifier",
    "make_ft_strategy",
    "simulate_ft",
]

#: Strategies of the FT scheme, in table order.
FT_STRATEGIES = ("random", "margin", "entropy", "coreset", "alamp", "alamp-div", "badge")


class BadgeSampling(Strategy):
    """BADGE (``badge``): k-means++ seeding over last-layer gradient embeddings.

    Needs the pool's probabilities and the current model's penultimate features
    (``features``); see :func:`alamp_fast.badge`. Draws are a function of ``(seed,
    iteration)``, like :class:`~alamp_fast.al.strategies.RandomSampling`.

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
    >>> feats = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    >>> BadgeSampling(seed=0).query(probs, 1, labeled=[0], features=feats).tolist()
    [1]
    """

    name = "badge"
    needs_probs = True
    needs_features = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)

    def _select(self, probs, budget, labeled, features):
        if features is None:
            raise ValueError("badge needs the pool's penultimate features (features=None)")
        rng = np.random.default_rng([self.seed, _name_seed(self.name), self.iteration])
        return badge(_as_probs(probs, self.name), features, budget, rng, exclude=labeled)

    def state_dict(self):
        state = super().state_dict()
        state["seed"] = np.asarray(self.seed, dtype=np.int64)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.seed = _scalar_int(state["seed"], "seed")


def make_ft_strategy(name: str, *, seed: int | None = None, **kwargs) -> Strategy:
    """A fresh strategy by name: ``badge`` or any name of :func:`~alamp_fast.al.strategies.get_strategy`.

    Examples
    --------
    >>> make_ft_strategy("badge", seed=1).name, make_ft_strategy("marg-div").name
    ('badge', 'margin-div')
    """
    if isinstance(name, str) and name.strip().lower() == "badge":
        return BadgeSampling(seed=seed, **kwargs)
    return get_strategy(name, seed=seed, **kwargs)


def _canonical(name: str) -> str:
    if isinstance(name, str) and name.strip().lower() == "badge":
        return "badge"
    return canonical_name(name)


def _model_spec(weights, image_hw, small_input, width) -> tuple[bool, int]:
    """``small_input`` and ``width``: given, else read from the weights' ``conv1``, else
    small for images up to 64 pixels and 64 channels."""
    conv1 = weights.get("conv1.weight") if isinstance(weights, Mapping) else None
    if small_input is None:
        small_input = conv1.shape[-1] == 3 if conv1 is not None else min(image_hw) <= 64
    if width is None:
        width = int(conv1.shape[0]) if conv1 is not None else 64
    return bool(small_input), int(width)


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """A ResNet-18 fine-tuned on images, with the scikit-learn classifier methods.

    ``fit`` builds a fresh network (seeded by ``random_state``), loads ``weights`` into every
    layer but ``fc`` and trains it (:func:`alamp_fast.finetune.train.fit`). ``predict_proba``
    applies thresholding when ``threshold`` is true (priors of the labels given to ``fit``).

    Parameters
    ----------
    n_classes : int, optional
        Outputs of the network; classes are ``0 .. n_classes - 1`` (default: ``max(y) + 1``).
        The protocol passes the pool's class count, so columns keep their meaning when a class
        has no label yet.
    weights : mapping, path or None
        Source weights (torchvision-style state dict); None trains from scratch.
    small_input, width : optional
        See :func:`~alamp_fast.finetune.resnet.resnet18`; None: read from ``weights``
        (``conv1``), else small stem for images up to 64 pixels and width 64.
    config : TrainConfig, optional
        Training settings (the paper's when None).
    threshold : bool
        Divide probabilities by the training class priors (imbalanced pools).
    random_state : int, optional
        Seeds the initialisation of the new layers, the batch order and the augmentation.

    Examples
    --------
    >>> import numpy as np
    >>> from alamp_fast.finetune.train import TrainConfig
    >>> X = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    >>> clf = FineTuneClassifier(3, width=4, config=TrainConfig(epochs=1, device="cpu"))
    >>> clf.fit(X, [0, 1, 2, 0, 1, 2]).predict_proba(X).shape, clf.transform(X).shape
    ((6, 3), (6, 32))
    """

    def __init__(
        self,
        n_classes=None,
        *,
        weights=None,
        small_input=None,
        width=None,
        config=None,
        threshold: bool = False,
        random_state=None,
    ):
        self.n_classes = n_classes
        self.weights = weights
        self.small_input = small_input
        self.width = width
        self.config = config
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, X, y):
        import torch

        from alamp_fast.finetune.resnet import load_backbone, load_state_dict_file, resnet18
        from alamp_fast.finetune.train import TrainConfig, as_images, class_priors, fit

        X = as_images(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],) or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
            raise ValueError(f"y must be {X.shape[0]} non-negative integer labels")
        n_classes = int(y.max()) + 1 if self.n_classes is None else int(self.n_classes)
        if y.size and y.max() >= n_classes:
            raise ValueError(f"label {int(y.max())} is not below n_classes={n_classes}")
        weights = self.weights
        if weights is not None and not isinstance(weights, Mapping):
            weights = load_state_dict_file(weights)
        small_input, width = _model_spec(weights, X.shape[1:3], self.small_input, self.width)
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = resnet18(n_classes, small_input=small_input, width=width)
        if weights is not None:
            load_backbone(model, weights)
        self.config_ = self.config if self.config is not None else TrainConfig()
        self.history_ = fit(model, X, y, config=self.config_, seed=seed)
        self.model_ = model
        self.classes_ = np.arange(n_classes)
        self.priors_ = class_priors(y, n_classes) if self.threshold else None
        return self

    def predict_outputs(self, X):
        """``(probs, features)`` of one forward pass: (thresholded) probabilities and the
        penultimate embeddings."""
        from alamp_fast.finetune.train import predict

        return predict(self.model_, X, config=self.config_, priors=self.priors_, features=True)

    def predict_proba(self, X):
        from alamp_fast.finetune.train import predict

        return predict(self.model_, X, config=self.config_, priors=self.priors_)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def transform(self, X):
        """The penultimate (``fc`` input) features of the fitted network."""
        return self.predict_outputs(X)[1]


def _as_image_split(X_train, y_train, X_test, y_test):
    if y_train is None and hasattr(X_train, "X_train"):
        ds = X_train
        info = ds.describe() if hasattr(ds, "describe") else {"name": "images"}
        return ds.X_train, ds.y_train, ds.X_test, ds.y_test, info
    if y_train is None or X_test is None or y_test is None:
        raise ValueError("simulate_ft needs X_train, y_train, X_test and y_test (or an ImageSplit)")
    return X_train, y_train, X_test, y_test, {"name": "arrays"}


def simulate_ft(
    X_train,
    y_train=None,
    X_test=None,
    y_test=None,
    *,
    strategies=FT_STRATEGIES,
    weights=None,
    config=None,
    small_input=None,
    width=None,
    init: int = 200,
    step: int = 200,
    iterations: int = 15,
    runs: int = 3,
    seed: int = 0,
    targets=(),
    imbalance: float | None = None,
    threshold: bool | None = None,
    strategy_kwargs: dict | None = None,
    progress=False,
    checkpoint=None,
    resume: bool = False,
) -> SimulationResult:
    """Run the AL protocol with the fine-tuning scheme on images.

    Parameters
    ----------
    X_train, y_train : (n_pool, H, W, 3) uint8 images, (n_pool,) labels
        The pool and its labels. An :class:`~alamp_fast.finetune.data.ImageSplit` may be
        passed as ``X_train`` alone.
    X_test, y_test : the evaluation split (labels must be classes of the pool).
    strategies : sequence of str or Strategy
        :data:`FT_STRATEGIES` by default; any name of
        :data:`alamp_fast.al.strategies.STRATEGIES`, ``badge``, or strategy objects.
    weights : mapping, path or None
        Source model (torchvision-style ResNet-18 state dict); every iteration fine-tunes a
        fresh copy, ``fc`` newly initialised for the pool's classes. None: from scratch.
    config : TrainConfig, optional
        Fine-tuning settings (the paper's: 80 epochs, SGD Nesterov 0.9, lr 0.01 / 10 on a
        10-epoch plateau, weight decay 0.001).
    small_input, width : optional
        Network variant (see :class:`FineTuneClassifier`).
    init, step, iterations, runs, seed, targets, imbalance, strategy_kwargs, progress
        As in :func:`alamp_fast.al.protocol.simulate`.
    checkpoint, resume
        As in :func:`alamp_fast.al.protocol.simulate`: every finished (strategy, run) is saved
        there, and an interrupted call resumes from them.
    threshold : bool, optional
        Thresholding by the labeled class priors; None: on for imbalanced pools (``imbalance``
        given or pool ir >= 0.1), the rule ``simulate`` uses for the cost-sensitive SVM.

    Returns
    -------
    SimulationResult
        ``config["scheme"] == "ft"``; ``fit_s`` is the fine-tuning time, ``predict_s`` the
        forward passes over the test split and the pool.

    Examples
    --------
    >>> import numpy as np
    >>> from alamp_fast.finetune.train import TrainConfig
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(40) % 2
    >>> X = (rng.random((40, 16, 16, 3)) * 100 + 120 * y[:, None, None, None]).astype(np.uint8)
    >>> res = simulate_ft(X[:30], y[:30], X[30:], y[30:], strategies=["random", "badge"],
    ...                   config=TrainConfig(epochs=1, device="cpu"), width=4, init=6, step=4,
    ...                   iterations=1, runs=1)
    >>> res.summary()["badge"]["labeled"]
    [6, 10]
    """
    from alamp_fast.finetune.resnet import load_state_dict_file
    from alamp_fast.finetune.train import TrainConfig, as_images

    X_train, y_train, X_test, y_test, dataset_info = _as_image_split(
        X_train, y_train, X_test, y_test
    )
    X_train = as_images(X_train, "X_train")
    X_test = as_images(X_test, "X_test")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"train images {X_train.shape[1:]} and test images {X_test.shape[1:]} differ"
        )
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if y_train.shape != (X_train.shape[0],) or y_test.shape != (X_test.shape[0],):
        raise ValueError(
            f"label shapes {y_train.shape}, {y_test.shape} do not match "
            f"{X_train.shape[0]} and {X_test.shape[0]} images"
        )
    config = TrainConfig() if config is None else config
    setup = prepare_protocol(
        y_train,
        y_test,
        strategies=strategies,
        canonical=_canonical,
        strategy_type=Strategy,
        init=init,
        step=step,
        iterations=iterations,
        runs=runs,
        seed=seed,
        targets=targets,
        imbalance=imbalance,
        strategy_kwargs=strategy_kwargs,
    )
    names, n_classes, strategy_kwargs = setup.names, setup.n_classes, setup.strategy_kwargs
    X_pool = X_train[setup.pool_rows]
    n_pool = X_pool.shape[0]
    if threshold is None:
        threshold = imbalance is not None or setup.pool_ir >= IMBALANCED_IR
    if weights is not None and not isinstance(weights, Mapping):
        weights_desc = str(weights)
        weights = load_state_dict_file(weights)
    else:
        weights_desc = None if weights is None else "state dict"
    small_input, width = _model_spec(weights, X_pool.shape[1:3], small_input, width)

    config_doc = {
        "scheme": "ft",
        "strategies": names,
        "classifier": "resnet18-ft",
        "cost_sensitive": False,
        "threshold": bool(threshold),
        "weights": weights_desc,
        "small_input": small_input,
        "width": width,
        "train": config.to_dict(),
        "init": setup.init,
        "step": setup.step,
        "iterations": setup.iterations,
        "runs": setup.runs,
        "seed": setup.seed,
        "targets": list(setup.targets),
        "imbalance": imbalance,
        "strategy_kwargs": {
            k: {kk: repr(vv) if callable(vv) else vv for kk, vv in v.items()}
            for k, v in strategy_kwargs.items()
        },
    }
    dataset_info = {
        **dataset_info,
        "image_shape": list(X_pool.shape[1:]),
        "n_pool": int(n_pool),
        "n_test": int(X_test.shape[0]),
        "n_classes": int(n_classes),
        "pool_ir": setup.pool_ir,
        "pool_class_counts": setup.pool_counts.tolist(),
    }
    ckpt = open_checkpoint(
        checkpoint, config=config_doc, dataset=dataset_info,
        arrays=(X_pool, setup.y_pool, X_test, setup.y_eval), resume=resume,
    )
    rng = np.random.default_rng(0)
    warm_up(
        names,
        setup.objects,
        strategy_kwargs,
        make_ft_strategy,
        n_classes,
        rng.standard_normal((64, 8 * width)).astype(np.float32),
        probs_dtype=np.float32,
    )
    model_kw = {
        "weights": weights,
        "small_input": small_input,
        "width": width,
        "config": config,
        "threshold": bool(threshold),
    }
    scheme = _FTScheme(X_pool, X_test, n_classes, model_kw)

    def make_strategy(key, run):
        return make_ft_strategy(
            key, seed=strategy_seed(setup.seed, run, key), **strategy_kwargs.get(key, {})
        )

    records, total_s = run_protocol(
        setup, scheme, make_strategy, progress=progress, desc="simulate ft", checkpoint=ckpt
    )
    return SimulationResult(
        config=config_doc,
        dataset=dataset_info,
        strategies=names,
        records=records,
        total_s=total_s,
        pool_rows=setup.pool_rows,
    )


class _FTScheme:
    """The FT scheme for :func:`~alamp_fast.al.loop.run_protocol`: a fresh ResNet-18
    fine-tuned at every iteration; one forward pass gives the pool's probabilities and the
    current model's penultimate features."""

    def __init__(self, X_pool, X_test, n_classes, model_kw):
        self.X_pool, self.X_test, self.n_classes, self.model_kw = (
            X_pool,
            X_test,
            n_classes,
            model_kw,
        )

    def new_classifier(self, run_seed, iteration):
        # the same training seed for every strategy at a given run and iteration
        return FineTuneClassifier(
            self.n_classes, random_state=fit_seed(run_seed, iteration), **self.model_kw
        )

    def pool_view(self, clf, strategy) -> PoolView:
        if strategy.needs_probs or strategy.needs_features:
            probs, feats = clf.predict_outputs(self.X_pool)
        else:
            probs = feats = None
        if feats is None:
            feats = np.empty((self.X_pool.shape[0], 0), np.float32)
        return PoolView(probs=probs if strategy.needs_probs else None, features=feats)
