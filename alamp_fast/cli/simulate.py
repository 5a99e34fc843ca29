"""``alamp-fast simulate``: run the paper's AL protocol and write results, a table and plots.

With no arguments it runs every strategy on scikit-learn's digits (init 20, 10 x 20, 3 runs)
in a few seconds and writes ``alamp_fast_out/simulate/``. With ``--train``/``--test`` it
reads features (see :mod:`alamp_fast.al.datasets`) and defaults to the paper's protocol (init
200, 15 x 200, 3 runs). With ``--scheduler ADDRESS`` the pool probabilities and the
acquisition run on that Dask cluster, with the same picks. ``--scheme ft`` runs the paper's
fine-tuning scheme instead (:mod:`alamp_fast.finetune`, needs torch): ``--train``/``--test``
are then images (an ``.npz`` with X uint8 (N, H, W, 3) and y, or a folder of class folders).

Every finished (strategy, run) is written to ``OUT/checkpoint/`` as it completes; an
interrupted run (Ctrl-C, SIGTERM) keeps them and ``--resume`` continues it with the same final
numbers. A progress bar with an ETA is shown on a terminal (not when standard error is piped or
with ``--quiet``). Without matplotlib the plots are skipped with one line saying so (the
results are written, exit code 0); ``--no-plots`` skips them silently.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from alamp_fast.cli._options import (
    add_cluster_arguments,
    add_output_arguments,
    cluster_options,
    parse_float,
    parse_int,
    parse_list,
)
from alamp_fast.cli.finetune import add_ft_arguments

__all__ = [
    "DEFAULT_OUT",
    "add_arguments",
    "add_cluster_arguments",
    "cluster_options",
    "plots_available",
    "resolve_classifier",
    "run",
]

#: Protocol defaults: (init, step, iterations) on files (the paper's) and on the digits demo.
PAPER_DEFAULTS = (200, 200, 15)
DIGITS_DEFAULTS = (20, 20, 10)
DEFAULT_OUT = "alamp_fast_out/simulate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill the ``simulate`` subcommand's parser (values are checked in :func:`run`)."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train",
        metavar="FILE",
        help="train/pool features: .npz (quantized Xq/scale/zero_point/y or X/y), "
        ".npy with --train-labels, .parquet (pyarrow) or .h5/.hdf5 (h5py) "
        "(default: scikit-learn's digits)",
    )
    data.add_argument(
        "--key",
        metavar="NAME",
        help="the features array of a multi-array file: .npz array, Parquet column, HDF5 "
        "dataset path (default: X/Xq, the only vector column, ...)",
    )
    data.add_argument(
        "--name",
        metavar="NAME",
        help="dataset name in results and plots (default: the --train file's name)",
    )
    data.add_argument(
        "--test",
        metavar="FILE",
        help="test features (default: a stratified --test-size split of --train)",
    )
    data.add_argument("--train-labels", metavar="FILE", help="labels for a .npy --train")
    data.add_argument("--test-labels", metavar="FILE", help="labels for a .npy --test")
    data.add_argument(
        "--test-size",
        default="0.25",
        metavar="F",
        help="held-out fraction when there is no --test (default 0.25)",
    )
    data.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="L2-normalise feature rows (default: on)",
    )
    data.add_argument(
        "--drop-class",
        action="append",
        default=[],
        metavar="NAME",
        help="remove a class by name, e.g. BACKGROUND_Google (repeatable or comma-separated)",
    )
    data.add_argument(
        "--imbalance",
        metavar="IR",
        help="subsample the pool to this imbalance ratio std/mean first",
    )

    proto = parser.add_argument_group("protocol")
    proto.add_argument(
        "--strategies",
        metavar="LIST",
        help="comma-separated strategies (default: all of random, margin, entropy, "
        "least_confidence, coreset, alamp, alamp-div, random-div, margin-div)",
    )
    proto.add_argument(
        "--init", metavar="N", help="initial random batch (default 200; 20 on digits)"
    )
    proto.add_argument(
        "--step", metavar="N", help="samples labeled per iteration (default 200; 20 on digits)"
    )
    proto.add_argument(
        "--iterations", metavar="N", help="number of AL iterations (default 15; 10 on digits)"
    )
    proto.add_argument("--runs", default="3", metavar="N", help="repetitions (default 3)")
    proto.add_argument("--seed", default="0", metavar="N", help="base seed (default 0)")
    proto.add_argument(
        "--scheme",
        default="svm",
        metavar="svm|ft",
        help="svm: shallow classifier on fixed features (default); ft: fine-tune a ResNet-18 "
        "on images at every iteration (needs torch; see the fine-tuning options)",
    )
    proto.add_argument(
        "--classifier",
        default="linear-svc",
        metavar="NAME",
        help="a name (linear-svc (default), logreg, svc, af-svm, af-svm-cv, ...) or "
        "package.module:Class, any scikit-learn classifier with predict_proba or "
        "decision_function, built with its defaults",
    )
    proto.add_argument(
        "--cost-sensitive",
        default="auto",
        metavar="auto|on|off",
        help="class_weight='balanced' (auto: on for pools with ir >= 0.1)",
    )
    proto.add_argument(
        "--certainty",
        default="margin",
        metavar="NAME",
        help="certainty measure of alamp/alamp-div: margin (default), confidence, neg_entropy",
    )
    proto.add_argument(
        "--targets",
        default="0.8,0.9",
        metavar="LIST",
        help="accuracies for the samples-to-target table (default 0.8,0.9)",
    )

    add_cluster_arguments(parser)

    add_ft_arguments(parser.add_argument_group("fine-tuning scheme (--scheme ft)"))

    out = add_output_arguments(parser, default_out=DEFAULT_OUT, out_help="output directory")
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT/checkpoint/ (same options and data)",
    )


def resolve_classifier(spec: str):
    """A classifier name of :data:`~alamp_fast.al.classifiers.CLASSIFIERS`, or ``module:Class``
    imported and built with its defaults (checked: ``fit`` and ``predict_proba`` or
    ``decision_function``). Errors are one-line ValueErrors naming ``--classifier``."""
    from alamp_fast.al.classifiers import CLASSIFIERS

    if spec in CLASSIFIERS:
        return spec
    if ":" not in spec:
        raise ValueError(
            f"unknown --classifier {spec!r}; choose from {', '.join(CLASSIFIERS)}, or give "
            "package.module:Class"
        )
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--classifier {spec!r}: cannot import {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"--classifier {spec!r}: {module_name!r} has no {attr!r}")
    try:
        est = obj() if isinstance(obj, type) or callable(obj) else obj
    except Exception as exc:
        raise ValueError(f"--classifier {spec!r}: building it failed: {exc}") from None
    if not hasattr(est, "fit") or not (
        hasattr(est, "predict_proba") or hasattr(est, "decision_function")
    ):
        raise ValueError(
            f"--classifier {spec!r} is not a classifier with fit and predict_proba or "
            "decision_function"
        )
    if not hasattr(est, "get_params"):
        raise ValueError(f"--classifier {spec!r} is not a scikit-learn estimator (no get_params)")
    return est


def plots_available() -> bool:
    """Whether matplotlib imports (the PNG plots need it)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it stops as Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(args: argparse.Namespace) -> int:
    """Run the protocol described by ``args``; returns the exit code."""
    from alamp_fast.al.datasets import load_dataset
    from alamp_fast.al.loop import remove_checkpoint
    from alamp_fast.al.protocol import simulate
    from alamp_fast.al.report import summary_table, write_results
    from alamp_fast.al.strategies import STRATEGIES, canonical_name
    from alamp_fast.cli import CLIError

    t_wall = time.perf_counter()

    if args.scheme not in ("svm", "ft"):
        raise CLIError(f"--scheme must be svm or ft, got {args.scheme!r}")
    if args.scheme == "ft":
        from alamp_fast.cli.finetune import run_simulate_ft

        return run_simulate_ft(args)
    strategies = parse_list(args.strategies) if args.strategies else list(STRATEGIES)
    if not strategies:
        raise CLIError("--strategies is empty")
    strategies = [canonical_name(s) for s in strategies]
    classifier = resolve_classifier(args.classifier)
    if args.cost_sensitive not in ("auto", "on", "off"):
        raise CLIError(f"--cost-sensitive must be auto, on or off, got {args.cost_sensitive!r}")
    cost = {"auto": None, "on": True, "off": False}[args.cost_sensitive]
    if args.certainty not in ("margin", "confidence", "neg_entropy"):
        raise CLIError(
            f"--certainty must be margin, confidence or neg_entropy, got {args.certainty!r}"
        )
    targets = [parse_float("targets", t, 0.0, 1.0) for t in parse_list(args.targets)]
    defaults = PAPER_DEFAULTS if args.train else DIGITS_DEFAULTS
    init = parse_int("init", args.init if args.init is not None else defaults[0], 2)
    step = parse_int("step", args.step if args.step is not None else defaults[1], 1)
    iterations = parse_int(
        "iterations", args.iterations if args.iterations is not None else defaults[2], 0
    )
    runs = parse_int("runs", args.runs, 1)
    seed = parse_int("seed", args.seed, 0)
    test_size = parse_float("test-size", args.test_size, 0.0, 1.0)
    imbalance = (
        None if args.imbalance is None else parse_float("imbalance", args.imbalance, 0.0, 100.0)
    )
    drop = [c for item in args.drop_class for c in parse_list(item)]
    if args.test and not args.train:
        raise CLIError("--test needs --train")
    scheduler, chunk_rows = cluster_options(args)
    plots = not args.no_plots
    if plots and not plots_available():
        # decided before any work: the run goes on, the results are written, no PNGs
        print(
            "alamp-fast simulate: matplotlib is not installed, so no PNG plots (pip install "
            "'alamp_fast[plot]'); results.json and results.csv are written",
            file=sys.stderr,
        )
        plots = False

    data = load_dataset(
        args.train,
        args.test,
        train_labels=args.train_labels,
        test_labels=args.test_labels,
        normalize=args.normalize,
        drop_classes=drop,
        test_size=test_size,
        seed=seed,
        key=args.key,
        name=args.name,
    )
    alamp_kw = {"certainty": args.certainty}
    from pathlib import Path

    checkpoint = Path(args.out) / "checkpoint"
    if args.resume and not (checkpoint / "meta.json").exists():
        raise CLIError(f"--resume: no interrupted run to continue in {checkpoint}")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = simulate(
            data,
            strategies=strategies,
            classifier=classifier,
            init=init,
            step=step,
            iterations=iterations,
            runs=runs,
            seed=seed,
            targets=targets,
            imbalance=imbalance,
            cost_sensitive=cost,
            strategy_kwargs={k: alamp_kw for k in ("alamp", "alamp-div") if k in strategies},
            progress=False if args.quiet else "auto",
            scheduler=scheduler,
            chunk_rows=chunk_rows,
            checkpoint=checkpoint,
            resume=args.resume,
        )
    except KeyboardInterrupt as exc:
        n = len(list(checkpoint.glob("S*-R*.npz"))) if checkpoint.is_dir() else 0
        print(
            f"alamp-fast simulate: interrupted; {n} finished (strategy, run) result(s) kept in "
            f"{checkpoint}: rerun the same command with --resume to continue",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    extra = {"argv": sys.argv[1:], "normalize": bool(args.normalize), "drop_classes": drop}
    paths = write_results(
        result, args.out, plots=plots, include_order=args.save_order, extra=extra
    )
    remove_checkpoint(checkpoint)  # the results are written: nothing to resume
    doc = {"strategies": result.summary()}
    ds = result.dataset
    name = args.classifier if isinstance(classifier, str) else type(classifier).__name__
    print(
        f"{ds['name']}: pool {ds['n_pool']} x {data.X_train.shape[1]}, {ds['n_classes']} "
        f"classes (ir {ds['pool_ir']:.2f}), test {ds['n_test']}; {name}"
        f"{' (cost-sensitive)' if result.config['cost_sensitive'] else ''}; init {init}, "
        f"{iterations} x {step}, {runs} run(s); simulation {result.total_s:.1f} s, "
        f"wall {time.perf_counter() - t_wall:.1f} s (with loading and compilation)"
    )
    print(summary_table(doc))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0

