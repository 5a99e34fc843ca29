"""GPU benchmarks: the cases of issue 3, timed with CUDA events, against the references.

One definition of what is measured, shared by ``alamp-fast bench`` (:func:`run`, called by
:mod:`alamp_fast.bench` when a GPU is present) and ``benchmarks/bench_gpu.py`` (pytest-benchmark,
which writes ``benchmarks/results/gpu_h200.json``). Each case has a ``provider``: this package
on the GPU (``alamp_fast``), ``torch.topk`` (k=2), CuPy ``sort``/``argsort``, or this package's
CPU kernel (``alamp_fast_cpu``); the references run in the same process, so ratios are taken
under the same conditions.

Bandwidth is the bytes a kernel must move (inputs read once, outputs written once) over the
time, and its fraction of the device-to-device copy bandwidth measured in the same run
(bytes read + written by ``cudaMemcpy`` of a 4 GiB buffer, over the time).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["GpuCase", "make_cases", "copy_bandwidth", "time_gpu", "result_row", "report", "run"]

SEED = 0


@dataclass
class GpuCase:
    """One benchmark: ``setup()`` makes the data and returns ``fn``, which runs the kernel once
    (it may leave work queued: the timers synchronize)."""

    kernel: str
    provider: str
    sizes: dict
    bytes_moved: int
    setup: Callable[[], Callable[[], object]]
    reference: str | None = None
    on_gpu: bool = True
    slow: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        sizes = "-".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"{self.kernel}[{self.provider}]-{sizes}"


# ----------------------------------------------------------------------------- sizes
SCALES = {
    # margin (n list, C list), alamp/diversify n, k-center (n, d, labeled, b), streamed (n, C)
    # tiny: a rehearsal on the CUDA emulator (benchmarks/device_check.sh in CI); no speed meaning
    "tiny": {
        "margin_n": [2_000],
        "margin_C": [100],
        "select_n": 5_000,
        "kcenter": (1_000, 16, 5, 4),
        "stream": (4_000, 100),
    },
    "quick": {
        "margin_n": [1 << 18],
        "margin_C": [100],
        "select_n": 1_000_000,
        "kcenter": (20_000, 128, 20, 50),
        "stream": (2_000_000, 100),
    },
    "default": {
        "margin_n": [1_000_000, 10_000_000],
        "margin_C": [100],
        "select_n": 10_000_000,
        "kcenter": (200_000, 512, 200, 200),
        "stream": (10_000_000, 100),
    },
    "full": {
        "margin_n": [1_000_000, 10_000_000],
        "margin_C": [100, 1000],
        "select_n": 10_000_000,
        "kcenter": (1_000_000, 512, 200, 1000),
        "stream": (100_000_000, 100),
    },
}

# CuPy's sort references: segmented sorts of n*C elements, minutes at the largest sizes
_SORT_SLOW_ELEMS = 2_000_000_000
# CPU references above this many bytes of input are marked slow (host copy + numba pass)
_CPU_SLOW_BYTES = 8 << 30
# steps of the CPU k-center reference (each reads the whole pool on the host)
_CPU_KCENTER_STEPS = 5


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _random_probs(n: int, C: int, dtype):
    import cupy

    rng = cupy.random.default_rng(SEED)
    P = rng.random((n, C), dtype=np.float32)
    return P if np.dtype(dtype) == np.float32 else P.astype(dtype)


def _margin_cases(n: int, C: int, dtype: str) -> list[GpuCase]:
    import alamp_fast.cuda as afc
    from alamp_fast.uncertainty import top2_margin as cpu_top2

    itemsize = np.dtype(dtype).itemsize
    sizes = {"n": n, "C": C, "dtype": dtype}
    # probs read once; margin (4 B) and top_class (8 B) written once
    nbytes = n * C * itemsize + n * (4 + 8)

    def setup_ours():
        P = _random_probs(n, C, dtype)
        return lambda: afc.top2_margin(P)

    cases = [
        GpuCase("top2_margin", "alamp_fast", sizes, nbytes, setup_ours, reference="torch.topk")
    ]
    torch = _torch_cuda()
    if torch is not None:

        def setup_torch():
            P = torch.from_dlpack(_random_probs(n, C, dtype))

            def fn():
                v, i = torch.topk(P, 2, dim=1)
                return v[:, 0] - v[:, 1], i[:, 0]

            return fn

        cases.append(GpuCase("top2_margin", "torch.topk", sizes, nbytes, setup_torch))
    import cupy

    def setup_sort():
        P = _random_probs(n, C, dtype)

        def fn():
            s = cupy.sort(P, axis=1)
            return s[:, -1] - s[:, -2]

        return fn

    def setup_argsort():
        P = _random_probs(n, C, dtype)
        rows = cupy.arange(n)

        def fn():
            o = cupy.argsort(P, axis=1)
            return P[rows, o[:, -1]] - P[rows, o[:, -2]], o[:, -1]

        return fn

    slow_sort = n * C > _SORT_SLOW_ELEMS
    cases.append(GpuCase("top2_margin", "cupy.sort", sizes, nbytes, setup_sort, slow=slow_sort))
    cases.append(
        GpuCase("top2_margin", "cupy.argsort", sizes, nbytes, setup_argsort, slow=slow_sort)
    )

    def setup_cpu():
        P = _random_probs(n, C, dtype).get()
        return lambda: cpu_top2(P)

    cases.append(
        GpuCase(
            "top2_margin",
            "alamp_fast_cpu",
            sizes,
            nbytes,
            setup_cpu,
            on_gpu=False,
            slow=n * C * itemsize > _CPU_SLOW_BYTES,
        )
    )
    return cases


def _selection_cases(n: int, n_classes: int = 1000, b: int = 2000) -> list[GpuCase]:
    import alamp_fast.cuda as afc
    from alamp_fast import alamp_score, diversify, select_top

    def data():
        import cupy

        rng = cupy.random.default_rng(SEED)
        prev = rng.random(n, dtype=np.float32)
        cur = rng.random(n, dtype=np.float32)
        pc = rng.integers(0, n_classes, n)
        return prev, cur, pc

    sizes = {"n": n, "pseudo_classes": n_classes, "b": b, "dtype": "float32"}

    def setup_gpu():
        prev, cur, pc = data()
        return lambda: afc.diversify(afc.alamp_score(prev, cur), pc, b)

    def setup_cpu():
        prev, cur, pc = (a.get() for a in data())
        return lambda: diversify(alamp_score(prev, cur), pc, b)

    def setup_top_gpu():
        prev, cur, _ = data()
        return lambda: afc.select_top(afc.alamp_score(prev, cur), b)

    def setup_top_cpu():
        prev, cur, _ = (a.get() for a in data())
        return lambda: select_top(alamp_score(prev, cur), b)

    # alamp: two margins read, scores written; diversify: scores and classes (int64) read
    div_bytes = 3 * 4 * n + (4 + 8) * n
    top_bytes = 3 * 4 * n + 4 * n
    return [
        GpuCase(
            "alamp+diversify", "alamp_fast", sizes, div_bytes, setup_gpu, reference="alamp_fast_cpu"
        ),
        GpuCase("alamp+diversify", "alamp_fast_cpu", sizes, div_bytes, setup_cpu, on_gpu=False),
        GpuCase(
            "alamp+select_top",
            "alamp_fast",
            sizes,
            top_bytes,
            setup_top_gpu,
            reference="alamp_fast_cpu",
        ),
        GpuCase(
            "alamp+select_top", "alamp_fast_cpu", sizes, top_bytes, setup_top_cpu, on_gpu=False
        ),
    ]


def _kcenter_cases(n: int, d: int, n_lab: int, b: int) -> list[GpuCase]:
    import alamp_fast.cuda as afc
    from alamp_fast import kcenter_greedy

    def data():
        import cupy

        rng = cupy.random.default_rng(SEED)
        X = rng.standard_normal((n, d), dtype=np.float32)
        labeled = cupy.asarray(np.random.default_rng(SEED).choice(n, n_lab, replace=False))
        return X, labeled

    def sizes(steps):
        return {"n": n, "d": d, "labeled": n_lab, "b": steps, "dtype": "float32"}

    def setup_gpu(steps):
        def setup():
            X, labeled = data()
            return lambda: afc.kcenter_greedy(X, labeled, steps)

        return setup

    def setup_cpu():
        X, labeled = (a.get() for a in data())
        return lambda: kcenter_greedy(X, labeled, _CPU_KCENTER_STEPS)

    floor = 4 * n * d  # one read of the features: the per-step floor
    return [
        # b = 1: the GEMM initial pass alone; the step time is the difference to the full run
        GpuCase(
            "kcenter_greedy",
            "alamp_fast",
            sizes(1),
            floor,
            setup_gpu(1),
            meta={"part": "initial pass"},
        ),
        GpuCase(
            "kcenter_greedy",
            "alamp_fast",
            sizes(b),
            floor * b,
            setup_gpu(b),
            reference="alamp_fast_cpu",
        ),
        GpuCase(
            "kcenter_greedy",
            "alamp_fast_cpu",
            sizes(_CPU_KCENTER_STEPS),
            floor * _CPU_KCENTER_STEPS,
            setup_cpu,
            on_gpu=False,
        ),
    ]


def _stream_case(n: int, C: int) -> GpuCase:
    import alamp_fast.cuda as afc

    def setup():
        # a host pool built by tiling one random block: filling 20 GB with fresh random numbers
        # would take minutes of host time
        block = np.random.default_rng(SEED).random((min(n, 1 << 20), C), dtype=np.float32)
        block = block.astype(np.float16)
        host = np.empty((n, C), dtype=np.float16)
        for start in range(0, n, block.shape[0]):
            stop = min(n, start + block.shape[0])
            host[start:stop] = block[: stop - start]
        return lambda: afc.top2_margin(host)

    return GpuCase(
        "top2_margin_streamed",
        "alamp_fast",
        {"n": n, "C": C, "dtype": "float16"},
        n * C * 2 + n * 12,
        setup,
        meta={"source": "host memory (numpy)"},
    )


def make_cases(scale: str = "full") -> list[GpuCase]:
    """The GPU cases for ``scale`` ('quick', 'default' or 'full' = the issue's sizes)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    s = SCALES[scale]
    cases = []
    for C in s["margin_C"]:
        for n in s["margin_n"]:
            for dtype in ("float32", "float16"):
                cases += _margin_cases(n, C, dtype)
    cases += _selection_cases(s["select_n"])
    cases += _kcenter_cases(*s["kcenter"])
    cases.append(_stream_case(*s["stream"]))
    return cases


# ----------------------------------------------------------------------------- timing
def synchronize() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def time_gpu(fn: Callable[[], object], *, min_time: float = 0.5, max_repeats: int = 30) -> dict:
    """Warm up once (NVRTC compiles, pools fill), then time with CUDA events until
    ``min_time``; min and median seconds."""
    import cupy

    fn()
    synchronize()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < 3 or time.perf_counter() - start < min_time):
        begin, end = cupy.cuda.Event(), cupy.cuda.Event()
        begin.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(begin, end) / 1e3)
        if times[-1] > 5.0:
            break
    return {"min_s": min(times), "median_s": float(np.median(times)), "repeats": len(times)}


def copy_bandwidth(nbytes: int = 4 << 30) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second."""
    import cupy

    def timed() -> float:
        src = cupy.empty(nbytes // 4, dtype=np.float32)
        dst = cupy.empty_like(src)
        return time_gpu(lambda: cupy.copyto(dst, src), min_time=0.3)["min_s"]

    t = timed()
    cupy.get_default_memory_pool().free_all_blocks()
    return 2 * nbytes / t


def measure(case: GpuCase, cpu_measure: Callable | None = None) -> dict:
    """Time one case with the timer of its side: CUDA events, or ``cpu_measure`` (the CPU
    harness, :func:`alamp_fast.bench.measure`) for the CPU references."""
    import cupy

    if not case.on_gpu and cpu_measure is None:
        raise ValueError(f"{case.id} runs on the CPU: pass cpu_measure=alamp_fast.bench.measure")
    pool = cupy.get_default_memory_pool()
    t = (time_gpu if case.on_gpu else cpu_measure)(case.setup())
    t["device_pool_bytes"] = int(pool.total_bytes())
    pool.free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()
    return t


def result_row(case: GpuCase, timing: dict, copy_bw: float) -> dict:
    """One JSON row: sizes, times, bandwidth and its fraction of the copy bandwidth."""
    row = {
        "kernel": case.kernel,
        "provider": case.provider,
        "reference": case.reference,
        "sizes": case.sizes,
        "on_gpu": case.on_gpu,
        "bytes_moved": case.bytes_moved,
        **timing,
        "gb_per_s": case.bytes_moved / timing["min_s"] / 1e9,
        "fraction_of_copy_bandwidth": case.bytes_moved / timing["min_s"] / copy_bw,
        **case.meta,
    }
    return row


def _targets(rows: list[dict], copy_bw: float) -> dict:
    """The issue's targets, evaluated on the rows present (None where a row is missing)."""

    def find(kernel, provider, **sizes):
        for r in rows:
            if (
                r["kernel"] == kernel
                and r["provider"] == provider
                and all(r["sizes"].get(k) == v for k, v in sizes.items())
            ):
                return r
        return None

    out = {}
    ours = find("top2_margin", "alamp_fast", n=10_000_000, C=100, dtype="float32")
    topk = find("top2_margin", "torch.topk", n=10_000_000, C=100, dtype="float32")
    if ours:
        out["margin_1e7x100_f32_fraction_of_copy_bw"] = {
            "value": ours["fraction_of_copy_bandwidth"],
            "target": ">= 0.85",
            "met": ours["fraction_of_copy_bandwidth"] >= 0.85,
        }
    if ours and topk:
        ratio = topk["min_s"] / ours["min_s"]
        out["margin_1e7x100_f32_speedup_vs_torch_topk"] = {
            "value": ratio,
            "target": ">= 5",
            "met": ratio >= 5,
        }
    div = find("alamp+diversify", "alamp_fast", n=10_000_000)
    if div:
        out["alamp_diversify_1e7_ms"] = {
            "value": div["min_s"] * 1e3,
            "target": "< 5",
            "met": div["min_s"] < 5e-3,
        }
    init = find("kcenter_greedy", "alamp_fast", n=1_000_000, b=1)
    full = find("kcenter_greedy", "alamp_fast", n=1_000_000, b=1000)
    if init and full:
        per_step = (full["min_s"] - init["min_s"]) / 999
        floor = 4 * 1_000_000 * 512 / copy_bw  # one read of X at the copy's per-byte rate
        out["kcenter_per_step_over_floor"] = {
            "value": per_step / floor,
            "target": "<= 1.3",
            "met": per_step / floor <= 1.3,
            "per_step_ms": per_step * 1e3,
        }
        out["kcenter_total_s"] = {"value": full["min_s"], "target": "< 1", "met": full["min_s"] < 1}
    stream = find("top2_margin_streamed", "alamp_fast")
    if stream:
        out["streamed_margin_gb_per_s"] = {"value": stream["gb_per_s"], "target": "report"}
    return out


def card_name(device_name: str) -> str:
    """Short card name for result files (``gpu_<card>.json``): ``h100``, ``h200``, ``a100``, ...
    from the device's name; ``emulator`` for the CUDA emulator; else a lower-case slug.

    Examples
    --------
    >>> card_name("NVIDIA H100 80GB HBM3"), card_name("NVIDIA H200"), card_name("Tesla T4")
    ('h100', 'h200', 't4')
    """
    low = device_name.lower()
    if "emulator" in low:
        return "emulator"
    m = re.search(
        r"\b(gh200|gb200|b200|b100|h200|h100|h800|a100|a800|l40s|l40|l4|a10g?|t4|v100)\b", low
    )
    if m:
        return m.group(1)
    return re.sub(r"[^a-z0-9]+", "-", low).strip("-") or "unknown"


def current_card() -> str:
    """:func:`card_name` of the current CUDA device."""
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return card_name(name.decode() if isinstance(name, bytes) else str(name))


def environment(base: dict | None = None) -> dict:
    """``base`` (the CPU harness's environment: commit, versions; from
    :func:`alamp_fast.bench.environment`) plus the GPU's."""
    import cupy

    env = {**(base or {})}
    env["versions"] = dict(env.get("versions", {}))
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"]
    env["gpu"] = {
        "name": name.decode() if isinstance(name, bytes) else name,
        "compute_capability": dev.compute_capability,
        "multiprocessors": props["multiProcessorCount"],
        "memory_bytes": int(props["totalGlobalMem"]),
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
    }
    env["versions"]["cupy"] = cupy.__version__
    torch = _torch_cuda()
    if torch is not None:
        env["versions"]["torch"] = torch.__version__
    return env


def report(rows: list[dict], copy_bw: float, base_environment: dict | None = None) -> dict:
    """The JSON document: environment (``base_environment`` plus the GPU's), copy bandwidth,
    rows with speed-ups, targets."""
    by_key = {(r["kernel"], repr(sorted(r["sizes"].items())), r["provider"]): r for r in rows}
    for r in rows:
        ref = by_key.get((r["kernel"], repr(sorted(r["sizes"].items())), r["reference"]))
        r["speedup_vs_reference"] = ref["min_s"] / r["min_s"] if ref else None
    return {
        **environment(base_environment),
        "copy_bandwidth_gb_per_s": copy_bw / 1e9,
        "results": rows,
        "targets": _targets(rows, copy_bw),
    }


def run(
    scale: str = "default",
    progress: bool = True,
    include_slow: bool = False,
    kernels=None,
    *,
    cpu_measure: Callable | None = None,
    base_environment: dict | None = None,
) -> dict:
    """Measure every case of ``scale`` on the current GPU; the JSON document of :func:`report`.

    ``cpu_measure`` and ``base_environment`` come from the CPU harness (``alamp-fast bench``
    passes :func:`alamp_fast.bench.measure` and :func:`alamp_fast.bench.environment`'s
    result); without ``cpu_measure`` the CPU reference cases are left out."""
    from tqdm.auto import tqdm

    copy_bw = copy_bandwidth()
    cases = [c for c in make_cases(scale) if (include_slow or not c.slow)
             and (c.on_gpu or cpu_measure is not None)]
    if kernels:
        cases = [c for c in cases if c.kernel in kernels]
    rows = []
    for case in tqdm(cases, desc="gpu bench", disable=not progress, unit="case"):
        rows.append(result_row(case, measure(case, cpu_measure), copy_bw))
    out = report(rows, copy_bw, base_environment)
    out["scale"] = scale
    return out
