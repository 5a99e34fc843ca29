"""The one registry and device rule: which array library and which device run a call.

Every entry point that takes arrays (the dispatched kernels of :mod:`alamp_fast._dispatch`,
:func:`alamp_fast.badge`, the SVMs' ``device=``) asks :func:`plan` where to run, and this rule
answers the same way for all of them. An array's library is recognised by its type's module
(:func:`array_library`; importing this module imports neither torch, CuPy nor dask). numpy
arrays (and ``np.memmap``, lists, numpy scalars) run the numba CPU kernels; torch CPU tensors
run them too, on zero-copy numpy views, and get torch tensors back; CuPy arrays and torch CUDA
tensors run on their own GPU (CuPy, zero-copy through DLPack) and get results of their own
library on that device; ``dask.array`` inputs run the distributed implementations
(:mod:`alamp_fast.distributed`). ``device`` is ``None``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
``torch.device`` of those kinds: ``device="cuda[:N]"`` moves host input (numpy or torch CPU) to
that GPU, streamed in chunks where the implementation can, and returns the result in the
input's library on the host. Mixed inputs: numpy arrays (and lists) go with any one other
library (they are converted where that library runs: ``exclude`` indices as numpy with CuPy
scores, for example) and the result is in that other library; two non-numpy libraries
(torch and CuPy, torch and dask...) raise ``TypeError``; GPU arrays with ``device="cpu"``, GPU
arrays on two devices or on another device than ``device="cuda:N"`` names, and dask arrays with
a ``device`` other than ``None``/``"cpu"`` raise ``ValueError``; a device that is not one of the
spellings above raises ``ValueError`` (a string) or ``TypeError`` (another type). Each of these
errors names the call and the offending value. A GPU call with no usable GPU raises
``ImportError`` (the GPU library is missing) or ``RuntimeError`` (no device), naming the call
and the device. With ``ALAMP_FAST_CUDA=emulate`` (read when :mod:`alamp_fast` is imported)
``import cupy`` gives the CUDA emulator's CuPy (:mod:`alamp_fast.cuda.emulate`): the GPU paths,
this rule included, run unchanged on the CPU, one emulated device (index 0), and torch reports no
CUDA device, so host input with ``device="cuda"`` runs through CuPy.

The registry: :data:`KERNELS` is the one list of public kernels (name -> module: the CPU
kernel lives in ``alamp_fast.<module>``, its GPU twin of the same name in
``alamp_fast.cuda.<module>``); :data:`IMPL_MODULES` names the module whose ``IMPLS`` dict holds
each non-numpy library's implementations (:func:`implementations`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import numpy as np

# The public, dispatched kernels: name -> module (alamp_fast.<module> on the CPU,
# alamp_fast.cuda.<module> on the GPU, alamp_fast.distributed.IMPLS on dask). The one source:
# alamp_fast.__all__, alamp_fast.cuda's IMPLS and the tests derive their lists from it.
KERNELS = {
    "margin": "uncertainty",
    "top2_margin": "uncertainty",
    "entropy": "uncertainty",
    "least_confidence": "uncertainty",
    "alamp_score": "alamp",
    "select_top": "selection",
    "diversify": "selection",
    "kcenter_greedy": "coreset",
}

# array library -> module that registers its implementations in an ``IMPLS`` dict
IMPL_MODULES = {"cupy": "alamp_fast.cuda", "dask": "alamp_fast.distributed"}

LIBRARIES = ("numpy", "torch", "torch-cuda", "cupy", "dask")
GPU_LIBRARIES = ("torch-cuda", "cupy")


def array_library(x) -> str | None:
    """'numpy', 'torch', 'torch-cuda', 'cupy', 'dask' or None for non-arrays."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        if not hasattr(x, "device"):  # torch.dtype, torch.Size...: not arrays
            return None
        return "torch-cuda" if x.device.type == "cuda" else "torch"
    if mod in ("cupy", "dask"):
        return mod
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        return "numpy"
    return None


# ---------------------------------------------------------------------------------------------
# devices


@dataclass(frozen=True)
class Device:
    """A parsed ``device=`` argument: ``kind`` ('cpu', 'cuda', or another torch device type),
    ``index`` (None: the current device) and whether it was given as a ``torch.device``."""

    kind: str
    index: int | None = None
    torch: bool = False

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


_DEVICE_STRING = re.compile(r"(cpu|cuda)(?::(\d+))?")


def device_error(who: str, device, exc=ValueError):
    """The one error for a ``device`` argument that is not a device (``exc`` instance)."""
    return exc(
        f"{who}: device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got device={device!r}"
    )


def _is_torch_device(device) -> bool:
    return type(device).__module__.split(".")[0] == "torch" and type(device).__name__ == "device"


def parse_device(device, who: str, *, any_torch_device: bool = False) -> Device | None:
    """``device`` as a :class:`Device` (None stays None).

    Strings: ``"cpu"``, ``"cuda"``, ``"cuda:N"``. ``torch.device`` objects: kinds cpu and cuda,
    or any kind with ``any_torch_device`` (the SVMs run torch on whatever device torch has).
    Another string raises ``ValueError``, another type ``TypeError``, both naming ``device``.
    """
    if device is None:
        return None
    if _is_torch_device(device):
        if device.type not in ("cpu", "cuda") and not any_torch_device:
            raise device_error(who, device)
        return Device(device.type, device.index, torch=True)
    if isinstance(device, str):
        m = _DEVICE_STRING.fullmatch(device)
        if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
            raise device_error(who, device)
        return Device(m.group(1), None if m.group(2) is None else int(m.group(2)))
    raise device_error(who, device, TypeError)


def _array_device_index(a, library: str) -> int:
    if library == "cupy":
        return int(a.device.id)
    return int(a.device.index) if a.device.index is not None else 0  # torch-cuda


@dataclass(frozen=True)
class Plan:
    """Where a call runs: ``library`` is the inputs' library (the result's), ``device`` is
    ``'cpu'``, ``'cuda'`` or ``'dask'``, ``index`` the CUDA device ordinal (None: the current
    device, for host input with ``device="cuda"``)."""

    library: str
    device: str
    index: int | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"


def plan(who: str, arrays, device=None) -> Plan:
    """Apply the device rule (module docstring) to a call's array arguments and ``device``.

    ``arrays`` holds every argument of the call (non-arrays are ignored); ``who`` names the call
    in the errors.
    """
    dev = parse_device(device, who)
    arrays = tuple(arrays)
    kinds = [array_library(a) for a in arrays]
    libs = set(kinds) - {None, "numpy"}
    if len(libs) > 1:
        raise TypeError(f"{who}: inputs mix array libraries {sorted(libs)}; pass one kind")
    library = libs.pop() if libs else "numpy"
    if library == "dask":
        if dev is not None and dev.kind != "cpu":
            raise ValueError(
                f"{who}: dask arrays run where their chunks are; got device={device!r} "
                "(pass device=None)"
            )
        return Plan("dask", "dask")
    if library in GPU_LIBRARIES:
        indices = sorted(
            {_array_device_index(a, k) for a, k in zip(arrays, kinds, strict=True) if k == library}
        )
        if len(indices) > 1:
            raise ValueError(f"{who}: {library} inputs are on different GPUs {indices}")
        if dev is not None and dev.kind == "cpu":
            raise ValueError(
                f"{who}: {library} input cannot run with device={device!r}; move it to the host "
                "first"
            )
        if dev is not None and dev.index is not None and dev.index != indices[0]:
            raise ValueError(
                f"{who}: {library} input is on cuda:{indices[0]} but device={device!r}"
            )
        return Plan(library, "cuda", indices[0])
    if dev is None or dev.kind == "cpu":
        return Plan(library, "cpu")
    return Plan(library, "cuda", dev.index)


# ---------------------------------------------------------------------------------------------
# registry and GPU libraries


def implementations(library: str) -> dict:
    """The ``IMPLS`` dict (public name -> implementation) of ``library``'s backend module."""
    module_name = IMPL_MODULES[library]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"{library} input needs {module_name}, which failed to import: {exc}"
        ) from exc
    return module.IMPLS


def _torch_cuda_usable() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def require_cupy(who: str, device=None):
    """The ``cupy`` module, with a usable device; ImportError / RuntimeError naming the call
    and the device otherwise."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            f"{who}(device={device!r}) runs on the GPU through CuPy, which is not "
            "installed: pip install 'alamp_fast[gpu]'"
        ) from exc
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, etc.
        n_gpus, why = 0, f": {exc}"
    else:
        why = ""
    if n_gpus == 0:
        raise RuntimeError(f"{who}(device={device!r}) needs a CUDA GPU; none found{why}")
    return cupy


def gpu_library(who: str, p: Plan, device, supported=("cupy",)) -> str:
    """The GPU library ('torch-cuda' or 'cupy') that runs a GPU plan.

    GPU input runs in its own library when the call supports it (else in the first supported
    one, through DLPack); host input runs in the first of ``supported`` that sees a GPU (torch
    is asked ``torch.cuda.is_available()``, CuPy for a device count). None usable raises the
    error of :func:`require_cupy` (or an ImportError naming both, when torch is supported).
    """
    if p.library in supported:
        return p.library
    for lib in supported:
        if lib == "torch-cuda" and _torch_cuda_usable():
            return lib
        if lib == "cupy":
            try:
                require_cupy(who, device)
            except (ImportError, RuntimeError) as exc:
                if "torch-cuda" not in supported:
                    raise
                raise ImportError(
                    f"{who}(device={device!r}) needs torch with CUDA or CuPy with a GPU: "
                    f"pip install 'alamp_fast[torch]' or 'alamp_fast[gpu]' ({exc})"
                ) from exc
            return lib
    raise ImportError(f"{who}(device={device!r}) needs torch with a CUDA device")


# ---------------------------------------------------------------------------------------------
# conversions between libraries


def torch_to_numpy(t) -> np.ndarray:
    """A torch CPU tensor as a numpy array (zero-copy where numpy has the dtype; bfloat16 is
    widened to float32, exactly)."""
    t = t.detach().resolve_conj().resolve_neg()
    if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16; widening is exact
        t = t.float()
    return t.numpy()


def torch_cuda_to_cupy(t, cupy):
    """A torch CUDA tensor as a CuPy array (zero-copy through DLPack). bfloat16, which CuPy has
    no dtype for (``from_dlpack`` segfaults on CuPy 13.0-13.3 and raises later), is widened to
    float32 on the device first, exactly, as the CPU path does."""
    t = t.detach()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return cupy.from_dlpack(t)


def to_host(x):
    """A numpy view or copy of any supported array (torch tensors on any device, CuPy)."""
    lib = array_library(x)
    if lib == "torch":
        return torch_to_numpy(x)
    if lib == "torch-cuda":
        return torch_to_numpy(x.detach().cpu())
    if lib == "cupy":
        return x.get()
    return x


def map_outputs(fn, out):
    """``fn`` applied to one result or to each of a tuple of results."""
    if isinstance(out, tuple):
        return tuple(fn(o) for o in out)
    return fn(out)


def numpy_to(library: str):
    """Converter of numpy results to ``library`` on the host ('numpy' or 'torch')."""
    if library == "torch":
        import torch

        return lambda o: (
            torch.from_numpy(np.ascontiguousarray(o)) if isinstance(o, np.ndarray) else o
        )
    return lambda o: o


def cupy_to(library: str):
    """Converter of CuPy results to ``library`` ('cupy', 'torch-cuda', or host 'numpy' /
    'torch')."""
    if library == "cupy":
        return lambda o: o
    if library == "torch-cuda":
        import torch

        return lambda o: torch.from_dlpack(o) if array_library(o) == "cupy" else o
    host = numpy_to(library)
    return lambda o: host(o.get()) if array_library(o) == "cupy" else o
