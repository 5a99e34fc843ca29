"""Run alamp_fast's CUDA kernels on the CPU: a CUDA execution emulator and a stand-in CuPy.

With ``ALAMP_FAST_CUDA=emulate`` in the environment when ``alamp_fast`` is imported, ``import
cupy`` (anywhere in the process, from then on) gives :mod:`alamp_fast.cuda.emulate._cupy`, a
numpy-backed CuPy whose ``RawModule`` compiles the project's ``kernels/*.cu`` with the host C++
compiler against ``emu.h`` and runs them in the emulator: every CUDA thread of a block is a
fiber, switched at each barrier and warp collective, so launch geometry, divergence, shuffles,
ballots and atomics are executed as written. The public API's ``device="cuda"`` paths then run
on the CPU with the GPU code, which is how CI tests the GPU backend without a GPU.

It verifies logic, not speed or the GPU's floating-point hardware (the host's IEEE arithmetic,
no FMA contraction, glibc's ``log``). Errors the hardware would hide or turn into hangs are
raised as :class:`EmulatorError` naming the kernel, block and thread: a ``__syncthreads`` not
reached by every thread, a warp collective whose mask names a lane not executing it, a shuffle
reading a lane outside its mask, a misaligned vector access; with :func:`checking` (or
``ALAMP_FAST_EMULATE_CHECK=1``) also out-of-bounds accesses and data races between the threads
of a block.

Environment: ``ALAMP_FAST_EMULATE_MEM`` (device memory size, default 16G),
``ALAMP_FAST_EMULATE_SMS`` (multiprocessors, default 132), ``ALAMP_FAST_EMULATE_CACHE`` (where
compiled kernels are cached), ``CXX`` (the compiler, default g++).

Examples
--------
>>> import os, subprocess, sys
>>> code = "import alamp_fast as af; print(af.top2_margin([[0.1, 0.7, 0.2]], device='cuda'))"
>>> env = dict(os.environ, ALAMP_FAST_CUDA="emulate")
>>> subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
...                text=True).stdout.strip()  # doctest: +SKIP
'(array([0.5], dtype=float32), array([1]))'
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys

ENV = "ALAMP_FAST_CUDA"

__all__ = ["ENV", "EmulatorError", "active", "checking", "install", "cupy"]


def active() -> bool:
    """Whether ``ALAMP_FAST_CUDA=emulate`` is set."""
    return os.environ.get(ENV, "").strip().lower() == "emulate"


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``cupy`` and the ``cupy_backends`` modules used to the emulator's."""

    NAMES = ("cupy", "cupy_backends")

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self.NAMES:
            return None
        from alamp_fast.cuda.emulate import _cupy

        if fullname != "cupy" and fullname not in _cupy.MODULES:
            return None
        package = fullname in ("cupy", "cupy.cuda") or hasattr(
            _cupy.MODULES.get(fullname), "__path__"
        )
        return importlib.util.spec_from_loader(fullname, self, is_package=package)

    def create_module(self, spec):
        from alamp_fast.cuda.emulate import _cupy

        return _cupy if spec.name == "cupy" else _cupy.MODULES[spec.name]

    def exec_module(self, module):
        pass


_finder = _Finder()


def install() -> None:
    """Make ``import cupy`` give the emulator's CuPy in this process (idempotent).

    Raises ``RuntimeError`` if a real CuPy was imported already: kernels would go to it.
    """
    if _finder in sys.meta_path:
        return
    real = sys.modules.get("cupy")
    if real is not None and not getattr(real, "__file__", "").startswith(os.path.dirname(__file__)):
        raise RuntimeError(
            f"{ENV}=emulate: the real CuPy was imported before alamp_fast; set the variable "
            "before anything imports cupy"
        )
    sys.meta_path.insert(0, _finder)


def cupy():
    """The emulator's CuPy module (whether or not it is installed as ``cupy``)."""
    from alamp_fast.cuda.emulate import _cupy

    return _cupy


def __getattr__(name):
    if name == "EmulatorError":
        from alamp_fast.cuda.emulate._cupy import EmulatorError

        return EmulatorError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def checking(build_mode: str = "check"):
    """Modules created inside compile in the checking build (out-of-bounds and race checks).

    Modules are cached per build mode, so a kernel compiled before keeps its build: create the
    ``RawModule`` inside the block (the package's kernels: run the process with
    ``ALAMP_FAST_EMULATE_CHECK=1`` instead).
    """
    from alamp_fast.cuda.emulate import _build

    saved = getattr(_build._override, "mode", None)
    _build._override.mode = build_mode
    try:
        yield
    finally:
        _build._override.mode = saved
