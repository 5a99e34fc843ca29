"""A source model without downloads: pretrain on some classes, run AL on the others.

The paper fine-tunes an ImageNet-pretrained ResNet-18 and runs AL on IMN-100, classes disjoint
from the pretraining set. Without network access the same structure is reproduced from one
labeled image collection:

1. split its classes into a *source* set and a disjoint *target* set (:func:`split_classes`);
2. train a ResNet-18 from scratch on every source image (:func:`pretrain_source_model`);
3. run the FT-scheme protocol on the target classes, each iteration fine-tuning a fresh copy
   of the source model with a new ``fc`` (:func:`source_target_experiment`).

With ``weights`` (a torchvision-style state dict, e.g. ImageNet weights saved elsewhere) step 2
is skipped. ``alamp-fast finetune`` (or ``python -m alamp_fast.finetune.pretrain``) runs it end
to end (its options and checks: :mod:`alamp_fast.cli.finetune`); importing this module imports
neither torch nor Pillow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = [
    "pretrain_source_model",
    "source_target_experiment",
    "split_classes",
]


def split_classes(classes, source, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint source and target class codes (each sorted).

    Parameters
    ----------
    classes : sequence of str
        Class names of the collection (codes are positions).
    source : int or sequence of str
        How many source classes (a seeded random subset), or their names.
    seed : int
        Seed of the random subset.

    Examples
    --------
    >>> split_classes(["a", "b", "c", "d"], ["b", "d"])
    (array([1, 3]), array([0, 2]))
    >>> [len(s) for s in split_classes(list("abcdefgh"), 5, seed=1)]
    [5, 3]
    """
    names = [str(c) for c in classes]
    n = len(names)
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        if not 1 <= source <= n - 2:
            raise ValueError(
                f"source={source} classes: need 1..{n - 2} of the {n}, leaving 2 or more targets"
            )
        src = np.sort(np.random.default_rng(seed).permutation(n)[: int(source)])
    else:
        wanted = [str(s) for s in source]
        unknown = [s for s in wanted if s not in names]
        if unknown:
            raise ValueError(f"unknown source classes {unknown[:5]}; classes are {names[:10]}...")
        src = np.sort(np.unique([names.index(s) for s in wanted]))
        if n - src.size < 2:
            raise ValueError(f"{src.size} source classes leave fewer than 2 of the {n} as targets")
    tgt = np.setdiff1d(np.arange(n), src)
    return src.astype(np.int64), tgt.astype(np.int64)


def pretrain_source_model(images, *, config=None, small_input=None, width=None, seed: int = 0):
    """Train a ResNet-18 from scratch on every image of ``images`` (the source classes).

    Parameters
    ----------
    images : ImageSet
        Source images and labels (:mod:`alamp_fast.finetune.data`).
    config : TrainConfig, optional
        Training settings (the fine-tuning defaults when None).
    small_input, width : optional
        Network variant; None: small stem for images up to 64 pixels, width 64.
    seed : int
        Initialisation, batch order and augmentation.

    Returns
    -------
    state_dict : dict of tensors (on the CPU), torchvision key names
    history : dict, as returned by :func:`alamp_fast.finetune.train.fit`
    """
    from alamp_fast.finetune.scheme import FineTuneClassifier

    clf = FineTuneClassifier(
        len(images.classes),
        small_input=small_input,
        width=width,
        config=config,
        random_state=seed,
    ).fit(images.X, images.y)
    state = {k: v.detach().cpu().clone() for k, v in clf.model_.state_dict().items()}
    return state, clf.history_


def source_target_experiment(
    images,
    *,
    test_images=None,
    source=None,
    weights=None,
    target_classes=None,
    pretrain_config=None,
    config=None,
    test_size: float = 0.25,
    small_input=None,
    width=None,
    seed: int = 0,
    out_dir=None,
    **simulate_kwargs,
):
    """Pretrain on source classes (or take ``weights``), then the FT protocol on the targets.

    Parameters
    ----------
    images : ImageSet
        The collection (:func:`~alamp_fast.finetune.data.load_images`).
    test_images : ImageSet, optional
        Evaluation images with the same class names; default: a stratified ``test_size``
        split of the target images.
    source : int or sequence of str, optional
        Source classes (count or names) for pretraining; the others are the targets.
    weights : mapping or path, optional
        Start from these weights instead of pretraining (``source`` must then be None).
    target_classes : sequence of str, optional
        Restrict the AL run to these classes (default: every class not in ``source``).
    pretrain_config, config : TrainConfig, optional
        Settings of the pretraining and of the per-iteration fine-tuning.
    test_size : float
        Held-out fraction of the target images when there is no ``test_images``.
    small_input, width, seed
        Network variant and the base seed of everything.
    out_dir : path, optional
        Writes ``source_model.pt`` (after pretraining) and the results of
        :func:`alamp_fast.al.report.write_results` there.
    **simulate_kwargs
        Passed to :func:`~alamp_fast.finetune.scheme.simulate_ft` (strategies, init, step,
        iterations, runs, targets, imbalance, threshold, strategy_kwargs, progress;
        ``plots`` and ``include_order`` go to the writer).

    Returns
    -------
    result : SimulationResult
    info : dict
        ``source_classes``, ``target_classes``, ``pretrain`` (history summary or None),
        ``weights`` and, with ``out_dir``, ``paths``.
    """
    import torch

    from alamp_fast.finetune.data import ImageSplit, split_images
    from alamp_fast.finetune.scheme import simulate_ft

    plots = simulate_kwargs.pop("plots", False)
    include_order = simulate_kwargs.pop("include_order", False)
    if weights is not None and source is not None:
        raise ValueError("weights and source classes exclude each other: pretrain or load")
    if source is not None:
        src, tgt = split_classes(images.classes, source, seed)
    else:
        src, tgt = np.empty(0, dtype=np.int64), np.arange(len(images.classes))
    if target_classes is not None:
        names = [str(c) for c in target_classes]
        unknown = [c for c in names if c not in images.classes]
        if unknown:
            raise ValueError(f"unknown target classes {unknown[:5]}")
        wanted = np.array([images.classes.index(c) for c in names], dtype=np.int64)
        clash = np.intersect1d(wanted, src)
        if clash.size:
            raise ValueError(
                f"target classes {[images.classes[c] for c in clash]} are source classes"
            )
        tgt = np.sort(np.unique(wanted))
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    pretrain_info = None
    weights_desc = (
        None
        if weights is None
        else str(weights)
        if isinstance(weights, (str, Path))
        else "state dict"
    )
    if src.size:
        source_set = images.subset(src)
        weights, history = pretrain_source_model(
            source_set, config=pretrain_config, small_input=small_input, width=width, seed=seed
        )
        pretrain_info = {
            "n_images": int(source_set.y.size),
            "epochs": len(history["loss"]),
            "final_loss": history["loss"][-1] if history["loss"] else None,
            "final_train_error": history["train_error"][-1] if history["train_error"] else None,
            "final_lr": history["lr"][-1] if history["lr"] else None,
        }
        weights_desc = "pretrained on the source classes"
        if out is not None:
            torch.save(weights, out / "source_model.pt")
            weights_desc = str(out / "source_model.pt")

    target = images.subset(tgt)
    if test_images is None:
        split = split_images(target, test_size, seed)
    else:
        missing = [images.classes[c] for c in tgt if images.classes[c] not in test_images.classes]
        if missing:
            raise ValueError(f"test images lack the target classes {missing[:5]}")
        test_target = test_images.subset(
            [test_images.classes.index(images.classes[c]) for c in tgt]
        )
        split = ImageSplit(target.X, target.y, test_target.X, test_target.y, target.classes)
    split.name = images.name
    split.info = {
        "source_classes": [images.classes[c] for c in src],
        "target_classes": [images.classes[c] for c in tgt],
    }
    result = simulate_ft(
        split,
        weights=weights,
        config=config,
        small_input=small_input,
        width=width,
        seed=seed,
        **simulate_kwargs,
    )
    result.config["weights"] = weights_desc
    info = {
        "source_classes": split.info["source_classes"],
        "target_classes": split.info["target_classes"],
        "pretrain": pretrain_info,
        "pretrain_config": None if not src.size else _config_dict(pretrain_config),
        "weights": weights_desc,
    }
    if out is not None:
        from alamp_fast.al.report import write_results

        info["paths"] = write_results(
            result, out, plots=plots, include_order=include_order, extra={"finetune": info}
        )
    return result, info


def _config_dict(config):
    from alamp_fast.finetune.train import TrainConfig

    return (TrainConfig() if config is None else config).to_dict()


# ------------------------------------------------------------ the command line, moved to cli/

# the CLI functions this module held until the package had a command-line room
_MOVED_TO_CLI = ("add_arguments", "add_ft_arguments", "main", "run", "run_simulate_ft")


def __getattr__(name: str):
    """Deprecated names: the ``finetune`` command's functions, now in
    :mod:`alamp_fast.cli.finetune` (a DeprecationWarning, then that module's function)."""
    if name in _MOVED_TO_CLI:
        import importlib
        import warnings

        warnings.warn(
            f"alamp_fast.finetune.pretrain.{name} is deprecated: use "
            f"alamp_fast.cli.finetune.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        # imported by name: the library room does not depend on the CLI room, this alias does
        return getattr(importlib.import_module("alamp_fast.cli.finetune"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    # the documented ``python -m alamp_fast.finetune.pretrain``: the finetune command
    import importlib

    sys.exit(
        importlib.import_module("alamp_fast.cli.finetune").main(
            prog="python -m alamp_fast.finetune.pretrain"
        )
    )
