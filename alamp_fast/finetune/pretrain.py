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
to end (:func:`add_arguments`, :func:`run`); importing this module imports neither torch nor
Pillow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "add_arguments",
    "add_ft_arguments",
    "pretrain_source_model",
    "run",
    "run_simulate_ft",
    "source_target_experiment",
    "split_classes",
]

DEFAULT_OUT = "alamp_fast_out/finetune"


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
        :func:`alamp_fast.report.write_results` there.
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
        from alamp_fast.report import write_results

        info["paths"] = write_results(
            result, out, plots=plots, include_order=include_order, extra={"finetune": info}
        )
    return result, info


def _config_dict(config):
    from alamp_fast.finetune.train import TrainConfig

    return (TrainConfig() if config is None else config).to_dict()


# ------------------------------------------------------------------------------------ CLI


def add_ft_arguments(group) -> None:
    """The options specific to the fine-tuning scheme (model, source, training).

    Shared by ``alamp-fast finetune`` and ``alamp-fast simulate --scheme ft``; none of them
    clashes with an option of ``simulate``.
    """
    group.add_argument(
        "--image-size", metavar="N", help="side of folder images after resize + crop (224)"
    )
    group.add_argument(
        "--source-classes",
        metavar="N|NAMES",
        help="pretrain on N random classes (or these comma-separated names); AL on the rest",
    )
    group.add_argument(
        "--weights", metavar="FILE", help="fine-tune from this state dict instead of pretraining"
    )
    group.add_argument("--target-classes", metavar="NAMES", help="restrict AL to these classes")
    group.add_argument(
        "--pretrain-epochs", metavar="N", help="pretraining epochs (default: --epochs)"
    )
    group.add_argument(
        "--small-input",
        default="auto",
        metavar="auto|on|off",
        help="a 3x3 first convolution without max-pool, for small images (auto: read from "
        "--weights, else on for images up to 64 pixels)",
    )
    group.add_argument(
        "--width",
        metavar="N",
        help="channels of the first block (64 = ResNet-18; smaller is faster; default: read "
        "from --weights, else 64)",
    )
    group.add_argument("--epochs", default="80", metavar="N", help="fine-tuning epochs (80)")
    group.add_argument("--lr", default="0.01", metavar="F", help="initial learning rate (0.01)")
    group.add_argument("--batch-size", default="64", metavar="N", help="mini-batch (64)")
    group.add_argument(
        "--weight-decay", default="0.001", metavar="F", help="SGD weight decay (0.001)"
    )
    group.add_argument(
        "--patience", default="10", metavar="N", help="plateau epochs before lr / 10 (10)"
    )
    group.add_argument("--no-augment", action="store_true", help="no flips or shifts")
    group.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    group.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N (default: cuda if seen)")
    group.add_argument(
        "--threshold",
        default="auto",
        metavar="auto|on|off",
        help="divide probabilities by the labeled class priors (auto: imbalanced pools)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill the ``finetune`` subcommand's parser (values are checked in :func:`run`)."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--images",
        required=True,
        metavar="PATH",
        help=".npz with X uint8 (N, H, W, 3) and y, or a folder of class subfolders",
    )
    data.add_argument("--test-images", metavar="PATH", help="evaluation images (same classes)")
    data.add_argument("--test-size", default="0.25", metavar="F", help="held-out fraction")
    data.add_argument("--imbalance", metavar="IR", help="subsample the target pool to this ir")
    add_ft_arguments(parser.add_argument_group("model and fine-tuning (defaults: the paper's)"))
    proto = parser.add_argument_group("protocol")
    proto.add_argument(
        "--strategies",
        metavar="LIST",
        help="comma-separated (default: random,margin,entropy,coreset,alamp,alamp-div,badge)",
    )
    proto.add_argument("--init", metavar="N", help="initial random batch (200)")
    proto.add_argument("--step", metavar="N", help="samples labeled per iteration (200)")
    proto.add_argument("--iterations", metavar="N", help="AL iterations (15)")
    proto.add_argument("--runs", default="3", metavar="N", help="repetitions (default 3)")
    proto.add_argument(
        "--seed", default="0", metavar="N", help="base seed of everything (default 0)"
    )
    proto.add_argument(
        "--targets",
        default="",
        metavar="LIST",
        help="comma-separated accuracies for the samples-to-target table, e.g. 0.5,0.6",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory: source_model.pt, results, plots (default {DEFAULT_OUT})",
    )
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    out.add_argument(
        "--save-order",
        action="store_true",
        help="store every run's labeled rows, in order, in results.json",
    )
    out.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: shown on a terminal)"
    )


def _num(name: str, text, kind, low, high=None):
    try:
        value = kind(str(text))
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"--{name} must be {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        top = "inf" if high is None else high
        raise ValueError(f"--{name} must be in [{low}, {top}], got {value}")
    return value


def _tristate(name: str, text):
    if text not in ("auto", "on", "off"):
        raise ValueError(f"--{name} must be auto, on or off, got {text!r}")
    return {"auto": None, "on": True, "off": False}[text]


def _list(text) -> list[str]:
    return [s.strip() for s in str(text or "").split(",") if s.strip()]


def run(args: argparse.Namespace) -> int:
    """``alamp-fast finetune``: the source-model recipe end to end; returns the exit code."""
    return _run(args, args.images, args.test_images)


def run_simulate_ft(args: argparse.Namespace) -> int:
    """``alamp-fast simulate --scheme ft``: ``--train`` / ``--test`` are images."""
    from alamp_fast.cli import CLIError

    if not args.train:
        raise CLIError("--scheme ft needs --train: an image .npz (X, y) or a class folder")
    # simulate's options for feature files and the SVM scheme (getattr: the parser may lack some)
    ignored = [
        opt
        for opt, used in (
            ("--train-labels", getattr(args, "train_labels", None)),
            ("--test-labels", getattr(args, "test_labels", None)),
            ("--drop-class", getattr(args, "drop_class", None)),
            ("--classifier", getattr(args, "classifier", "linear-svc") != "linear-svc"),
            ("--cost-sensitive", getattr(args, "cost_sensitive", "auto") != "auto"),
            ("--scheduler", getattr(args, "scheduler", None)),
            ("--chunk-rows", getattr(args, "chunk_rows", None)),
        )
        if used
    ]
    if ignored:
        raise CLIError(f"{', '.join(ignored)} do not apply to --scheme ft (see --threshold)")
    return _run(args, args.train, args.test)


def _run(args, images_path, test_path) -> int:
    from alamp_fast.finetune.data import load_images
    from alamp_fast.finetune.scheme import FT_STRATEGIES, _canonical
    from alamp_fast.finetune.train import TrainConfig

    image_size = None if args.image_size is None else _num("image-size", args.image_size, int, 8)
    config = TrainConfig(
        epochs=_num("epochs", args.epochs, int, 0),
        lr=_num("lr", args.lr, float, 0.0),
        batch_size=_num("batch-size", args.batch_size, int, 1),
        weight_decay=_num("weight-decay", args.weight_decay, float, 0.0),
        plateau_patience=_num("patience", args.patience, int, 0),
        augment=not args.no_augment,
        amp=bool(args.amp),
        device=args.device,
    )
    source = pretrain_config = None
    if args.source_classes is not None:
        text = args.source_classes.strip()
        source = int(text) if text.isdigit() else _list(text)
        epochs = config.epochs if args.pretrain_epochs is None else args.pretrain_epochs
        pretrain_config = config.replace(epochs=_num("pretrain-epochs", epochs, int, 1))
    strategies = [_canonical(s) for s in (_list(args.strategies) or FT_STRATEGIES)]
    certainty = getattr(args, "certainty", "margin")
    alamp_kw = {k: {"certainty": certainty} for k in ("alamp", "alamp-div") if k in strategies}

    images = load_images(images_path, image_size=image_size)
    test_images = None
    if test_path:
        test_images = load_images(test_path, image_size=image_size or images.X.shape[1])
    result, info = source_target_experiment(
        images,
        test_images=test_images,
        source=source,
        weights=args.weights,
        target_classes=_list(args.target_classes) or None,
        pretrain_config=pretrain_config,
        config=config,
        test_size=_num("test-size", args.test_size, float, 0.0, 1.0),
        small_input=_tristate("small-input", args.small_input),
        width=None if args.width is None else _num("width", args.width, int, 1),
        seed=_num("seed", args.seed, int, 0),
        out_dir=args.out,
        plots=not args.no_plots,
        include_order=bool(getattr(args, "save_order", False)),
        strategies=strategies,
        strategy_kwargs=alamp_kw,
        init=_num("init", 200 if args.init is None else args.init, int, 2),
        step=_num("step", 200 if args.step is None else args.step, int, 1),
        iterations=_num("iterations", 15 if args.iterations is None else args.iterations, int, 0),
        runs=_num("runs", args.runs, int, 1),
        targets=[_num("targets", t, float, 0.0, 1.0) for t in _list(args.targets)],
        imbalance=None if args.imbalance is None else _num("imbalance", args.imbalance, float, 0),
        threshold=_tristate("threshold", args.threshold),
        progress=False if args.quiet else "auto",
    )
    from alamp_fast.report import summary_table

    ds, cfg, pre = result.dataset, result.config, info["pretrain"]
    print(
        f"{ds['name']}: {len(info['source_classes'])} source / {ds['n_classes']} target classes, "
        f"pool {ds['n_pool']} x {'x'.join(map(str, ds['image_shape']))}, test {ds['n_test']}; "
        f"weights: {info['weights'] or 'none (from scratch)'}"
        + (f" (pretrain error {pre['final_train_error']:.3f})" if pre else "")
        + f"; init {cfg['init']}, {cfg['iterations']} x {cfg['step']}, {cfg['runs']} run(s), "
        f"{result.total_s:.1f} s"
    )
    print(summary_table({"strategies": result.summary()}))
    print("wrote " + ", ".join(str(p) for p in info["paths"].values()))
    return 0


def main(argv=None) -> int:
    """``python -m alamp_fast.finetune.pretrain``: the ``finetune`` command without ``cli.py``."""
    from alamp_fast.cli import CLIError

    parser = argparse.ArgumentParser(
        prog="python -m alamp_fast.finetune.pretrain",
        description="Pretrain a ResNet-18 on source classes, then run AL with the "
        "fine-tuning scheme on the disjoint target classes.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
