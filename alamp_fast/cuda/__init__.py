"""CUDA implementations of the public kernels, through CuPy.

:mod:`alamp_fast._dispatch` sends CuPy arrays, torch CUDA tensors and ``device="cuda"`` calls
here (the device rule of :mod:`alamp_fast._backend`), through :data:`IMPLS` (public name -> implementation taking and returning CuPy arrays,
with the signature and semantics of the CPU function). Kernels are the ``kernels/*.cu`` files
(package data), compiled by NVRTC with exact options on first use, one program per file, into
a persistent cache (``alamp-fast cuda-warmup`` fills it ahead of time); with
``ALAMP_FAST_CUDA=emulate`` they run on the CPU in the CUDA emulator instead.

Importing this package imports neither CuPy nor CUDA: ``IMPLS`` and the functions are loaded on
first access, so its pure-Python parts (:mod:`alamp_fast.cuda._stream`) work and are tested
on machines with no GPU.

Beyond the public API: :func:`top2_margin_alamp` (margin, class and alamp score in one pass),
``chunk_rows=`` on the row reductions for host arrays streamed through the GPU, and
:mod:`alamp_fast.cuda.bench` (the GPU benchmarks of ``alamp-fast bench``).
"""

from __future__ import annotations

import importlib

from alamp_fast._backend import KERNELS

# the public API's names, from the one list (alamp_fast._backend.KERNELS: name -> module, the
# same module name here as on the CPU), plus the GPU-only top2_margin_alamp (not dispatched)
_PUBLIC = tuple(KERNELS)
_FUNCTIONS = {**KERNELS, "top2_margin_alamp": "uncertainty"}

__all__ = ["IMPLS", *_FUNCTIONS]


def __getattr__(name: str):
    if name in _FUNCTIONS:
        module = importlib.import_module(f"alamp_fast.cuda.{_FUNCTIONS[name]}")
        value = getattr(module, name)
    elif name == "IMPLS":
        value = {key: __getattr__(key) for key in _PUBLIC}
    else:
        raise AttributeError(f"module 'alamp_fast.cuda' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
