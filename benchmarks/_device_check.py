"""Python steps of ``benchmarks/device_check.sh`` (one subcommand per step).

Each step writes its result as JSON into ``$OUT/steps/<step>.json``; ``finish`` merges them,
with the benchmark rows, into ``$OUT/gpu_<card>.json`` (card named from the device). Nothing
is written outside ``$OUT``. ``ALAMP_FAST_CUDA=emulate`` rehearses every step on the CPU.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(os.environ.get("OUT", "."))
STEPS = OUT / "steps"

# benchmark cases of docs/gpu.md's headline, as (kernel, provider, sizes that must match)
HEADLINE = [
    ("top2_margin", "alamp_fast", {"C": 100, "dtype": "float32"}),
    ("top2_margin", "torch.topk", {"C": 100, "dtype": "float32"}),
    ("alamp+diversify", "alamp_fast", {}),
    ("alamp+select_top", "alamp_fast", {}),
    ("kcenter_greedy", "alamp_fast", {}),
    ("top2_margin_streamed", "alamp_fast", {}),
]


def _write(step: str, doc: dict) -> None:
    STEPS.mkdir(parents=True, exist_ok=True)
    tmp = STEPS / f".{step}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, STEPS / f"{step}.json")


def versions(_args) -> int:
    doc = {"python": sys.version.split()[0], "platform": platform.platform(),
           "numpy": np.__version__, "ALAMP_FAST_CUDA": os.environ.get("ALAMP_FAST_CUDA")}
    import alamp_fast  # noqa: F401  (installs the emulator's cupy under ALAMP_FAST_CUDA=emulate)

    try:
        import cupy

        doc["cupy"] = cupy.__version__
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        doc["device"] = name.decode() if isinstance(name, bytes) else str(name)
        doc["compute_capability"] = dev.compute_capability
        doc["multiprocessors"] = int(props["multiProcessorCount"])
        doc["memory_bytes"] = int(props["totalGlobalMem"])
        doc["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        doc["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:  # no CuPy, no driver: recorded, the later steps say what they skip
        doc["device_error"] = f"{type(exc).__name__}: {exc}"
    from alamp_fast.cuda import _nvrtc

    why = _nvrtc.available()
    doc["nvrtc"] = (list(_nvrtc.version()), _nvrtc.library_path()) if why is None else why
    try:
        import torch

        doc["torch"] = torch.__version__
        doc["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        doc["torch"] = None
    # what the later steps import: a missing one is named here, before a step fails on it
    import importlib.metadata as md

    from alamp_fast.cuda.bench import card_name

    needed = {"pytest": "pytest", "hypothesis": "hypothesis", "numba": "numba",
              "scipy": "scipy", "scikit-learn": "sklearn", "tqdm": "tqdm",
              "pytest-xdist": "xdist"}
    doc["modules"] = {}
    for dist, module in needed.items():
        try:
            importlib.import_module(module)
            doc["modules"][dist] = md.version(dist)
        except Exception:  # missing, or broken on import
            doc["modules"][dist] = None
    missing = [d for d, v in doc["modules"].items() if v is None and d != "pytest-xdist"]
    if missing:
        print(f"MISSING for the test steps: {', '.join(missing)}", file=sys.stderr)
    doc["card"] = card_name(doc.get("device", "unknown"))
    _write("versions", doc)
    print(json.dumps(doc, indent=1, default=str))
    return 0 if "device" in doc else 1


def ftz_probe(_args) -> int:
    """float32 subnormals through the real kernels: margins, alamp, selection equal the CPU's;
    and the PTX compiled with the loader's options has no .ftz. float32 instruction."""
    import alamp_fast as af
    from alamp_fast.cuda import _kernels, _nvrtc

    tiny = np.finfo(np.float32).smallest_subnormal
    rng = np.random.default_rng(0)
    P = np.zeros((4096, 4), dtype=np.float32)
    P[:, 0] = tiny * rng.integers(1, 1 << 20, 4096)
    P[:, 1] = tiny * rng.integers(0, 1 << 20, 4096)
    want_m, want_top = af.top2_margin(P)
    got_m, got_top = af.top2_margin(P, device="cuda")
    prev = (tiny * rng.integers(0, 1 << 20, 4096)).astype(np.float32)
    want_s = af.alamp_score(prev, want_m)
    got_s = af.alamp_score(prev, want_m, device="cuda")
    doc = {
        "subnormal_margins": int((want_m > 0).sum()),
        "margin_equal": bool(np.array_equal(got_m, want_m)),
        "top_equal": bool(np.array_equal(got_top, want_top)),
        "margins_flushed_to_zero": int(((got_m == 0) & (want_m != 0)).sum()),
        "alamp_equal": bool(np.array_equal(got_s, want_s, equal_nan=True)),
        "select_equal": bool(np.array_equal(af.select_top(want_m, 100, device="cuda"),
                                            af.select_top(want_m, 100))),
    }
    if _nvrtc.available() is None:
        pattern = re.compile(rb"\.ftz(?:\.[a-z0-9]+)*\.f32\b")
        found = {}
        for name, expressions in _kernels.all_name_expressions().items():
            ptx = _nvrtc.compile_program(_kernels.source(name), f"{name}.cu", expressions,
                                         _kernels.compile_options("compute_90")).image
            found[name] = sorted({m.group().decode() for m in pattern.finditer(ptx)})
        doc["ptx_ftz_f32_instructions"] = found
        doc["ptx_clean"] = not any(found.values())
    ok = all(doc[k] for k in ("margin_equal", "top_equal", "alamp_equal", "select_equal"))
    doc["ok"] = ok and doc.get("ptx_clean", True)
    _write("ftz_probe", doc)
    print(json.dumps(doc, indent=1))
    return 0 if doc["ok"] else 1


def bench(args) -> int:
    """The headline cases of docs/gpu.md, each timed unless the deadline is near."""
    # alamp_fast first: under ALAMP_FAST_CUDA=emulate it installs the emulator's cupy
    importlib.import_module("alamp_fast")
    import cupy

    from alamp_fast.cuda import bench as gpu_bench

    deadline = float(args.deadline)
    copy_bytes = 64 << 20 if args.scale == "tiny" else 4 << 30
    copy_bw = gpu_bench.copy_bandwidth(copy_bytes)
    rows, skipped = [], []
    cases = [c for c in gpu_bench.make_cases(args.scale) if not c.slow]
    wanted = []
    n_margin = max(gpu_bench.SCALES[args.scale]["margin_n"])  # 1e7 at the full scale
    for kernel, provider, sizes in HEADLINE:
        if kernel == "top2_margin":
            sizes = {**sizes, "n": n_margin}
        for c in cases:
            if (c.kernel == kernel and c.provider == provider
                    and all(c.sizes.get(k) == v for k, v in sizes.items())):
                wanted.append(c)
    for case in wanted:
        left = deadline - time.time()
        if left < args.reserve:
            skipped.append({"case": case.id, "why": f"deadline: {left:.0f} s left"})
            continue
        t0 = time.time()
        try:
            timing = gpu_bench.measure(case)
        except Exception as exc:  # one case failing must not lose the others
            skipped.append({"case": case.id, "why": f"error: {type(exc).__name__}: {exc}"})
            cupy.get_default_memory_pool().free_all_blocks()
            continue
        row = gpu_bench.result_row(case, timing, copy_bw)
        row["wall_s"] = time.time() - t0
        rows.append(row)
        print(f"{case.id}: {row['min_s'] * 1e3:.3f} ms, {row['gb_per_s']:.1f} GB/s", flush=True)
    from alamp_fast.bench import environment

    doc = gpu_bench.report(rows, copy_bw, environment()) if rows else {"results": [],
                                                                      "targets": {}}
    doc["scale"] = args.scale
    doc["skipped_cases"] = skipped
    _write("bench", doc)
    return 0 if rows else 1


def finish(args) -> int:
    """Merge the steps into $OUT/gpu_<card>.json."""
    steps = {p.stem: json.loads(p.read_text()) for p in sorted(STEPS.glob("*.json"))}
    status = json.loads(Path(args.status).read_text()) if args.status else {}
    card = steps.get("versions", {}).get("card", "unknown")
    bench_doc = steps.pop("bench", {})
    doc = {
        "card": card,
        "device_check": status,
        "steps": steps,
        **{k: v for k, v in bench_doc.items()},
    }
    path = OUT / f"gpu_{card}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(path)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="_device_check.py")
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("versions")
    sub.add_parser("ftz")
    b = sub.add_parser("bench")
    b.add_argument("--scale", default="full")
    b.add_argument("--deadline", required=True, help="unix time the step must end by")
    b.add_argument("--reserve", type=float, default=30.0,
                   help="seconds a case needs at least; later cases are skipped")
    f = sub.add_parser("finish")
    f.add_argument("--status", default=None)
    args = parser.parse_args(argv)
    return {"versions": versions, "ftz": ftz_probe, "bench": bench, "finish": finish}[args.step](
        args)


if __name__ == "__main__":
    sys.exit(main())
