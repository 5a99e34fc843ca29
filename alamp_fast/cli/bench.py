"""``alamp-fast bench``: measure the acquisition kernels on this machine, print a table, write JSON.

The cases, the timer and the machine's description are :mod:`alamp_fast.bench`'s (shared with
``benchmarks/``); this module is the command: its options, the progress bar (a bar with an ETA
on standard error when it is a terminal, nothing when piped or with ``--no-progress``), the
table and the JSON file. With a CUDA device the GPU cases of :mod:`alamp_fast.cuda.bench` run
too and their numbers go into the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_arguments", "format_table", "main", "run"]

# the table: (header, alignment) per column; numbers right-aligned
_COLUMNS = (
    ("kernel", "<"),
    ("sizes", "<"),
    ("ms", ">"),
    ("GB/s", ">"),
    ("bw %", ">"),
    ("x ref", ">"),
    ("reference", "<"),
)
_SEP = " | "


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Header, rule and ``rows`` as lines whose columns line up: each column as wide as its
    widest cell, columns joined by ``" | "`` (the rule by ``"-+-"``), no trailing spaces."""
    head = tuple(name for name, _ in _COLUMNS)
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(_COLUMNS))]

    def line(cells) -> str:
        return _SEP.join(
            f"{cell:{align}{w}}" for cell, (_, align), w in zip(cells, _COLUMNS, widths, strict=True)
        ).rstrip()

    return [line(head), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


def format_table(report: dict) -> str:
    """A plain-text table of the alamp_fast rows of ``report`` (:func:`alamp_fast.bench.run_suite`)
    with their speed-up over the reference; the columns line up whatever the cells' lengths."""
    rows = []
    for r in report["results"]:
        if r["provider"] != "alamp_fast":
            continue
        ratio = r["speedup_vs_reference"]
        rows.append(
            (
                r["kernel"],
                ",".join(f"{k}={v}" for k, v in r["sizes"].items()),
                f"{r['min_s'] * 1e3:.2f}",
                f"{r['gb_per_s']:.2f}",
                f"{100 * r['fraction_of_bandwidth']:.1f}",
                f"{ratio:.1f}" if ratio else "-",
                r["reference"],
            )
        )
    lines = _columns(rows)
    lines.append(f"read bandwidth: {report['read_bandwidth_gb_per_s']:.1f} GB/s")
    if report.get("load_average") is not None:
        lines.append(
            f"load average: {[round(x, 2) for x in report['load_average']]} at start, "
            f"{[round(x, 2) for x in report.get('load_average_at_end') or []]} at end"
            + ("  -> figures taken UNDER LOAD" if report.get("under_load") else "")
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill the ``bench`` subcommand's parser."""
    parser.add_argument(
        "--scale",
        choices=["quick", "default", "full"],
        default="default",
        help="sizes: quick (seconds), default, full (the issue's sizes, minutes)",
    )
    parser.add_argument("--kernels", default=None, help="comma-separated subset of kernels")
    parser.add_argument("--include-slow", action="store_true", help="also the slowest references")
    parser.add_argument(
        "--out", default="bench.json", help="JSON file to write (default %(default)s)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: a bar with an ETA on standard error when it is a "
        "terminal)",
    )


def run(args: argparse.Namespace) -> int:
    """Measure, write ``--out`` (atomically), print the table; returns the exit code."""
    from alamp_fast.bench import make_cases, run_suite

    cases = make_cases(args.scale)
    if args.kernels:
        wanted = {k.strip() for k in args.kernels.split(",") if k.strip()}
        known = {c.kernel for c in cases}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"unknown kernel(s) {sorted(unknown)}; choose from {sorted(known)}")
        cases = [c for c in cases if c.kernel in wanted]
    progress = False if args.no_progress else "auto"
    report = run_suite(cases, include_slow=args.include_slow, progress=progress)
    report["scale"] = args.scale
    gpu = _gpu_report(args)
    if gpu is not None:
        report["gpu"] = gpu
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=1)
    os.replace(tmp, args.out)
    print(format_table(report))
    print(f"wrote {args.out}")
    return 0


def _gpu_report(args):
    """GPU cases, when a CUDA device and alamp_fast.cuda's benchmarks are available."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None
        from alamp_fast.cuda import bench as gpu_bench  # noqa: PLC0415
    except Exception:  # no CuPy, no driver or no GPU module: CPU-only report
        return None
    from alamp_fast._progress import stream_is_terminal
    from alamp_fast.bench import environment, measure

    return gpu_bench.run(
        scale=args.scale,
        # the GPU suite's bar (tqdm, on standard error) follows the same rule: a terminal only
        progress=not args.no_progress and stream_is_terminal(sys.stderr),
        cpu_measure=measure,
        base_environment=environment(),
    )


def main(argv=None) -> int:
    """``python -m alamp_fast.cli.bench``: the ``bench`` command on its own."""
    parser = argparse.ArgumentParser(prog="alamp-fast bench")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ValueError as exc:
        print(f"alamp-fast bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
