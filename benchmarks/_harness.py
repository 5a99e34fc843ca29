"""Shared benchmark plumbing: load average at start and end, load marks, timing, JSON output.

Every benchmark script records the machine's 1/5/15-minute load average when it starts and
when it ends, prints both, and marks its figures ``under_load`` when other work was running
(a 1-minute load average at the start of at least ``LOADED_FRACTION`` of the cores, or at
the end above what the benchmark itself adds). Figures meant to be taken under load (with
:func:`busy_core`) are marked by the script as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
# a machine is "loaded" when other processes keep this fraction of its cores busy
LOADED_FRACTION = 0.25


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


class Run:
    """One benchmark run: ``run = Run("name")`` ... ``run.write(results)``."""

    def __init__(self, name: str, *, own_threads: int | None = None) -> None:
        self.name = name
        self.cores = os.cpu_count() or 1
        # the benchmark's own threads count in the end-of-run load average
        self.own_threads = own_threads if own_threads is not None else self.cores
        self.load_start = load_average()
        self.t0 = time.time()
        print(f"[{name}] load average at start: {self.load_start} ({self.cores} cores)")

    def under_load(self, load_end) -> bool:
        if self.load_start is None:
            return False
        limit = LOADED_FRACTION * self.cores
        return self.load_start[0] >= limit or (
            load_end is not None and load_end[0] >= limit + self.own_threads
        )

    def write(self, results: dict, path: Path | None = None, **extra) -> Path:
        """Write ``results`` with the environment and both load averages as JSON."""
        from alamp_fast.bench import environment

        load_end = load_average()
        loaded = self.under_load(load_end)
        print(
            f"[{self.name}] load average at end: {load_end}"
            + ("  -> figures taken UNDER LOAD" if loaded else "")
        )
        env = environment()
        env.pop("load_average", None)
        report = {
            "benchmark": self.name,
            **env,
            "load_average": {"start": self.load_start, "end": load_end},
            "under_load": loaded,
            "wall_s": round(time.time() - self.t0, 1),
            **extra,
            "results": results,
        }
        path = path or RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=1, default=_jsonable))
        os.replace(tmp, path)
        print(f"wrote {path}")
        return path


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def timeit(fn, *, repeats: int = 7, warmup: int = 1) -> dict:
    """min / median seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"min_s": min(ts), "median_s": float(np.median(ts)), "repeats": repeats}


@contextlib.contextmanager
def busy_core():
    """Keep one core busy with a spinning process for the duration (the "other core busy"
    condition); yields the load average seen once it runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        yield load_average()
    finally:
        proc.kill()
        proc.wait()
