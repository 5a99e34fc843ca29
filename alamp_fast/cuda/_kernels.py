"""The CUDA sources of ``alamp_fast/cuda/kernels/``: found, compiled, cached, loaded.

Each launcher asks for one template instantiation by its C++ name expression, e.g.
``rows_group<float, 4, 0, true, false, float>``; :func:`function` returns it on the current
device. The first request for a source file compiles that whole file, every instantiation the
launchers can ask for (:func:`all_name_expressions`) at once, with NVRTC called directly
(:mod:`alamp_fast.cuda._nvrtc`) and exactly :func:`compile_options` (CuPy's own compile path
appends ``-ftz=true``, which flushed float32 subnormals); the CUBIN and its lowered names go to
a persistent cache (:func:`cache_dir`) and are loaded with ``cupy.RawModule(path=...)``.
:func:`warmup` (``alamp-fast cuda-warmup``) fills the cache for all files in parallel.
Nothing here runs at import time.

Under ``ALAMP_FAST_CUDA=emulate`` (:func:`emulated`) the sources go to the CPU emulator through
the stand-in CuPy's ``RawModule(code=..., name_expressions=...)`` instead.

The same files compile with nvcc through ``CMakeLists.txt`` (sm_80 and sm_90) as a check; the
``ALAMP_FAST_INSTANTIATE`` blocks there list exactly the instantiations
:func:`all_name_expressions` gives (one list, in :mod:`alamp_fast.cuda._instantiations`;
``tests/cuda/test_cuda_build.py`` checks both lists agree).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from alamp_fast.cuda import _instantiations

# NVRTC options, passed exactly (no library adds to them): C++17 (if constexpr); IEEE division
# and square root; no flush-to-zero of float32 subnormals. Margin, alamp and select_top promise
# the CPU's values bit for bit, so all three are said out loud.
OPTIONS = ("-std=c++17", "--prec-div=true", "--prec-sqrt=true", "--ftz=false")

# persistent cache of compiled kernels (CUBIN + lowered names); env overrides the folder
CACHE_ENV = "ALAMP_FAST_CUDA_CACHE"
EMULATE_ENV = "ALAMP_FAST_CUDA"

# C++ element types and vector width, re-exported for the launchers
CTYPE = _instantiations.CTYPE
MAX_VECTOR_BYTES = _instantiations.MAX_VECTOR_BYTES

_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.MULTILINE)


def kernel_dir() -> Path:
    """Where the ``.cu`` files are: ``$ALAMP_FAST_KERNELS``, else ``kernels/`` next to this
    module (package data: source checkouts, wheels and non-editable installs alike)."""
    env = os.environ.get("ALAMP_FAST_KERNELS")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent / "kernels")
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

    NVRTC could take ``-I`` instead, but the compile cache keys on the source text, so an
    edited header must change the text.
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


def emulated() -> bool:
    """True when ``ALAMP_FAST_CUDA=emulate``: kernels run on the CPU emulator."""
    return os.environ.get(EMULATE_ENV, "").strip().lower() == "emulate"


def compile_options(arch: str) -> tuple[str, ...]:
    """The exact NVRTC option list for ``arch`` (``sm_90``: CUBIN, ``compute_90``: PTX)."""
    if not re.fullmatch(r"(sm|compute)_\d+[a-z]?", arch):
        raise ValueError(f"arch must look like 'sm_90' or 'compute_90', got {arch!r}")
    return (*OPTIONS, f"--gpu-architecture={arch}")


def cache_dir() -> Path:
    """The persistent kernel cache: ``$ALAMP_FAST_CUDA_CACHE``, else
    ``$XDG_CACHE_HOME/alamp_fast/cuda`` (``~/.cache/alamp_fast/cuda``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alamp_fast" / "cuda"


def _cache_key(name: str, arch: str, expressions) -> str:
    from alamp_fast.cuda import _nvrtc

    h = hashlib.sha256()
    for part in (source(name), "\0".join(compile_options(arch)), "\0".join(expressions),
                 "nvrtc {}.{}".format(*_nvrtc.version())):
        h.update(part.encode())
        h.update(b"\1")
    return h.hexdigest()[:32]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_file(name: str, arch: str, *, use_cache: bool = True) -> tuple[Path, dict, bool]:
    """Compile every instantiation of ``kernels/<name>.cu`` for ``arch`` in one NVRTC program,
    into the persistent cache. Returns ``(image path, {expression: lowered name}, was_cached)``.
    A cache entry is written atomically (image first, then its index), so a crash mid-write
    leaves no half entry that a later run would trust."""
    from alamp_fast.cuda import _nvrtc

    expressions = all_name_expressions()[name]
    key = _cache_key(name, arch, expressions)
    kind = "cubin" if arch.startswith("sm_") else "ptx"
    image = cache_dir() / f"{name}-{arch}-{key}.{kind}"
    index = image.with_suffix(".json")
    if use_cache and image.is_file() and index.is_file():
        try:
            lowered = json.loads(index.read_text())["lowered"]
            if set(lowered) == set(expressions):
                return image, lowered, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged index: compile again
    out = _nvrtc.compile_program(source(name), f"{name}.cu", expressions, compile_options(arch))
    _atomic_write(image, out.image)
    meta = {"source": name, "arch": arch, "options": list(compile_options(arch)),
            "nvrtc": list(_nvrtc.version()), "lowered": out.lowered}
    _atomic_write(index, json.dumps(meta, indent=1).encode())
    return image, out.lowered, False


def device_arch(device_id: int | None = None) -> str:
    """``sm_XY`` of a CUDA device (the current one by default)."""
    import cupy

    dev = cupy.cuda.Device(device_id) if device_id is not None else cupy.cuda.Device()
    return f"sm_{dev.compute_capability}"


def warmup(arch: str | None = None, *, jobs: int | None = None, names=None) -> dict:
    """Compile every source file for ``arch`` (default: the current device's) into the cache,
    files in parallel. Returns ``{file: {"seconds", "cached", "kernels", "path"}}``."""
    arch = arch or device_arch()
    names = list(names or all_name_expressions())
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))

    def one(name):
        t0 = time.perf_counter()
        path, lowered, cached = compile_file(name, arch)
        return name, {"seconds": time.perf_counter() - t0, "cached": cached,
                      "kernels": len(lowered), "path": str(path)}

    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, names))


class _Module:
    """One loaded source file: its expressions' kernels on one device."""

    def __init__(self, raw, lowered: dict | None):
        self._raw = raw
        self._lowered = lowered
        self._functions: dict = {}

    def get_function(self, expression: str):
        fn = self._functions.get(expression)
        if fn is None:
            symbol = expression if self._lowered is None else self._lowered.get(expression)
            if symbol is None:
                raise KeyError(
                    f"{expression!r} is not among the instantiations compiled for this file; "
                    "add it to the launcher's name_expressions() and the .cu's "
                    "ALAMP_FAST_INSTANTIATE block"
                )
            fn = self._functions[expression] = self._raw.get_function(symbol)
        return fn


def _load(name: str) -> _Module:
    import cupy

    expressions = tuple(all_name_expressions()[name])
    if emulated():
        raw = cupy.RawModule(code=source(name), options=OPTIONS, name_expressions=expressions)
        return _Module(raw, None)
    arch = device_arch()
    path, lowered, _ = compile_file(name, arch)
    try:
        raw = cupy.RawModule(path=str(path))
        raw.get_function(next(iter(lowered.values())))  # loads the image now
    except Exception as exc:
        from alamp_fast.cuda import _nvrtc

        raise RuntimeError(
            f"the {arch} CUBIN of {name}.cu compiled by NVRTC "
            f"{'.'.join(map(str, _nvrtc.version()))} ({_nvrtc.library_path()}) did not load "
            f"on this driver (CUDA {cupy.cuda.runtime.driverGetVersion()}): {exc}. Use the "
            "NVRTC of your CUDA major version (pip install nvidia-cuda-nvrtc-cu12 for CUDA 12) "
            f"or point {_nvrtc.NVRTC_ENV} at it"
        ) from exc
    return _Module(raw, lowered)


def function(name: str, expression: str):
    """The kernel ``expression`` of ``kernels/<name>.cu`` on the current device."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), name)
    module = _modules.get(key)
    if module is None:
        with _lock:
            module = _modules.get(key)
            if module is None:
                module = _modules[key] = _load(name)
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

    key = (cupy.cuda.runtime.getDevice(), kernel.name, block, shared)
    count = _resident.get(key)
    if count is None:
        if emulated():  # no occupancy calculator: one block per multiprocessor
            per_sm = 1
        else:
            from cupy_backends.cuda.api import driver

            per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(
                kernel.kernel.ptr, block, shared
            )
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
    return _instantiations.all_name_expressions()


def nvrtc_compile_check(arch: str = "compute_90") -> dict[str, int]:
    """Compile every instantiation with NVRTC for ``arch`` (no GPU needed), with the loader's
    exact options; kernels per file. Raises ``NvrtcError`` with the NVRTC log on a failure."""
    from alamp_fast.cuda import _nvrtc

    counts = {}
    for name, expressions in all_name_expressions().items():
        _nvrtc.compile_program(source(name), f"{name}.cu", expressions, compile_options(arch))
        counts[name] = len(expressions)
    return counts
