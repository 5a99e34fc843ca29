"""Compile CUDA C++ source for the emulator: source rewriting, launchers, g++, the disk cache.

One shared library per (source, name expressions, build mode): the source is compiled by the host
C++ compiler (``$CXX``, default ``g++``) against ``emu.h``, with one C launcher per name
expression (``af_launch_<i>``) and one parameter description (``af_params_<i>``), linked with
``runtime.cpp``. Libraries are cached under ``$ALAMP_FAST_EMULATE_CACHE`` (default
``~/.cache/alamp_fast/emulate/``, or under ``$XDG_CACHE_HOME``), keyed by a hash of everything
that goes into them, so a rebuild happens only when a source, the emulator or the compiler changes.

Build modes:

* ``fast`` (default): ``-O2``; barriers, warp collectives and misaligned accesses are checked.
* ``check``: device code additionally instrumented (``-fsanitize=thread`` instrumentation with
  the emulator's own hooks, no TSan runtime), so out-of-bounds accesses and data races between
  the threads of a block are reported. Several times slower; for tests and debugging
  (``ALAMP_FAST_EMULATE_CHECK=1``).
* ``asan``: AddressSanitizer and UndefinedBehaviorSanitizer on the device code; needs the ASan
  runtime preloaded into the Python process (``LD_PRELOAD=$(g++ -print-file-name=libasan.so)``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("fast", "check", "asan")

_COMMON = (
    "-std=c++20",
    "-fPIC",
    "-fvisibility=hidden",
    "-fno-strict-aliasing",  # CUDA code reinterprets T* as vector pointers
    "-ffp-contract=off",  # no FMA contraction: the arithmetic the source spells
    "-fno-fast-math",
    "-Wno-unknown-pragmas",
    "-Wno-attributes",
    "-fstack-clash-protection",  # a large frame probes each page: overflows hit the guard page
)
_MODE_FLAGS = {
    "fast": ("-O2", "-fsanitize=alignment,null", "-DAF_EMU_STACK_KB=64"),
    "check": (
        "-O1",
        "-fsanitize=thread",
        "--param=tsan-instrument-func-entry-exit=0",
        "-fsanitize=alignment,null",
        "-DAF_EMU_CHECK",
        "-DAF_EMU_STACK_KB=64",
    ),
    "asan": (
        "-O1",
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-sanitize=vptr",
        "-fno-omit-frame-pointer",
        "-DAF_EMU_ASAN",
        "-DAF_EMU_UCONTEXT",
        "-DAF_EMU_STACK_KB=256",
    ),
}
# runtime.cpp: never instrumented (it implements the hooks); the ASan build uses the real
# sanitizer runtimes instead of the emulator's handlers
_RUNTIME_FLAGS = {
    "fast": ("-O2", "-DAF_EMU_STACK_KB=64"),
    "check": ("-O2", "-DAF_EMU_CHECK", "-DAF_EMU_STACK_KB=64"),
    "asan": ("-O1", "-g", "-DAF_EMU_ASAN", "-DAF_EMU_UCONTEXT", "-DAF_EMU_STACK_KB=256"),
}


class EmulatorBuildError(RuntimeError):
    """The host compiler rejected a kernel source (the message holds its log)."""


def compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise EmulatorBuildError(
            f"the CUDA emulator needs a host C++ compiler; {cxx!r} was not found "
            "(install g++ or set CXX)"
        )
    return path


_override = threading.local()


def mode() -> str:
    """The build mode of new modules: :func:`alamp_fast.cuda.emulate.checking` or the
    environment (``ALAMP_FAST_EMULATE_SANITIZE=asan``, ``ALAMP_FAST_EMULATE_CHECK=1``)."""
    forced = getattr(_override, "mode", None)
    if forced:
        return forced
    if os.environ.get("ALAMP_FAST_EMULATE_SANITIZE", "").lower() in ("asan", "address"):
        return "asan"
    if os.environ.get("ALAMP_FAST_EMULATE_CHECK", "").lower() not in ("", "0", "false", "no"):
        return "check"
    return "fast"


def cache_root() -> Path:
    """Where compiled kernels are kept; a per-user temporary folder when that is not writable."""
    env = os.environ.get("ALAMP_FAST_EMULATE_CACHE")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "alamp_fast" / "emulate"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"alamp_fast-emulate-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


# ---------------------------------------------------------------------------------------------
# source rewriting

_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?(?P<type>[^;\[\]]+?)\s+"
    r"(?:__align__\s*\(\s*\d+\s*\)\s*)?(?P<name>\w+)\s*\[\s*\]\s*(?:__align__\s*\(\s*\d+\s*\)\s*)?;"
)
# a static __shared__ variable: registered with the runtime, which fills it with garbage at the
# start of every block (as the GPU leaves it) and names it in error messages
_SHARED_DECL = re.compile(
    r"(?<![\w\s])(?P<lead>\s*)__shared__\s+(?P<type>[^;{}()=\[\]]+?)\s+(?P<name>[A-Za-z_]\w*)\s*"
    r"(?P<dims>(?:\[[^\]]*\]\s*)*);"
)
_CUDA_INCLUDE = re.compile(
    r'^\s*#\s*include\s*[<"](cuda_runtime\.h|cuda_fp16\.h|cuda\.h|device_launch_parameters\.h|'
    r'cuda_runtime_api\.h|stdint\.h|cstdint)[>"].*$',
    re.MULTILINE,
)
_ASM = re.compile(r"\b(?:asm|__asm__)\s*(?:volatile\s*|__volatile__\s*)?\(")
# inline PTX the emulator knows: instruction -> function of emu.h (outputs = f(inputs))
PTX = {
    "cvt.f32.f16": "::af_emu::cvt_f32_f16",
    "cvt.rn.f16.f32": "::af_emu::cvt_rn_f16_f32",
}


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis closing the one opened at ``text[start - 1]``."""
    depth, i, quote = 1, start, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise EmulatorBuildError("unbalanced parentheses in an asm statement")


def _rewrite_asm(body: str) -> str:
    """``"cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)`` -> ``f = ::af_emu::cvt_f32_f16(h)``."""
    parts = body.split(":")
    template = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', parts[0]))
    instr = template.strip().rstrip(";").split(None, 1)
    op = instr[0] if instr else ""
    if op not in PTX or len(parts) < 2:
        raise EmulatorBuildError(
            f"the CUDA emulator does not implement the inline PTX {template.strip()!r}; "
            f"known instructions: {', '.join(sorted(PTX))} (add it to PTX in {__name__})"
        )

    def operands(section: str) -> list[str]:
        return [m.group(1).strip() for m in re.finditer(r'"[^"]*"\s*\(([^()]*(?:\([^()]*\))*[^()]*)\)', section)]

    outs = operands(parts[1])
    ins = operands(parts[2]) if len(parts) > 2 else []
    if len(outs) != 1:
        raise EmulatorBuildError(f"inline PTX {template!r}: expected one output operand")
    return f"({outs[0]} = {PTX[op]}({', '.join(ins)}))"


def _register_shared(m: re.Match) -> str:
    depth = 0
    for c in m["type"]:  # `__shared__ int a, b;` declares two: left as plain statics
        depth += (c == "<") - (c == ">")
        if c == "," and depth == 0:
            return m.group(0)
    decl = f"__shared__ {m['type']} {m['name']}{m['dims'].rstrip()};"
    return f"{m['lead']}{decl} AF_EMU_SHARED_VAR({m['name']})"


def transform(code: str) -> str:
    """CUDA C++ -> host C++ for emu.h: dynamic shared arrays, inline PTX, CUDA headers."""
    code = _CUDA_INCLUDE.sub("", code)
    code = code.replace("#pragma once", "")
    code = _EXTERN_SHARED.sub(
        lambda m: f"{m['type']}* {m['name']} = "
        f"reinterpret_cast<{m['type']}*>(::af_emu::af_emu_dynamic_smem());",
        code,
    )
    code = _SHARED_DECL.sub(_register_shared, code)
    out, pos = [], 0
    for m in _ASM.finditer(code):
        if m.start() < pos:
            continue
        end = _balanced(code, m.end())
        out += [code[pos : m.start()], _rewrite_asm(code[m.end() : end - 1])]
        pos = end
    out.append(code[pos:])
    return "".join(out)


_EXTERN_C_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:[\w\s()]*?\s)?(\w+)\s*\(')


def extern_c_kernels(code: str) -> list[str]:
    """Names of the ``extern "C" __global__`` functions (reachable without name expressions)."""
    return _EXTERN_C_KERNEL.findall(code)


def translation_unit(code: str, expressions) -> str:
    lines = [
        f'#include "{HERE / "emu.h"}"',
        '#line 1 "kernel.cu"',
        transform(code),
        "",
        "// launchers",
    ]
    for i, expr in enumerate(expressions):
        lines += [
            f'extern "C" __attribute__((visibility("default"))) int af_launch_{i}'
            f"(const void* desc, void** args) {{ return ::af_emu::launch(desc, &{expr}, args); }}",
            f'extern "C" __attribute__((visibility("default"))) int af_params_{i}'
            f"(int* s, int* p, int cap) {{ return ::af_emu::describe(&{expr}, s, p, cap); }}",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# building and loading


def _run(cmd, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        log = (proc.stderr or proc.stdout).strip()
        if len(log) > 20000:
            log = log[:20000] + "\n[...]"
        raise EmulatorBuildError(f"{what} failed ({' '.join(cmd[:2])} ...):\n{log}")


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


_versions: dict = {}


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _runtime_object(cxx: str, build_mode: str, version: str) -> Path:
    # emu_ops.h is the runtime's contract with the device header: a change to it rebuilds both
    src = (HERE / "runtime.cpp").read_text() + (HERE / "emu_ops.h").read_text()
    flags = (*_COMMON, *_RUNTIME_FLAGS[build_mode])
    out = cache_root() / "runtime" / f"runtime-{build_mode}-{_key(src, *flags, version)}.o"
    if out.exists():
        return out
    with _locked(out.with_suffix(".lock")):
        if not out.exists():
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            _run([cxx, *flags, "-c", str(HERE / "runtime.cpp"), "-o", str(tmp)], "runtime build")
            os.replace(tmp, out)
    return out


def parallel_parts(n_expressions: int) -> int:
    """Objects one library is compiled as, in parallel (about 24 instantiations each)."""
    jobs = int(os.environ.get("ALAMP_FAST_EMULATE_JOBS", "0")) or (os.cpu_count() or 1)
    return max(1, min(jobs, -(-n_expressions // 24)))


def build(code: str, expressions, build_mode: str | None = None) -> Path:
    """Path of the shared library for ``code`` with launchers for ``expressions`` (built and
    cached on first use)."""
    build_mode = build_mode or mode()
    if build_mode not in MODES:
        raise ValueError(f"emulator build mode must be one of {MODES}, got {build_mode!r}")
    cxx = compiler()
    version = _versions.get(cxx) or _versions.setdefault(cxx, _version(cxx))
    expressions = list(expressions)
    flags = (*_COMMON, *_MODE_FLAGS[build_mode])
    emu_h = (HERE / "emu.h").read_text()
    runtime = (HERE / "runtime.cpp").read_text() + (HERE / "emu_ops.h").read_text()
    key = _key(code, "\n".join(expressions), *flags, version, emu_h, runtime, build_mode)
    folder = cache_root() / key
    lib = folder / "kernels.so"
    if lib.exists():
        return lib
    with _locked(cache_root() / f"{key}.lock"):
        if lib.exists():
            return lib
        rt = _runtime_object(cxx, build_mode, version)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            tmp = Path(tmp)
            parts = parallel_parts(len(expressions))
            # every part compiles the whole source but instantiates only its launchers; the
            # launchers are numbered globally
            chunks = [list(range(len(expressions)))[k::parts] for k in range(parts)]
            objs = []

            def compile_part(k: int) -> Path:
                tu = translation_unit(code, expressions)
                # keep only this part's launchers
                keep = set(chunks[k])
                lines = [
                    ln
                    for ln in tu.splitlines()
                    if not (m := re.match(r'extern "C" .* int af_(?:launch|params)_(\d+)\(', ln))
                    or int(m.group(1)) in keep
                ]
                src = tmp / f"part{k}.cpp"
                src.write_text("\n".join(lines) + "\n")
                obj = tmp / f"part{k}.o"
                _run([cxx, *flags, "-c", str(src), "-o", str(obj)], "emulated kernel build")
                return obj

            if parts == 1:
                objs = [compile_part(0)]
            else:
                with ThreadPoolExecutor(parts) as pool:
                    objs = list(pool.map(compile_part, range(parts)))
            (folder / "kernel.cpp").write_text(translation_unit(code, expressions))
            link = [cxx, "-shared", "-o", str(tmp / "kernels.so"), *map(str, objs), str(rt)]
            if parts > 1:  # identical non-inline definitions from each part's copy of the source
                link.append("-Wl,--allow-multiple-definition")
            if build_mode == "asan":
                link[1:1] = ["-fsanitize=address,undefined"]
            else:
                link.append("-Wl,-z,defs")
            _run(link, "emulated kernel link")
            os.replace(tmp / "kernels.so", lib)
    return lib


class Library:
    """A loaded emulator library: launchers by name expression."""

    def __init__(self, path: Path, expressions, build_mode: str):
        self.path = path
        self.mode = build_mode
        self.cdll = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0))
        self.index = {e: i for i, e in enumerate(expressions)}
        self._params: dict = {}

    def launcher(self, expression: str):
        fn = getattr(self.cdll, f"af_launch_{self.index[expression]}")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        return fn

    def params(self, expression: str) -> list[tuple[int, bool]]:
        """(size, is_pointer) of each kernel parameter."""
        got = self._params.get(expression)
        if got is None:
            fn = getattr(self.cdll, f"af_params_{self.index[expression]}")
            cap = 64
            sizes, ptrs = (ctypes.c_int * cap)(), (ctypes.c_int * cap)()
            n = fn(sizes, ptrs, cap)
            got = self._params[expression] = [(sizes[i], bool(ptrs[i])) for i in range(n)]
        return got


_loaded: dict = {}
_load_lock = threading.Lock()


def load(code: str, expressions, build_mode: str | None = None) -> Library:
    build_mode = build_mode or mode()
    expressions = tuple(dict.fromkeys(expressions))
    key = (code, expressions, build_mode)
    with _load_lock:
        lib = _loaded.get(key)
        if lib is None:
            lib = _loaded[key] = Library(
                build(code, expressions, build_mode), expressions, build_mode
            )
    return lib
