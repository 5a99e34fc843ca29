"""``alamp-fast finetune`` and ``simulate --scheme ft``: the fine-tuning scheme's options.

``alamp-fast finetune`` runs the source-model recipe of :mod:`alamp_fast.finetune.pretrain`
end to end: pretrain a ResNet-18 on some classes of an image collection (or take
``--weights``), then the FT-scheme protocol on the other classes. ``python -m
alamp_fast.cli.finetune`` is the same command without the ``alamp-fast`` entry. Importing this
module imports neither torch nor Pillow (the options are built on every ``alamp-fast`` call).
"""

from __future__ import annotations

import argparse
import sys

from alamp_fast.cli._options import (
    add_output_arguments,
    parse_float,
    parse_int,
    parse_list,
    parse_tristate,
)

__all__ = ["DEFAULT_OUT", "add_arguments", "add_ft_arguments", "main", "run", "run_simulate_ft"]

DEFAULT_OUT = "alamp_fast_out/finetune"


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
    data.add_argument(
        "--test-size", default="0.25", metavar="F", help="held-out fraction (default 0.25)"
    )
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
    add_output_arguments(
        parser,
        default_out=DEFAULT_OUT,
        out_help="output directory: source_model.pt, results, plots",
    )


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
    from alamp_fast.finetune.pretrain import source_target_experiment
    from alamp_fast.finetune.scheme import FT_STRATEGIES, _canonical
    from alamp_fast.finetune.train import TrainConfig

    image_size = None if args.image_size is None else parse_int("image-size", args.image_size, 8)
    config = TrainConfig(
        epochs=parse_int("epochs", args.epochs, 0),
        lr=parse_float("lr", args.lr, 0.0),
        batch_size=parse_int("batch-size", args.batch_size, 1),
        weight_decay=parse_float("weight-decay", args.weight_decay, 0.0),
        plateau_patience=parse_int("patience", args.patience, 0),
        augment=not args.no_augment,
        amp=bool(args.amp),
        device=args.device,
    )
    source = pretrain_config = None
    if args.source_classes is not None:
        text = args.source_classes.strip()
        source = int(text) if text.isdigit() else parse_list(text)
        epochs = config.epochs if args.pretrain_epochs is None else args.pretrain_epochs
        pretrain_config = config.replace(epochs=parse_int("pretrain-epochs", epochs, 1))
    strategies = [_canonical(s) for s in (parse_list(args.strategies) or FT_STRATEGIES)]
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
        target_classes=parse_list(args.target_classes) or None,
        pretrain_config=pretrain_config,
        config=config,
        test_size=parse_float("test-size", args.test_size, 0.0, 1.0),
        small_input=parse_tristate("small-input", args.small_input),
        width=None if args.width is None else parse_int("width", args.width, 1),
        seed=parse_int("seed", args.seed, 0),
        out_dir=args.out,
        plots=not args.no_plots,
        include_order=bool(getattr(args, "save_order", False)),
        strategies=strategies,
        strategy_kwargs=alamp_kw,
        init=parse_int("init", 200 if args.init is None else args.init, 2),
        step=parse_int("step", 200 if args.step is None else args.step, 1),
        iterations=parse_int("iterations", 15 if args.iterations is None else args.iterations, 0),
        runs=parse_int("runs", args.runs, 1),
        targets=[parse_float("targets", t, 0.0, 1.0) for t in parse_list(args.targets)],
        imbalance=None if args.imbalance is None else parse_float("imbalance", args.imbalance, 0),
        threshold=parse_tristate("threshold", args.threshold),
        progress=False if args.quiet else "auto",
    )
    from alamp_fast.al.report import summary_table

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


def main(argv=None, prog: str = "python -m alamp_fast.cli.finetune") -> int:
    """The ``finetune`` command on its own (``python -m alamp_fast.cli.finetune``); returns the
    exit code (2 and one line on stderr for a user error)."""
    from alamp_fast.cli import CLIError

    parser = argparse.ArgumentParser(
        prog=prog,
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
