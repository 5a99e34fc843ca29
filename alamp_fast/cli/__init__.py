"""The command line: the one ``alamp-fast`` entry (:func:`main`) and its subcommands.

This room owns every piece of the user's terminal: argument parsing, one-line errors, exit
codes, what is printed. The work itself stays in the library rooms (``al``, ``finetune``,
``workflow``, ``cuda``, :mod:`alamp_fast.bench`). One module per subcommand:

=====================================  ============================================
``alamp-fast simulate``                :mod:`alamp_fast.cli.simulate`
``alamp-fast finetune``                :mod:`alamp_fast.cli.finetune`
``alamp-fast bench``                   :mod:`alamp_fast.cli.bench`
``alamp-fast cuda-warmup``             :mod:`alamp_fast.cli.cuda_warmup`
``init``/``select``/``label``/...      :mod:`alamp_fast.cli.workflow`
=====================================  ============================================

and :mod:`alamp_fast.cli._options` holds the option groups and value checks several of them
share. Each subcommand module exposes two functions:

``add_arguments(parser)``
    fills an :class:`argparse.ArgumentParser` (module import must stay light: numpy at most,
    heavy imports go inside ``run``);
``run(args) -> int``
    does the work and returns the exit code.

A user error (bad option value, unreadable file) is raised as :class:`CLIError` or
``ValueError`` and printed as one line, ``alamp-fast COMMAND: error: ...``, with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]

# the annotation workflow's subcommands (init, select, label, status, export)
_WORKFLOW = "alamp_fast.cli.workflow"
_WORKFLOW_COMMANDS = ("init", "select", "label", "status", "export")

# name -> (module, one-line help). Order is the order of ``alamp-fast --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("alamp_fast.cli.simulate", "run the paper's AL protocol and write results/plots"),
    "finetune": (
        "alamp_fast.cli.finetune",
        "fine-tuning scheme: pretrain a ResNet-18 on source classes, AL on the other classes",
    ),
    "bench": ("alamp_fast.cli.bench", "measure the acquisition kernels against numpy/scikit-learn"),
    "cuda-warmup": (
        "alamp_fast.cli.cuda_warmup",
        "compile the CUDA kernels into the persistent cache, files in parallel",
    ),
    "init": (_WORKFLOW, "create an annotation project over a pool of features"),
    "select": (_WORKFLOW, "train on the labels so far and write the next batch"),
    "label": (_WORKFLOW, "ingest an annotated CSV into the project"),
    "status": (_WORKFLOW, "show rounds, per-class counts, ir and accuracy"),
    "export": (_WORKFLOW, "write a round's batch CSV again, or every label"),
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
    """The ``alamp-fast`` parser with every subcommand whose module imports."""
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
        if name in _WORKFLOW_COMMANDS:
            module.add_arguments(p, name)
        else:
            module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``alamp-fast [COMMAND] ...``: parse ``argv`` (default: ``sys.argv[1:]``), run the
    subcommand and return its exit code (2: a user error, printed as one line; 130: Ctrl-C)."""
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
