"""First ``alamp-fast simulate`` after install: empty numba cache, against a reference commit.

Runs the command (default data: scikit-learn's digits, the default protocol) in a fresh
process with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (what a first run after
``pip install`` sees), then once more with that cache filled (warm). With ``--ref COMMIT`` the
same runs use a ``git worktree`` of that commit (the "before" of a change) in the same
session, alternating with the current tree so load changes hit both. Optionally with one core
kept busy by a spinning process. Writes ``benchmarks/results/cold_start.json``::

    python benchmarks/bench_cold_start.py [--ref COMMIT] [--busy] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Run, busy_core, load_average

ROOT = Path(__file__).resolve().parents[1]


def simulate_once(src: Path, cache: Path, extra: list[str]) -> dict:
    out = tempfile.mkdtemp(prefix="alamp-cold-out-")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(src))
    cmd = [sys.executable, "-c", "import sys; from alamp_fast.cli import main; "
           "sys.exit(main())", "simulate", "--no-plots", "--quiet", "--out", out, *extra]
    load = load_average()
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"simulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"wall_s": wall, "load_average_before": load}


def measure(src: Path, extra: list[str]) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="alamp-numba-cache-"))
    try:
        cold = simulate_once(src, cache, extra)
        warm = simulate_once(src, cache, extra)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold": cold, "warm": warm, "compile_overhead_s": cold["wall_s"] - warm["wall_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", default=None, help="reference commit measured in the same run")
    p.add_argument("--busy", action="store_true", help="also with one core kept busy")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("simulate_args", nargs="*", help="extra arguments for simulate")
    args = p.parse_args(argv)
    run = Run("cold_start", own_threads=1)
    trees = {"current": ROOT}
    tmp = None
    if args.ref:
        tmp = Path(tempfile.mkdtemp(prefix="alamp-ref-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "ref"),
                        args.ref], check=True, capture_output=True)
        trees = {"reference": tmp / "ref", "current": ROOT}
    results = {}
    try:
        for cond in ("idle", "other_core_busy") if args.busy else ("idle",):
            results[cond] = {name: [] for name in trees}
            for _ in range(args.repeats):
                for name, src in trees.items():
                    if cond == "idle":
                        r = measure(src, args.simulate_args)
                    else:
                        with busy_core():
                            r = measure(src, args.simulate_args)
                    results[cond][name].append(r)
                    print(cond, name, f"cold {r['cold']['wall_s']:.1f} s, "
                          f"warm {r['warm']['wall_s']:.1f} s")
            if args.ref:
                best = {k: min(x["cold"]["wall_s"] for x in v) for k, v in results[cond].items()}
                results[cond]["cold_ratio_current_to_reference"] = (
                    best["current"] / best["reference"])
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "ref")], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    run.write(results, args.out, reference_commit=args.ref,
              command="alamp-fast simulate --no-plots --quiet " + " ".join(args.simulate_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
