"""What running the tests in one pytest-xdist worker (``-n 1``, pyproject.toml) costs.

The isolation is what turns a test that kills the interpreter into a named failure. Its cost is
one more interpreter (the worker) and the serialisation of every test report to the
controller, so it is measured on tests that do nothing: ``--tests`` trivial tests, run with
``-n 0`` (in-process) and ``-n 1`` alternately ``--rounds`` times, in child pytest processes
with no plugin but xdist. Wall-clock and CPU time (user + system of the child processes) go to
``benchmarks/results/xdist_overhead.json`` with the per-test difference and the load average.

    python benchmarks/xdist_overhead.py                 # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(folder: Path, n: int) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(n)]
    for plugin in ("benchmark", "hypothesispytest", "faulthandler"):
        cmd += ["-p", f"no:{plugin}"]
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd + ["test_many.py"], cwd=folder, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "xdist_overhead.json")
    args = ap.parse_args(argv)
    import xdist

    load_before = list(os.getloadavg())
    samples = {0: {"wall": [], "cpu": []}, 1: {"wall": [], "cpu": []}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_many.py").write_text(
            f"import pytest\n\n\n@pytest.mark.parametrize('i', range({args.tests}))\n"
            "def test_nothing(i):\n    assert i >= 0\n"
        )
        for _ in range(args.rounds):
            for n in (0, 1):
                wall, cpu = _run(folder, n)
                samples[n]["wall"].append(wall)
                samples[n]["cpu"].append(cpu)
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    result = {
        "what": "pytest run of N trivial tests in-process (-n 0) and in one xdist worker (-n 1)",
        "command": "python benchmarks/xdist_overhead.py " + " ".join(argv or sys.argv[1:]),
        "tests": args.tests,
        "rounds": args.rounds,
        "samples_s": {f"n{n}": s for n, s in samples.items()},
        "median_s": {f"n{n}": m for n, m in med.items()},
        "overhead_per_test_ms": {
            k: round(1e3 * (med[1][k] - med[0][k]) / args.tests, 3) for k in ("wall", "cpu")
        },
        "overhead_fixed_and_per_test_s": {
            k: round(med[1][k] - med[0][k], 3) for k in ("wall", "cpu")
        },
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "versions": {"python": platform.python_version(), "pytest-xdist": xdist.__version__},
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_s"]), json.dumps(result["overhead_per_test_ms"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
