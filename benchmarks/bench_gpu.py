"""GPU benchmarks of issue 3 (pytest-benchmark): top-2 margin, alamp + alamp-div, k-center,
streamed margin; this package against ``torch.topk``, CuPy sort/argsort and the CPU kernel.

Needs an NVIDIA GPU with CuPy; skips otherwise. The cases are those of
:mod:`alamp_fast.cuda.bench` (also behind ``alamp-fast bench``); this file times them with
pytest-benchmark (the device is synchronized inside the timed call) and writes the results, with
the copy bandwidth, commit, device and versions, to ``benchmarks/results/gpu_<card>.json``, the
card named from the device (``gpu_h100.json``, ``gpu_h200.json``; ``ALAMP_FAST_BENCH_OUT`` to
change). ``benchmarks/device_check.sh`` runs the headline cases within a 10-minute lease. On an H200::

    python -m pytest benchmarks/bench_gpu.py -o addopts="" --benchmark-enable -p no:cacheprovider

``ALAMP_FAST_BENCH_SCALE`` = quick | default | full (default: full, the issue's sizes);
``ALAMP_FAST_BENCH_SLOW=1`` adds the slowest references (CuPy sorts of 1e10 elements, the CPU
kernel on 40 GB). ``-k margin`` and the like select cases; runs of the same commit merge their
rows into the one JSON file (a case run again replaces its row). The host's load average at
the start and the end is printed and recorded (``load_average``, ``under_load``: the host clock
and the CPU reference cases feel other work on the machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _harness import Run, load_average

cupy = pytest.importorskip("cupy")

from alamp_fast import bench as cpu_bench  # noqa: E402
from alamp_fast.cuda import bench as gpu_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SCALE = os.environ.get("ALAMP_FAST_BENCH_SCALE", "full")
INCLUDE_SLOW = os.environ.get("ALAMP_FAST_BENCH_SLOW", "") not in ("", "0")


def _skip_reason() -> str | None:
    from alamp_fast.cuda import _kernels

    if _kernels.emulated():
        return ("ALAMP_FAST_CUDA=emulate: the CUDA emulator's timings mean nothing "
                "(benchmarks/device_check.sh rehearses on it without writing results)")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device"
    except Exception as exc:  # CUDARuntimeError and friends, whose classes vary by version
        return f"CUDA unavailable to cupy: {exc}"
    return None


SKIP = _skip_reason()
# benchmarks/results/gpu_<card>.json, the card named from the device (h100, h200, ...)
OUT = Path(os.environ.get("ALAMP_FAST_BENCH_OUT") or ROOT / "benchmarks/results" / (
    f"gpu_{gpu_bench.current_card()}.json" if SKIP is None else "gpu_unknown.json"))
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]

CASES = gpu_bench.make_cases(SCALE) if SKIP is None else []


def _earlier_rows(commit) -> list[dict]:
    """Rows already in the JSON from the same commit: runs split with ``-k`` (each under the
    device's per-command time limit) add up to one file."""
    try:
        doc = json.loads(OUT.read_text())
    except (OSError, ValueError):
        return []
    return doc.get("results", []) if doc.get("commit") == commit else []


def _key(row) -> tuple:
    return row["kernel"], row["provider"], json.dumps(row["sizes"], sort_keys=True)


@pytest.fixture(scope="module")
def recorder():
    """Collects the rows; writes the JSON once the module's cases have run, with the load
    average at the first case and after the last (printed both times)."""
    run = Run("gpu", own_threads=1)
    state = {"copy_bw": gpu_bench.copy_bandwidth(), "rows": []}
    yield state
    load_end = load_average()
    print(f"[gpu] load average at end: {load_end}"
          + ("  -> CPU-side figures taken UNDER LOAD" if run.under_load(load_end) else ""))
    if state["rows"]:
        doc = gpu_bench.report(state["rows"], state["copy_bw"], cpu_bench.environment())
        new = {_key(r) for r in state["rows"]}
        kept = [r for r in _earlier_rows(doc["commit"]) if _key(r) not in new]
        if kept:
            doc = gpu_bench.report(kept + state["rows"], state["copy_bw"],
                                  cpu_bench.environment())
        doc["scale"] = SCALE
        doc["timer"] = "pytest-benchmark (host clock, device synchronized per call)"
        doc["load_average"] = {"start": run.load_start, "end": load_end}
        doc["under_load"] = run.under_load(load_end)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        tmp = OUT.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, OUT)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gpu_case(benchmark, recorder, case):
    if case.slow and not INCLUDE_SLOW:
        pytest.skip("slow reference (ALAMP_FAST_BENCH_SLOW=1 to run it)")
    fn = case.setup()

    def synced():
        out = fn()
        gpu_bench.synchronize()
        return out

    benchmark.group = f"{case.kernel} {case.sizes}"
    benchmark.extra_info.update({"provider": case.provider, "bytes_moved": case.bytes_moved,
                                 **case.sizes})
    rounds = 3 if case.bytes_moved > 10 << 30 or not case.on_gpu else 10
    benchmark.pedantic(synced, rounds=rounds, iterations=1, warmup_rounds=1)
    stats = benchmark.stats.stats
    timing = {"min_s": stats.min, "median_s": stats.median, "repeats": rounds,
              "device_pool_bytes": int(cupy.get_default_memory_pool().total_bytes())}
    row = gpu_bench.result_row(case, timing, recorder["copy_bw"])
    benchmark.extra_info["gb_per_s"] = row["gb_per_s"]
    recorder["rows"].append(row)
    fn = None  # the case's device arrays go back to the pool before the next case
    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()
