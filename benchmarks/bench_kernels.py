"""pytest-benchmark suite of the CPU kernels, one benchmark per kernel with a ``provider``
parameter (alamp_fast vs the numpy / scikit-learn way a user would write it).

The cases come from :func:`alamp_fast.bench.make_cases` (the same definitions that
``alamp-fast bench`` runs). Run::

    python -m pytest benchmarks/bench_kernels.py -n 0 --benchmark-enable --benchmark-only \
        --benchmark-json=benchmarks/results/pytest_benchmark_cpu.json

Scale with ``ALAMP_FAST_BENCH_SCALE=quick|default|full`` (default: default). Bytes moved per
call are attached as ``extra_info`` so throughput and bandwidth follow from the timings.
"""

import os

import pytest

from alamp_fast.bench import make_cases

SCALE = os.environ.get("ALAMP_FAST_BENCH_SCALE", "default")
CASES = [c for c in make_cases(SCALE) if not c.slow]


def _id(case):
    sizes = "-".join(f"{k}{v}" for k, v in case.sizes.items())
    return f"{case.kernel}[{case.provider}]-{sizes}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_kernel(benchmark, case, _load_average):
    from alamp_fast.bench import under_load

    fn = case.setup()
    fn()  # compile (numba) outside the timing
    now = list(os.getloadavg())
    benchmark.extra_info.update(
        kernel=case.kernel,
        provider=case.provider,
        bytes_moved=case.bytes_moved,
        load_average_at_start=_load_average,
        load_average_now=now,
        under_load=under_load(_load_average, now),
        **case.sizes,
    )
    benchmark.group = f"{case.kernel} " + ",".join(f"{k}={v}" for k, v in case.sizes.items())
    benchmark(fn)


@pytest.fixture(scope="module", autouse=True)
def _load_average():
    """Print the load average at the start and end of the suite; every benchmark records the
    start value and the value when it ran, and whether it was taken under load."""
    from alamp_fast.bench import under_load

    start = list(os.getloadavg())
    print(f"\n[bench_kernels] load average at start: {[round(x, 2) for x in start]}")
    yield start
    end = list(os.getloadavg())
    print(
        f"\n[bench_kernels] load average at end: {[round(x, 2) for x in end]}"
        + ("  -> figures taken UNDER LOAD" if under_load(start, end) else "")
    )
