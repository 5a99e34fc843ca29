"""The fine-tuning (FT) scheme in the AL protocol: a ResNet-18 fine-tuned at every iteration.

The SVM scheme (:func:`alamp_fast.protocol.simulate`) trains a shallow classifier on fixed
features. Here the network itself is trained: at every iteration a fresh ResNet-18 starts from
the source weights (all layers but ``fc``; random initialisation without weights), is
fine-tuned on the labeled images (:mod:`alamp_fast.finetune.train`, the paper's settings), and
one forward pass over the pool gives both the class probabilities the strategies read and the
penultimate features that ``coreset`` and ``badge`` use: the *current* model's features, not
fixed ones.

:func:`simulate_ft` runs the protocol of :func:`~alamp_fast.protocol.simulate` (same initial
batches for every strategy, same seeds, same per-iteration records) and returns the same
:class:`~alamp_fast.protocol.SimulationResult`, so :func:`alamp_fast.report.write_results`
and the plots work unchanged. On imbalanced pools the FT counterpart of the cost-sensitive
SVM is *thresholding*: probabilities divided by the labeled class priors, for the test
predictions and for the acquisition alike.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Mapping

import numpy as np

from alamp_fast.badge import badge
from alamp_fast.imbalance import imbalance_ratio, induce_imbalance
from alamp_fast.protocol import (
    IMBALANCED_IR,
    RunRecord,
    SimulationResult,
    _check_int,
    _check_picks,
    derive_seed,
)
from alamp_fast.strategies import (
    Strategy,
    _as_probs,
    _is_int,
    _name_seed,
    _scalar_int,
    canonical_name,
    get_strategy,
)

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
    iteration)``, like :class:`~alamp_fast.strategies.RandomSampling`.

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
    """A fresh strategy by name: ``badge`` or any name of :func:`~alamp_fast.strategies.get_strategy`.

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
        :data:`alamp_fast.strategies.STRATEGIES`, ``badge``, or strategy objects.
    weights : mapping, path or None
        Source model (torchvision-style ResNet-18 state dict); every iteration fine-tunes a
        fresh copy, ``fc`` newly initialised for the pool's classes. None: from scratch.
    config : TrainConfig, optional
        Fine-tuning settings (the paper's: 80 epochs, SGD Nesterov 0.9, lr 0.01 / 10 on a
        10-epoch plateau, weight decay 0.001).
    small_input, width : optional
        Network variant (see :class:`FineTuneClassifier`).
    init, step, iterations, runs, seed, targets, imbalance, strategy_kwargs, progress
        As in :func:`alamp_fast.protocol.simulate`.
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
    init = _check_int("init", init, 2)
    step = _check_int("step", step, 1)
    iterations = _check_int("iterations", iterations, 0)
    runs = _check_int("runs", runs, 1)
    seed = _check_int("seed", seed, 0)
    targets = tuple(float(t) for t in targets)
    for t in targets:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"target accuracy {t} is not in [0, 1]")
    config = TrainConfig() if config is None else config
    strategy_kwargs = {_canonical(k): v for k, v in (strategy_kwargs or {}).items()}

    names: list[str] = []
    objects: dict[str, Strategy] = {}
    for s in strategies:
        key = s.name if isinstance(s, Strategy) else _canonical(s)
        if isinstance(s, Strategy):
            objects[key] = s
        if key in names:
            raise ValueError(f"strategy {key!r} is listed twice")
        names.append(key)
    if not names:
        raise ValueError("no strategies given")
    for key in strategy_kwargs:
        if key not in names:
            raise ValueError(f"strategy_kwargs for {key!r}, which is not among {names}")

    classes, y_pool = np.unique(y_train, return_inverse=True)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_eval = np.fromiter((lookup.get(c, -1) for c in y_test.tolist()), np.int64, y_test.size)
    if (y_eval < 0).any():
        raise ValueError(
            f"test labels {np.unique(y_test[y_eval < 0])[:5].tolist()} are not classes of the pool"
        )
    n_classes = classes.size
    if n_classes < 2:
        raise ValueError(f"the pool has {n_classes} class; need at least 2")
    pool_rows = np.arange(X_train.shape[0])
    if imbalance is not None:
        pool_rows = induce_imbalance(y_pool, imbalance, seed)
    X_pool = X_train[pool_rows]
    y_pool = y_pool[pool_rows]
    pool_counts = np.bincount(y_pool, minlength=n_classes)
    pool_ir = imbalance_ratio(pool_counts)
    if threshold is None:
        threshold = imbalance is not None or pool_ir >= IMBALANCED_IR
    n_pool = X_pool.shape[0]
    budget = init + iterations * step
    if budget > n_pool:
        raise ValueError(
            f"init + iterations * step = {init} + {iterations} * {step} = {budget} exceeds the "
            f"{n_pool} pool samples"
        )
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
        "init": init,
        "step": step,
        "iterations": iterations,
        "runs": runs,
        "seed": seed,
        "targets": list(targets),
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
        "pool_ir": pool_ir,
        "pool_class_counts": pool_counts.tolist(),
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=runs * len(names) * (iterations + 1), unit="it", desc="simulate ft")

    _warm_up(names, objects, strategy_kwargs, n_classes, width)
    model_kw = {
        "weights": weights,
        "small_input": small_input,
        "width": width,
        "config": config,
        "threshold": bool(threshold),
    }
    records: dict[str, list[RunRecord]] = {k: [] for k in names}
    t_start = time.perf_counter()
    try:
        for run in range(runs):
            run_seed = derive_seed(seed, run)
            rng = np.random.default_rng(run_seed)
            initial = rng.choice(n_pool, size=init, replace=False).astype(np.int64)
            if np.unique(y_pool[initial]).size < 2:
                raise ValueError(
                    f"run {run}: the initial batch of {init} samples holds a single class; "
                    "use a larger init"
                )
            for key in names:
                if key in objects:
                    strategy = objects[key]
                    strategy.reset()
                else:
                    strategy = make_ft_strategy(
                        key,
                        seed=derive_seed(seed, run, zlib.crc32(key.encode())),
                        **strategy_kwargs.get(key, {}),
                    )
                records[key].append(
                    _one_run(
                        strategy,
                        key,
                        run,
                        run_seed,
                        initial,
                        X_pool,
                        y_pool,
                        X_test,
                        y_eval,
                        n_classes,
                        model_kw,
                        step,
                        iterations,
                        bar,
                    )
                )
    finally:
        if bar is not None:
            bar.close()
    return SimulationResult(
        config=config_doc,
        dataset=dataset_info,
        strategies=names,
        records=records,
        total_s=time.perf_counter() - t_start,
        pool_rows=pool_rows,
    )


def _warm_up(names, objects, strategy_kwargs, n_classes, width) -> None:
    """Compile the numba kernels of the strategies outside the recorded query times."""
    rng = np.random.default_rng(0)
    probs = rng.random((64, n_classes))
    feats = rng.standard_normal((64, 8 * width)).astype(np.float32)
    for key in names:
        if key in objects:
            continue  # user objects: their state must not be touched
        strategy = make_ft_strategy(key, seed=0, **strategy_kwargs.get(key, {}))
        for _ in range(2):  # the second query exercises alamp's stateful path
            strategy.query(probs.astype(np.float32), 2, labeled=np.arange(2), features=feats)


def _one_run(
    strategy,
    key,
    run,
    run_seed,
    initial,
    X_pool,
    y_pool,
    X_test,
    y_eval,
    n_classes,
    model_kw,
    step,
    iterations,
    bar,
) -> RunRecord:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    n_pool = X_pool.shape[0]
    is_labeled = np.zeros(n_pool, dtype=bool)
    is_labeled[initial] = True
    order = [initial]
    n_points = iterations + 1
    rec = {
        k: np.zeros(n_points)
        for k in ("accuracy", "balanced_accuracy", "ir", "fit_s", "predict_s", "query_s")
    }
    labeled_counts = np.zeros(n_points, dtype=np.int64)
    class_counts = np.zeros((n_points, n_classes), dtype=np.int64)
    for it in range(n_points):
        labeled = np.concatenate(order)
        t0 = time.perf_counter()
        # the same training seed for every strategy at a given run and iteration
        clf = FineTuneClassifier(n_classes, random_state=derive_seed(run_seed, it), **model_kw)
        clf.fit(X_pool[labeled], y_pool[labeled])
        t1 = time.perf_counter()
        y_pred = clf.predict(X_test)
        rec["accuracy"][it] = accuracy_score(y_eval, y_pred)
        with warnings.catch_warnings():
            # Early models may predict a class absent from the test split; the score is fine.
            warnings.simplefilter("ignore", UserWarning)
            rec["balanced_accuracy"][it] = balanced_accuracy_score(y_eval, y_pred)
        counts = np.bincount(y_pool[labeled], minlength=n_classes)
        class_counts[it] = counts
        labeled_counts[it] = labeled.size
        rec["ir"][it] = imbalance_ratio(counts)
        rec["fit_s"][it] = t1 - t0
        if it < iterations:
            if strategy.needs_probs or strategy.needs_features:
                probs, feats = clf.predict_outputs(X_pool)
            else:
                probs = feats = None
            t3 = time.perf_counter()
            picks = strategy.query(
                probs if strategy.needs_probs else None,
                step,
                labeled=labeled,
                features=feats if feats is not None else np.empty((n_pool, 0), np.float32),
            )
            t4 = time.perf_counter()
            picks = np.asarray(picks, dtype=np.int64)
            _check_picks(key, picks, step, n_pool, is_labeled)
            is_labeled[picks] = True
            order.append(picks)
            rec["predict_s"][it] = t3 - t1
            rec["query_s"][it] = t4 - t3
        else:
            rec["predict_s"][it] = time.perf_counter() - t1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"run {run} {key} n={labeled.size}", refresh=False)
    return RunRecord(
        strategy=key,
        run=run,
        seed=run_seed,
        labeled=labeled_counts,
        class_counts=class_counts,
        order=np.concatenate(order),
        **rec,
    )
