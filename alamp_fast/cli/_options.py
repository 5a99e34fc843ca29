"""Options several subcommands share, and the checks of their values.

Values are parsed by the commands' ``run`` (not by argparse ``type=``) so that a bad value is a
one-line error naming the option and the value, printed by :func:`alamp_fast.cli.main`:

>>> parse_int("runs", "3", 1)
3
>>> parse_int("runs", "0", 1)
Traceback (most recent call last):
...
ValueError: --runs must be >= 1, got 0
>>> parse_float("test-size", "0.25", 0.0, 1.0), parse_list(" a, b,,c"), parse_tristate("x", "on")
(0.25, ['a', 'b', 'c'], True)
"""

from __future__ import annotations

import argparse

__all__ = [
    "add_cluster_arguments",
    "add_output_arguments",
    "cluster_options",
    "parse_float",
    "parse_int",
    "parse_list",
    "parse_tristate",
]


def _number(name: str, text, kind, low, high):
    try:
        value = kind(str(text).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"--{name} must be {what}, got {text!r}") from None
    if kind is float and value != value:  # NaN passes every comparison
        raise ValueError(f"--{name} must be a number, got {text!r}")
    if high is None and value < low:
        raise ValueError(f"--{name} must be >= {low}, got {value}")
    if high is not None and not low <= value <= high:
        raise ValueError(f"--{name} must be in [{low}, {high}], got {value}")
    return value


def parse_int(name: str, text, low: int, high: int | None = None) -> int:
    """``text`` as an integer ``>= low`` (and ``<= high``); else a ValueError naming ``--name``."""
    return _number(name, text, int, low, high)


def parse_float(name: str, text, low: float, high: float | None = None) -> float:
    """``text`` as a number in ``[low, high]`` (no upper bound when ``high`` is None)."""
    return _number(name, text, float, low, high)


def parse_list(text) -> list[str]:
    """A comma-separated option as its non-empty, stripped items (None: no items)."""
    return [item.strip() for item in str(text or "").split(",") if item.strip()]


def parse_tristate(name: str, text) -> bool | None:
    """``auto`` / ``on`` / ``off`` as None / True / False."""
    if text not in ("auto", "on", "off"):
        raise ValueError(f"--{name} must be auto, on or off, got {text!r}")
    return {"auto": None, "on": True, "off": False}[text]


def add_output_arguments(
    parser: argparse.ArgumentParser, *, default_out: str, out_help: str
) -> argparse._ArgumentGroup:
    """The ``output`` group of the protocol commands (``simulate``, ``finetune``): ``--out``,
    ``--no-plots``, ``--save-order``, ``--quiet``. Returns the group (a command adds its own)."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        default=default_out,
        metavar="DIR",
        help=f"{out_help} (default {default_out})",
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
    return out


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scheduler ADDRESS`` and ``--chunk-rows N`` (``simulate`` and ``select``).

    The same option as :func:`alamp_fast.distributed.add_scheduler_argument`, defined here so
    that building the parser does not import dask (half a second on every command).
    """
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="compute the pool probabilities and run the selection on the Dask cluster whose "
        "scheduler listens at ADDRESS (tcp://host:port); default: this machine, without Dask",
    )
    group.add_argument(
        "--chunk-rows",
        metavar="N",
        help="pool rows per chunk on the cluster (default: equal chunks of at most 64 MiB of "
        "features and probabilities)",
    )


def cluster_options(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """``(scheduler, chunk_rows)`` from the options of :func:`add_cluster_arguments`, checked."""
    from alamp_fast.cli import CLIError

    if args.chunk_rows is None:
        return args.scheduler, None
    if args.scheduler is None:
        raise CLIError("--chunk-rows needs --scheduler")
    return args.scheduler, parse_int("chunk-rows", args.chunk_rows, 1)
