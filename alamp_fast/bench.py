"""Kernel timing: the acquisition kernels on this machine against the numpy / scikit-learn way a
user would write them (the cases, the timer, the machine's description); ``alamp-fast bench``
(:mod:`alamp_fast.cli.bench`) runs them and writes the numbers as JSON.

The cases here are shared with the pytest-benchmark suite in ``benchmarks/`` (one definition of
what is measured). Each case has a ``provider``: ``alamp_fast`` (this package) or a reference;
the reference of a kernel is always measured in the same run, so the speed-ups are ratios taken
under the same machine load. Bandwidth is reported as the bytes the kernel must move (its inputs
read once, its outputs written once) over the time, and as a fraction of this machine's read
bandwidth, measured in the same run by a multithreaded sum over a 1 GiB array.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "make_cases", "measure", "run_suite", "read_bandwidth", "environment"]


@dataclass
class Case:
    """One benchmark: ``fn()`` runs the kernel once on data prepared by ``setup``."""

    kernel: str
    provider: str
    sizes: dict
    bytes_moved: int
    setup: Callable[[], Callable[[], object]]
    reference: str  # provider name of the reference for the ratio
    slow: bool = False
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- references
def _np_top2_partition(P):
    part = np.partition(P, P.shape[1] - 2, axis=1)
    return part[:, -1] - part[:, -2], P.argmax(axis=1)


def _np_top2_argmax_twice(P):
    k = P.argmax(axis=1)
    rows = np.arange(P.shape[0])
    top = P[rows, k]
    Q = P.copy()
    Q[rows, k] = -np.inf
    return top - Q.max(axis=1), k


def _np_alamp(prev, cur):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev + cur == 0, 0, (prev - cur) / (prev + cur))


def _np_select_top(scores, b):
    return np.lexsort((np.arange(scores.shape[0]), -scores))[:b]


def _np_diversify(scores, pseudo_class, b):
    """Algorithm 1 as printed, vectorised per pass: one walk of the remaining pool per pass."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    picked: list[np.ndarray] = []
    remaining = order
    left = b
    while left > 0:
        _, first = np.unique(pseudo_class[remaining], return_index=True)
        take = np.sort(first)[:left]
        picked.append(remaining[take])
        left -= take.size
        keep = np.ones(remaining.size, dtype=bool)
        keep[take] = False
        remaining = remaining[keep]
    return np.concatenate(picked)


def _sklearn_kcenter(X, labeled, b):
    """The usual core-set loop: one pairwise_distances call per step (Sener & Savarese code)."""
    from sklearn.metrics import pairwise_distances

    min_d = pairwise_distances(X, X[labeled]).min(axis=1)
    chosen = []
    for _ in range(b):
        i = int(np.argmax(min_d))
        chosen.append(i)
        min_d = np.minimum(min_d, pairwise_distances(X, X[i : i + 1]).ravel())
    return chosen


# ----------------------------------------------------------------------------- cases
def _bind(make_data: Callable[[], tuple], fn: Callable) -> Callable[[], Callable[[], object]]:
    """A case's ``setup``: build the inputs once, return the zero-argument call to time."""

    def setup():
        data = make_data()
        return lambda: fn(*data)

    return setup


def make_cases(scale: str = "default") -> list[Case]:
    """The benchmark cases. ``scale``: 'quick' (seconds), 'default', 'full' (issue sizes)."""
    import alamp_fast as af

    rng_seed = 0
    if scale == "quick":
        margin_ns, sel_ns, kc = [10_000, 100_000], [10_000, 100_000], [(10_000, 64, 20, 20)]
    elif scale == "full":
        margin_ns = [10_000, 100_000, 1_000_000, 4_000_000]
        sel_ns = [10_000, 100_000, 1_000_000]
        kc = [(10_000, 512, 200, 100), (100_000, 512, 200, 100), (1_000_000, 512, 200, 20)]
    else:
        margin_ns = [10_000, 100_000, 1_000_000]
        sel_ns = [10_000, 100_000, 1_000_000]
        kc = [(10_000, 512, 200, 50), (100_000, 512, 200, 20)]
    cases: list[Case] = []
    C = 100
    for n in margin_ns:
        for dtype in ("float32", "float16"):

            def setup_p(n=n, dtype=dtype):
                rng = np.random.default_rng(rng_seed)
                return (rng.random((n, C), dtype=np.float32).astype(dtype),)

            nbytes = n * C * np.dtype(dtype).itemsize + n * (4 + 8)
            for provider, fn in (
                ("alamp_fast", af.top2_margin),
                ("numpy_partition", _np_top2_partition),
                ("numpy_argmax_twice", _np_top2_argmax_twice),
            ):
                cases.append(
                    Case(
                        "top2_margin",
                        provider,
                        {"n": n, "C": C, "dtype": dtype},
                        nbytes,
                        _bind(setup_p, fn),
                        "numpy_partition",
                        slow=provider != "alamp_fast" and n >= 4_000_000,
                    )
                )
    for n in margin_ns:

        def setup_a(n=n):
            rng = np.random.default_rng(rng_seed)
            return rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)

        for provider, fn in (("alamp_fast", af.alamp_score), ("numpy", _np_alamp)):
            cases.append(
                Case(
                    "alamp_score",
                    provider,
                    {"n": n, "dtype": "float32"},
                    3 * 4 * n,
                    _bind(setup_a, fn),
                    "numpy",
                )
            )
    b = 2000
    for n in sel_ns:

        def setup_s(n=n):
            rng = np.random.default_rng(rng_seed)
            return rng.random(n, dtype=np.float32), rng.integers(0, 1000, n)

        for provider, fn in (
            ("alamp_fast", lambda s, pc: af.select_top(s, min(b, s.size))),
            ("numpy_sort", lambda s, pc: _np_select_top(s, min(b, s.size))),
        ):
            cases.append(
                Case(
                    "select_top",
                    provider,
                    {"n": n, "b": b, "dtype": "float32"},
                    4 * n,
                    _bind(setup_s, fn),
                    "numpy_sort",
                )
            )
        for provider, fn in (
            ("alamp_fast", lambda s, pc: af.diversify(s, pc, min(b, s.size))),
            ("numpy_passes", lambda s, pc: _np_diversify(s, pc, min(b, s.size))),
        ):
            cases.append(
                Case(
                    "diversify",
                    provider,
                    {"n": n, "b": b, "pseudo_classes": 1000, "dtype": "float32"},
                    12 * n,
                    _bind(setup_s, fn),
                    "numpy_passes",
                )
            )
    for n, d, n_lab, steps in kc:

        def setup_k(n=n, d=d, n_lab=n_lab, steps=steps):
            rng = np.random.default_rng(rng_seed)
            X = rng.standard_normal((n, d), dtype=np.float32)
            return X, rng.choice(n, n_lab, replace=False), steps

        for provider, fn in (
            ("alamp_fast", af.kcenter_greedy),
            ("sklearn_pairwise", _sklearn_kcenter),
        ):
            cases.append(
                Case(
                    "kcenter_greedy",
                    provider,
                    {"n": n, "d": d, "labeled": n_lab, "b": steps, "dtype": "float32"},
                    # one read of the features per step (the one-pass floor)
                    4 * n * d * steps,
                    _bind(setup_k, fn),
                    "sklearn_pairwise",
                    slow=provider != "alamp_fast" and n >= 1_000_000,
                )
            )
    return cases


# ----------------------------------------------------------------------------- measuring
def measure(fn: Callable[[], object], *, min_time: float = 0.3, max_repeats: int = 20) -> dict:
    """Warm up once (numba compiles), then repeat until ``min_time``; min and median seconds."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < 3 or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > 5.0 and len(times) >= 1:
            break
    return {"min_s": min(times), "median_s": float(np.median(times)), "repeats": len(times)}


def read_bandwidth(nbytes: int = 1 << 30) -> float:
    """Bytes/s of a multithreaded float32 sum over ``nbytes`` (a read-bandwidth ceiling)."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=False)
    def _sum(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += a[i]
        return s

    a = np.ones(nbytes // 4, dtype=np.float32)
    t = measure(lambda: _sum(a), min_time=0.5)["min_s"]
    return nbytes / t


def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    import numba
    import scipy
    import sklearn

    import alamp_fast

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "commit": _git_commit(),
        "device": {
            "kind": "cpu",
            "name": cpu,
            "cores": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
        },
        "platform": platform.platform(),
        # other work on the machine inflates the times: recorded so a reader can judge
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {
            "python": platform.python_version(),
            "alamp_fast": alamp_fast.__version__,
            "numpy": np.__version__,
            "numba": numba.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_suite(
    cases: list[Case], *, include_slow: bool = False, progress="auto", bandwidth=None
) -> dict:
    """Measure every case; add throughput, bandwidth fraction and the ratio to the reference.

    ``progress``: True, False or ``"auto"`` (:func:`alamp_fast._progress.make_progress`: a bar
    with an ETA on standard error, only on a terminal with "auto"). ``bandwidth``: bytes/s
    to take as the read bandwidth instead of measuring it (:func:`read_bandwidth`).
    """
    from alamp_fast._progress import make_progress

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    todo = [c for c in cases if include_slow or not c.slow]
    # one step for the bandwidth measurement (a second or more), one per case
    bar = make_progress(progress, len(todo) + (bandwidth is None), "bench", unit="case")
    rows = []
    try:
        if bandwidth is None:
            if bar is not None:
                bar.set_postfix_str("read bandwidth", refresh=True)
            bw = read_bandwidth()
            if bar is not None:
                bar.update(1)
        else:
            bw = bandwidth
        for case in todo:
            if bar is not None:
                sizes = ",".join(f"{k}={v}" for k, v in case.sizes.items() if k != "dtype")
                bar.set_postfix_str(f"{case.kernel} {case.provider} {sizes}", refresh=True)
            rows.append(_measure_case(case, bw))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    by_key = {(r["kernel"], json.dumps(r["sizes"], sort_keys=True), r["provider"]): r for r in rows}
    for r in rows:
        ref = by_key.get((r["kernel"], json.dumps(r["sizes"], sort_keys=True), r["reference"]))
        r["speedup_vs_reference"] = ref["min_s"] / r["min_s"] if ref else None
    env = environment()
    load_end = env["load_average"]
    env["load_average"] = load_start  # the start, as before; the end separately
    return {
        **env,
        "load_average_at_end": load_end,
        "under_load": under_load(load_start, load_end),
        "read_bandwidth_gb_per_s": bw / 1e9,
        "results": rows,
    }


def _measure_case(case: Case, bw: float) -> dict:
    """One result row: the case's times, throughput, bandwidth fraction (``bw``: bytes/s)."""
    t = measure(case.setup())
    return {
        "kernel": case.kernel,
        "provider": case.provider,
        "reference": case.reference,
        "sizes": case.sizes,
        "bytes_moved": case.bytes_moved,
        **t,
        "rows_per_s": case.sizes["n"] / t["min_s"],
        "gb_per_s": case.bytes_moved / t["min_s"] / 1e9,
        "fraction_of_bandwidth": case.bytes_moved / t["min_s"] / bw,
    }


# other processes keeping this fraction of the cores busy make a figure "taken under load"
LOADED_FRACTION = 0.25


def under_load(load_start, load_end, own_threads: int | None = None) -> bool:
    """Whether other work ran: a 1-minute load average of at least ``LOADED_FRACTION`` of the
    cores at the start, or at the end above what the benchmark's own threads add."""
    if not load_start:
        return False
    cores = os.cpu_count() or 1
    own = cores if own_threads is None else own_threads
    limit = LOADED_FRACTION * cores
    return load_start[0] >= limit or (load_end is not None and load_end[0] >= limit + own)


# ------------------------------------------------------------ the command line, moved to cli/

# ``alamp-fast bench``'s functions, which this module held until the package had a CLI room
_MOVED_TO_CLI = ("add_arguments", "format_table", "run")


def __getattr__(name: str):
    """Deprecated names: the ``bench`` command's functions, now in :mod:`alamp_fast.cli.bench`
    (a DeprecationWarning, then that module's function)."""
    if name in _MOVED_TO_CLI:
        import importlib
        import warnings

        warnings.warn(
            f"alamp_fast.bench.{name} is deprecated: use alamp_fast.cli.bench.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        # imported by name: the measuring code does not depend on the CLI room, this alias does
        return getattr(importlib.import_module("alamp_fast.cli.bench"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    # ``python -m alamp_fast.bench``: the bench command
    import importlib

    sys.exit(importlib.import_module("alamp_fast.cli.bench").main())
