"""NVRTC called directly (ctypes), so the compile options are exactly ours.

CuPy's ``RawModule(code=...)`` appends its own options after the caller's (``-ftz=true`` among
them on some versions), which flushed float32 subnormals to zero and broke the bit-for-bit
promise of margin, alamp and select_top. Here the option list handed to
``nvrtcCompileProgram`` is the one :data:`alamp_fast.cuda._kernels.OPTIONS` says, nothing
added; the CUBIN is loaded with ``cupy.RawModule(path=...)``, which compiles nothing.

The library is found, in order: ``$ALAMP_FAST_NVRTC`` (a path to ``libnvrtc.so``), a
``libnvrtc`` already loaded in this process (CuPy's, matching its CUDA version), the NVIDIA
PyPI wheels (``nvidia-cuda-nvrtc`` for CUDA 13, ``nvidia-cuda-nvrtc-cu12``), ``cuda-pathfinder``,
``$CUDA_PATH`` / ``$CUDA_HOME`` / ``/usr/local/cuda``, the system loader, and last the
library CuPy's own NVRTC binding loads. No GPU is needed to compile. ctypes releases the GIL during the call, so files compile
in parallel on threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

NVRTC_ENV = "ALAMP_FAST_NVRTC"

_lib = None
_lib_lock = threading.Lock()


class NvrtcError(RuntimeError):
    """NVRTC failed: the library is missing, or a program did not compile (log attached)."""


def _loaded_in_process() -> list[str]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    seen = []
    for line in maps.splitlines():
        path = line.split()[-1] if line.strip() else ""
        if "libnvrtc.so" in Path(path).name and "builtins" not in path and path not in seen:
            seen.append(path)
    return seen


def _wheel_candidates() -> list[str]:
    out = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if not base.is_dir():
            continue
        for pattern in ("cu*/lib/libnvrtc.so*", "cuda_nvrtc/lib/libnvrtc.so*",
                        "cu*/bin/nvrtc64_*.dll", "cuda_nvrtc/bin/nvrtc64_*.dll"):
            out += sorted(
                (p for p in glob.glob(str(base / pattern)) if "builtins" not in p),
                reverse=True,
            )
    return out


def _pathfinder_candidate() -> list[str]:
    # cuda-pathfinder (installed with CuPy 14 and cuda-python) knows the NVIDIA wheels, conda
    # and system toolkits
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
    except ImportError:
        return []
    try:
        path = load_nvidia_dynamic_lib("nvrtc").abs_path
    except Exception:  # not found, or an older pathfinder API
        return []
    return [path] if path else []


def _toolkit_candidates() -> list[str]:
    roots = [os.environ.get(v) for v in ("CUDA_PATH", "CUDA_HOME")] + ["/usr/local/cuda"]
    out = []
    for root in filter(None, roots):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
            out += sorted(
                (p for p in glob.glob(os.path.join(root, sub, "libnvrtc.so*"))
                 if "builtins" not in p and "alt" not in Path(p).name),
                reverse=True,
            )
    return out


def library_candidates() -> list[str]:
    """Where :func:`library` looks for libnvrtc, in order."""
    env = os.environ.get(NVRTC_ENV)
    out = [env] if env else []
    out += _loaded_in_process() + _wheel_candidates() + _pathfinder_candidate()
    out += _toolkit_candidates()
    found = ctypes.util.find_library("nvrtc")
    out += [found] if found else []
    out += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    return list(dict.fromkeys(out))


def _open(candidates, tried):
    for cand in candidates:
        try:
            lib = ctypes.CDLL(cand)
            lib.nvrtcVersion  # noqa: B018 - a libnvrtc, not some other library
        except (OSError, AttributeError) as exc:
            tried.append(f"{cand} ({exc})")
            continue
        _declare(lib)
        lib._alamp_fast_path = cand
        return lib
    return None


def _cupy_loaded_nvrtc() -> list[str]:
    """Where CuPy's own NVRTC binding loads libnvrtc from (it knows CuPy's CUDA): load it, then
    read the path from the process's mappings. Only the library is borrowed, not CuPy's
    compile path (which adds options)."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:  # no CuPy, or CuPy without a usable NVRTC
        return []
    return _loaded_in_process()


def library():
    """The loaded libnvrtc (ctypes.CDLL); raises :class:`NvrtcError` naming where it looked."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is None:
            tried = []
            lib = _open(library_candidates(), tried) or _open(_cupy_loaded_nvrtc(), tried)
            if lib is not None:
                _lib = lib
            else:
                raise NvrtcError(
                    "NVRTC (libnvrtc) was not found; install the NVIDIA wheel "
                    "(pip install nvidia-cuda-nvrtc for CUDA 13, nvidia-cuda-nvrtc-cu12 for "
                    f"CUDA 12) or set {NVRTC_ENV} to libnvrtc's path. Tried: " + "; ".join(tried)
                )
    return _lib


def available() -> str | None:
    """None when NVRTC can be loaded, else why not."""
    try:
        library()
    except NvrtcError as exc:
        return str(exc)
    return None


def _declare(lib) -> None:
    P = ctypes.c_void_p
    sz = ctypes.POINTER(ctypes.c_size_t)
    sigs = {
        "nvrtcVersion": [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
        "nvrtcCreateProgram": [ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_int, P, P],
        "nvrtcDestroyProgram": [ctypes.POINTER(P)],
        "nvrtcAddNameExpression": [P, ctypes.c_char_p],
        "nvrtcCompileProgram": [P, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
        "nvrtcGetPTXSize": [P, sz],
        "nvrtcGetPTX": [P, ctypes.c_char_p],
        "nvrtcGetCUBINSize": [P, sz],
        "nvrtcGetCUBIN": [P, ctypes.c_char_p],
        "nvrtcGetProgramLogSize": [P, sz],
        "nvrtcGetProgramLog": [P, ctypes.c_char_p],
        "nvrtcGetLoweredName": [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)],
        "nvrtcGetErrorString": [ctypes.c_int],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_char_p if name == "nvrtcGetErrorString" else ctypes.c_int


def _check(lib, status: int, what: str, log: str = "") -> None:
    if status != 0:
        msg = lib.nvrtcGetErrorString(status).decode()
        raise NvrtcError(f"{what}: {msg}" + (f"\n{log}" if log else ""))


def version() -> tuple[int, int]:
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def library_path() -> str:
    return library()._alamp_fast_path


@dataclass
class Compiled:
    """One program's output: PTX (virtual arch) or CUBIN (real arch), and the lowered names
    of its name expressions (the symbols to look up in the loaded module)."""

    image: bytes
    kind: str  # "ptx" or "cubin"
    lowered: dict[str, str]
    log: str


def compile_program(source: str, filename: str, expressions, options) -> Compiled:
    """Compile ``source`` with exactly ``options`` (one of them ``--gpu-architecture=``:
    ``compute_XY`` gives PTX, ``sm_XY`` a CUBIN) and return the image and lowered names."""
    lib = library()
    options = [str(o) for o in options]
    arch = [o for o in options if o.startswith(("--gpu-architecture=", "-arch="))]
    kind = "cubin" if arch and arch[-1].split("=", 1)[1].startswith("sm_") else "ptx"
    prog = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), filename.encode(), 0, None,
                               None),
        f"nvrtcCreateProgram({filename})",
    )
    try:
        for expr in expressions:
            _check(lib, lib.nvrtcAddNameExpression(prog, expr.encode()),
                   f"nvrtcAddNameExpression({expr})")
        argv = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        status = lib.nvrtcCompileProgram(prog, len(options), argv)
        log = _log(lib, prog)
        _check(lib, status, f"{filename} did not compile with {' '.join(options)}", log)
        size = ctypes.c_size_t()
        if kind == "cubin":
            _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
            buf = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
            image = buf.raw
        else:
            _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
            buf = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
            image = buf.raw.rstrip(b"\0")
        lowered = {}
        for expr in expressions:
            name = ctypes.c_char_p()
            _check(lib, lib.nvrtcGetLoweredName(prog, expr.encode(), ctypes.byref(name)),
                   f"nvrtcGetLoweredName({expr}): the expression names no kernel")
            lowered[expr] = name.value.decode()
        return Compiled(image, kind, lowered, log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _log(lib, prog) -> str:
    size = ctypes.c_size_t()
    if lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0 or size.value <= 1:
        return ""
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, buf)
    return buf.value.decode(errors="replace")
