"""What the emulated GPU tests cost: tests/cuda/test_gpu.py, the cupy backend of the kernel tests
and tests/cuda/test_emulator.py on the CUDA emulator, with a cold compile cache and again warm.

    python benchmarks/emulator_ci_time.py [--out benchmarks/results/emulator_ci.json]

Each pass runs pytest in a child process (the project's default options: one xdist worker) and
records wall time, the CPU time of the child and everything it waited for (the compiler
included), the load average around it and the outcome counts. Wall time depends on the machine's
load; CPU seconds / cores is what a dedicated CI runner would take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_TESTS = ["tests/kernels/test_uncertainty.py", "tests/kernels/test_alamp.py", "tests/kernels/test_selection.py",
                "tests/kernels/test_coreset.py", "tests/kernels/test_badge.py"]
SUITES = {
    "test_gpu": ["tests/cuda/test_gpu.py"],
    "cupy_backend": [*KERNEL_TESTS, "-k", "cupy"],
    "test_emulator": ["tests/cuda/test_emulator.py"],
}


def run_suite(args, cache: str) -> dict:
    env = dict(os.environ, ALAMP_FAST_CUDA="emulate", ALAMP_FAST_EMULATE_CACHE=cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "returncode": proc.returncode,
        "outcome": counts,
        "summary": tail,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "emulator_ci.json"))
    args = parser.parse_args(argv)
    result = {
        "command": "python benchmarks/emulator_ci_time.py",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "passes": {},
    }
    with tempfile.TemporaryDirectory(prefix="alamp-emu-cache-") as cache:
        for label in ("cold", "warm"):  # cold: every kernel compiled; warm: from the cache
            result["passes"][label] = {name: run_suite(suite, cache)
                                       for name, suite in SUITES.items()}
            p = result["passes"][label]
            p["total"] = {"wall_s": round(sum(v["wall_s"] for v in p.values()), 1),
                          "cpu_s": round(sum(v["cpu_s"] for v in p.values()), 1)}
            print(label, json.dumps(p["total"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(v["returncode"] == 0 for p in result["passes"].values()
                    for k, v in p.items() if k != "total") else 1


if __name__ == "__main__":
    sys.exit(main())
