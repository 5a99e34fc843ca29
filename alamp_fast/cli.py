"""The ``alamp-fast`` console script.

Each subcommand lives in its own module, which exposes two functions:

``add_arguments(parser)``
    fills an :class:`argparse.ArgumentParser` (module import must stay light: numpy at most,
    heavy imports go inside ``run``);
``run(args) -> int``
    does the work and returns the exit code.

A user error (bad option value, unreadable file) is raised as :class:`CLIError` or
``ValueError`` and printed as one line, ``alamp-fast: error: ...``, with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order of ``alamp-fast --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("alamp_fast.simulate_cli", "run the paper's AL protocol and write results/plots"),
    "finetune": (
        "alamp_fast.finetune.pretrain",
        "fine-tuning scheme: pretrain a ResNet-18 on source classes, AL on the other classes",
    ),
    "bench": ("alamp_fast.bench", "measure the acquisition kernels against numpy/scikit-learn"),
    "cuda-warmup": (
        "alamp_fast.cuda.warmup_cli",
        "compile the CUDA kernels into the persistent cache, files in parallel",
    ),
    "init": ("alamp_fast.workflow_cli", "create an annotation project over a pool of features"),
    "select": ("alamp_fast.workflow_cli", "train on the labels so far and write the next batch"),
    "label": ("alamp_fast.workflow_cli", "ingest an annotated CSV into the project"),
    "status": ("alamp_fast.workflow_cli", "show rounds, per-class counts, ir and accuracy"),
    "export": ("alamp_fast.workflow_cli", "write a round's batch CSV again, or every label"),
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _load(name: str):
    module_name, _ = COMMANDS[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def _package_version() -> str:
    from alamp_fast import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alamp-fast",
        description="Fast active-learning acquisition (margin, alamp, alamp-div, k-center).",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_package_version()}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("init", "select", "label", "status", "export"):
            module.add_arguments(p, name)
        else:
            module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        if getattr(args, "debug", False):  # --debug (workflow commands): the traceback
            raise
        print(f"alamp-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alamp-fast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
