"""First ``alamp-fast simulate`` after install: empty numba cache, against a reference commit.

Runs the command (default data: scikit-learn's digits, the default protocol) in a fresh
process with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (what a first run after
``pip install`` sees), then once more with that cache filled (warm). With ``--ref COMMIT`` the
same runs use a ``git worktree`` of that commit (the "before" of a change) in the same
session, alternating with the current tree so load changes hit both. Optionally with one core
kept busy by a spinning process. Only the benchmark's own temporary cache folders are used and
removed (never the user's numba cache).

Each run records its wall time, its CPU time (user + system, all threads: on a loaded machine
the wall time of the single-threaded compile grows with the load, its CPU time does not), the
load average before it, and every numba compilation it triggered (function, signature, CPU
seconds of the compiling thread), so a cold run's overhead can be traced to its kernels.
Writes ``benchmarks/results/cold_start.json``::

    python benchmarks/bench_cold_start.py [--ref COMMIT] [--busy] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Run, busy_core, load_average

ROOT = Path(__file__).resolve().parents[1]


def _child(events_path: str, argv: list[str]) -> int:
    """Run ``alamp-fast`` with ``argv`` in this process, logging numba compilations."""
    import numba.core.event as ev

    events = []

    class Compiles(ev.Listener):
        def __init__(self):
            self.stack = []

        def on_start(self, event):
            self.stack.append(time.thread_time())

        def on_end(self, event):
            cpu = time.thread_time() - self.stack.pop()
            if not self.stack:  # top-level compilations (nested ones are inside them)
                fn = getattr(event.data["dispatcher"], "py_func", None)
                name = f"{fn.__module__}.{fn.__qualname__}" if fn else "?"
                events.append(
                    {"function": name, "signature": str(event.data["args"]), "cpu_s": cpu}
                )

    ev.register("numba:compile", Compiles())
    from alamp_fast.cli import main

    try:
        rc = main(argv)
    finally:
        Path(events_path).write_text(json.dumps(events))
    return int(rc or 0)


def simulate_once(src: Path, cache: Path, extra: list[str]) -> dict:
    out = tempfile.mkdtemp(prefix="alamp-cold-out-")
    events = Path(out) / "compiles.json"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(src))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(events), "--",
           "simulate", "--no-plots", "--quiet", "--out", out, *extra]
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    compiles = json.loads(events.read_text()) if events.exists() else None
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"simulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load_average_before": load,
        "compile_cpu_s": sum(c["cpu_s"] for c in compiles or []),
        "compiles": compiles,
    }


def measure(src: Path, extra: list[str]) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="alamp-numba-cache-"))
    try:
        cold = simulate_once(src, cache, extra)
        warm = simulate_once(src, cache, extra)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "cold": cold,
        "warm": warm,
        "compile_overhead_s": cold["wall_s"] - warm["wall_s"],
        "compile_overhead_cpu_s": cold["cpu_s"] - warm["cpu_s"],
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[3:])
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
                    print(cond, name, f"cold {r['cold']['wall_s']:.1f} s "
                          f"(cpu {r['cold']['cpu_s']:.1f} s, {len(r['cold']['compiles'])} "
                          f"compilations, {r['cold']['compile_cpu_s']:.1f} s cpu), "
                          f"warm {r['warm']['wall_s']:.1f} s (cpu {r['warm']['cpu_s']:.1f} s)")
            for key in ("wall_s", "cpu_s", "compile_cpu_s"):
                best = {k: min(x["cold"][key] for x in results[cond][k]) for k in trees}
                results[cond][f"best_cold_{key}"] = best
                if args.ref and best["reference"] > 0:
                    name = "cold_ratio" if key == "wall_s" else f"cold_{key}_ratio"
                    results[cond][f"{name}_current_to_reference"] = (
                        best["current"] / best["reference"])
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "ref")], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    run.write(results, args.out, reference_commit=args.ref,
              command="alamp-fast simulate --no-plots --quiet " + " ".join(args.simulate_args),
              targets={"idle_cold_wall_s": 10.0, "other_core_busy_cold_wall_s": 25.0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
