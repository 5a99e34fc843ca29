"""The CUDA sources of ``kernels/``: found, compiled lazily by NVRTC, cached per device.

Each launcher asks for one template instantiation by its C++ name expression, e.g.
``rows_group<float, 4, 0, true, false, float>``; :func:`function` compiles it on first use on the
current device (``cupy.RawModule`` with ``name_expressions``; CuPy also keeps the binary in its
on-disk cache) and keeps the module for the process. Nothing here runs at import time.

The same files compile with nvcc through ``CMakeLists.txt`` (sm_80 and sm_90) as a check; the
``ALAMP_FAST_INSTANTIATE`` blocks there list the instantiations :func:`all_name_expressions`
gives, and ``tests/test_gpu.py`` compiles every one of them with NVRTC where NVRTC exists.
"""

from __future__ import annotations

import os
import re
import threading
from functools import cache
from pathlib import Path

import numpy as np

# NVRTC options: C++17 (if constexpr); IEEE division, no flush-to-zero (NVRTC's defaults, said
# out loud because margin, alamp and select_top promise the CPU's values bit for bit).
OPTIONS = ("-std=c++17", "--prec-div=true", "--ftz=false")

# C++ spelling of the element type of each supported dtype (float16 travels as its bits)
CTYPE = {
    np.dtype(np.float16): "f16bits",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

# most bytes one thread loads at once
MAX_VECTOR_BYTES = 16

_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.MULTILINE)


def kernel_dir() -> Path:
    """Where the ``.cu`` files are: ``$ALAMP_FAST_KERNELS``, a copy inside the package (wheels),
    or ``kernels/`` of a source checkout."""
    env = os.environ.get("ALAMP_FAST_KERNELS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent
    candidates += [here / "kernels", here.parents[1] / "kernels"]
    for path in candidates:
        if (path / "common.cuh").is_file():
            return path
    raise FileNotFoundError(
        "alamp_fast's CUDA sources were not found; looked in "
        + ", ".join(str(p) for p in candidates)
        + " (set ALAMP_FAST_KERNELS to the kernels/ folder)"
    )


@cache
def source(name: str) -> str:
    """Text of ``kernels/<name>.cu`` with its local includes pasted in.

    NVRTC could take ``-I`` instead, but CuPy's disk cache keys on the source text only, so an
    edited header would silently reuse a stale binary.
    """
    folder = kernel_dir()
    done: set[str] = set()

    def expand(text: str) -> str:
        def paste(match: re.Match) -> str:
            header = match.group(1)
            if header in done:
                return ""
            done.add(header)
            body = (folder / header).read_text()
            return expand(body.replace("#pragma once", ""))

        return _INCLUDE.sub(paste, text)

    return expand((folder / f"{name}.cu").read_text())


_modules: dict = {}
_lock = threading.Lock()


def function(name: str, expression: str):
    """The kernel ``expression`` of ``kernels/<name>.cu`` on the current device."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), name, expression)
    module = _modules.get(key)
    if module is None:
        with _lock:
            module = _modules.get(key)
            if module is None:
                module = cupy.RawModule(
                    code=source(name), options=OPTIONS, name_expressions=(expression,)
                )
                _modules[key] = module
    return module.get_function(expression)


@cache
def _device_attributes(device_id: int) -> dict:
    import cupy

    return dict(cupy.cuda.Device(device_id).attributes)


def sm_count() -> int:
    """Multiprocessors of the current device."""
    import cupy

    return int(_device_attributes(cupy.cuda.runtime.getDevice())["MultiProcessorCount"])


_resident: dict = {}


def resident_blocks(kernel, block: int, shared: int = 0) -> int:
    """Blocks of ``kernel`` that fit on the device at once (occupancy x multiprocessors).

    Grid-stride kernels launch exactly this many: one more wave would leave a tail in which a
    few blocks run alone (up to 2x the time of a full-occupancy pass).
    """
    import cupy
    from cupy_backends.cuda.api import driver

    key = (cupy.cuda.runtime.getDevice(), kernel.name, block, shared)
    count = _resident.get(key)
    if count is None:
        per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, block, shared)
        count = _resident[key] = max(1, int(per_sm)) * sm_count()
    return count


def grid_size(n_items: int, items_per_block: int, kernel, block: int, shared: int = 0) -> int:
    """Blocks for a grid-stride launch: enough to cover the items, at most one resident wave."""
    need = -(-n_items // items_per_block)
    return max(1, min(need, resident_blocks(kernel, block, shared)))


def vector_width(arr, row_len: int) -> int:
    """Elements per load: the widest power of two up to 16 bytes that divides the row length
    and to which the data pointer is aligned (so every row starts aligned)."""
    itemsize = arr.dtype.itemsize
    vec = MAX_VECTOR_BYTES // itemsize
    ptr = int(arr.data.ptr)
    while vec > 1 and (row_len % vec or ptr % (vec * itemsize)):
        vec //= 2
    return vec


def lanes_per_row(n_vectors: int, per_lane: int = 4) -> int:
    """Lanes sharing one row (power of two, 1..32): about ``per_lane`` vectors each."""
    lanes = 1
    while lanes < 32 and lanes * per_lane < n_vectors:
        lanes *= 2
    return lanes


def all_name_expressions() -> dict[str, list[str]]:
    """Every instantiation the launchers can ask for, by source file."""
    from alamp_fast.cuda import alamp, coreset, selection, uncertainty

    return {
        "rowwise": uncertainty.name_expressions(),
        "alamp": alamp.name_expressions(),
        "select": selection.name_expressions(),
        "kcenter": coreset.name_expressions(),
    }


def nvrtc_compile_check(arch: str = "compute_90") -> dict[str, int]:
    """Compile every instantiation with NVRTC for ``arch`` (no GPU needed); kernels per file.

    Raises ``RuntimeError`` with the NVRTC log on the first failure.
    """
    from cupy_backends.cuda.libs import nvrtc

    counts = {}
    for name, expressions in all_name_expressions().items():
        prog = nvrtc.createProgram(source(name), f"{name}.cu", (), ())
        try:
            for expr in expressions:
                nvrtc.addNameExpression(prog, expr)
            try:
                nvrtc.compileProgram(prog, (*OPTIONS, f"--gpu-architecture={arch}"))
            except nvrtc.NVRTCError as exc:
                raise RuntimeError(f"{name}.cu: {exc}\n{nvrtc.getProgramLog(prog)}") from exc
            for expr in expressions:
                nvrtc.getLoweredName(prog, expr)  # raises if the expression named nothing
        finally:
            nvrtc.destroyProgram(prog)
        counts[name] = len(expressions)
    return counts
