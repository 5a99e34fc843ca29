"""``alamp-fast cuda-warmup``: fill the persistent CUDA kernel cache before the first call.

Compiles every kernel source file (all its instantiations in one NVRTC program) for the
current GPU, or for ``--arch`` on a machine without one, files in parallel, and prints one
line per file (seconds, cached or compiled, kernels, cache path). Later calls of the GPU
functions load the cached CUBINs instead of compiling.
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument(
        "--arch",
        help="target, e.g. sm_90 (H100/H200) or sm_80 (A100); default: the current GPU's",
    )
    parser.add_argument("--jobs", type=int, default=None,
                        help="files compiled at once (default: CPU count)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    import time

    from alamp_fast.cuda import _kernels, _nvrtc

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs} must be >= 1")
    if args.arch is not None:
        _kernels.compile_options(args.arch)  # validates the spelling
    why = _nvrtc.available()
    if why is not None:
        raise ValueError(why)
    t0 = time.perf_counter()
    if args.arch is None:
        try:
            arch = _kernels.device_arch()
        except Exception as exc:  # no CuPy, no driver, no device
            raise ValueError(f"no CUDA device to take the architecture from ({exc}); "
                             "pass --arch, e.g. --arch sm_90") from exc
    else:
        arch = args.arch
    result = _kernels.warmup(arch, jobs=args.jobs)
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"arch": arch, "wall_s": wall, "cache": str(_kernels.cache_dir()),
                          "nvrtc": list(_nvrtc.version()), "files": result}, indent=1))
        return 0
    print(f"NVRTC {'.'.join(map(str, _nvrtc.version()))} ({_nvrtc.library_path()}), "
          f"arch {arch}, cache {_kernels.cache_dir()}")
    for name, r in result.items():
        state = "cached" if r["cached"] else "compiled"
        print(f"  {name}.cu: {r['kernels']} kernels, {state} in {r['seconds']:.1f} s")
    print(f"done in {wall:.1f} s")
    return 0
