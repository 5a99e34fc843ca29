"""Dispatch once, at the top: pick the implementation from the array library of the inputs.

Every public kernel is decorated with :func:`dispatch`. The wrapper looks at the array
arguments once and then runs one implementation:

* numpy (and anything ``np.asarray`` accepts: lists, ``np.memmap``) -> the CPU kernels;
* torch CPU tensors -> the CPU kernels on zero-copy numpy views (DLPack), results back as
  torch tensors;
* CuPy arrays and torch CUDA tensors -> the GPU implementations registered by
  :mod:`alamp_fast.cuda` (CuPy, zero-copy through DLPack), results on the same device and in
  the same library as the input; host arrays with ``device="cuda"`` are passed as they are
  and streamed to the GPU in chunks by those implementations;
* ``dask.array`` -> the distributed implementations registered by
  :mod:`alamp_fast.distributed`.

``device="cuda"`` with numpy input runs on the GPU and returns numpy. Importing this module
imports neither torch, CuPy nor dask: their types are recognised by module name.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np

# library name -> module that registers implementations in its ``IMPLS`` dict
_BACKEND_MODULES = {"cupy": "alamp_fast.cuda", "dask": "alamp_fast.distributed"}


def array_library(x) -> str | None:
    """'numpy', 'torch', 'torch-cuda', 'cupy', 'dask' or None for non-arrays."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return "torch-cuda" if x.device.type == "cuda" else "torch"
    if mod in ("cupy", "dask"):
        return mod
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        return "numpy"
    return None


def _implementations(library: str) -> dict:
    module_name = _BACKEND_MODULES[library]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"{library} input needs {module_name}, which failed to import: {exc}"
        ) from exc
    return module.IMPLS


def _torch_to_numpy(t):
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


def _map_arrays(fn, args, kwargs):
    args = tuple(fn(a) for a in args)
    kwargs = {k: fn(v) for k, v in kwargs.items()}
    return args, kwargs


def _map_outputs(fn, out):
    if isinstance(out, tuple):
        return tuple(fn(o) for o in out)
    return fn(out)


def dispatch(name: str):
    """Decorate the numpy implementation of public kernel ``name``."""

    def decorate(cpu_impl):
        @functools.wraps(cpu_impl)
        def wrapper(*args, device=None, **kwargs):
            libs = {array_library(a) for a in (*args, *kwargs.values())} - {None, "numpy"}
            if len(libs) > 1:
                raise TypeError(f"{name}: inputs mix array libraries {sorted(libs)}; pass one kind")
            lib = libs.pop() if libs else "numpy"
            if (
                device is not None
                and str(device) not in ("cpu", "cuda")
                and not str(device).startswith("cuda:")
            ):
                raise ValueError(f"{name}: device must be 'cpu' or 'cuda[:N]', got {device!r}")
            if lib == "numpy" and (device is None or str(device) == "cpu"):
                return cpu_impl(*args, **kwargs)
            if lib == "torch" and (device is None or str(device) == "cpu"):
                import torch

                def to_np(a):
                    return _torch_to_numpy(a) if array_library(a) == "torch" else a

                args, kwargs = _map_arrays(to_np, args, kwargs)
                out = cpu_impl(*args, **kwargs)
                return _map_outputs(
                    lambda o: (
                        torch.from_numpy(np.ascontiguousarray(o))
                        if isinstance(o, np.ndarray)
                        else o
                    ),
                    out,
                )
            if lib == "dask":
                return _implementations("dask")[name](*args, **kwargs)
            # GPU: CuPy arrays, torch CUDA tensors, or host arrays with device="cuda"
            try:
                import cupy
            except ImportError as exc:
                raise ImportError(
                    f"{name}(device={device!r}) runs on the GPU through CuPy, which is not "
                    "installed: pip install 'alamp_fast[gpu]'"
                ) from exc
            try:
                n_gpus = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:  # CUDARuntimeError without a driver, etc.
                n_gpus, why = 0, f": {exc}"
            else:
                why = ""
            if n_gpus == 0:
                raise RuntimeError(f"{name}(device={device!r}) needs a CUDA GPU; none found{why}")
            impls = _implementations("cupy")
            if name not in impls:
                raise NotImplementedError(f"{name} has no GPU implementation yet")

            def to_cupy(a):
                # host arrays (numpy, np.memmap, torch CPU as a numpy view) stay on the host:
                # the GPU implementations stream them in chunks, so pools larger than device
                # memory work
                kind = array_library(a)
                if kind == "torch-cuda":
                    return torch_cuda_to_cupy(a, cupy)
                if kind == "torch":
                    return _torch_to_numpy(a)
                return a

            with cupy.cuda.Device(_device_index(device, args, kwargs)):
                gargs, gkwargs = _map_arrays(to_cupy, args, kwargs)
                out = impls[name](*gargs, **gkwargs)
            if lib == "cupy":
                return out
            if lib == "torch-cuda":
                import torch

                return _map_outputs(
                    lambda o: torch.from_dlpack(o) if array_library(o) == "cupy" else o, out
                )
            return _map_outputs(lambda o: o.get() if array_library(o) == "cupy" else o, out)

        wrapper.cpu_impl = cpu_impl
        return wrapper

    return decorate


def _device_index(device, args, kwargs) -> int:
    for a in (*args, *kwargs.values()):
        kind = array_library(a)
        if kind == "cupy":
            return a.device.id
        if kind == "torch-cuda":
            return a.device.index or 0
    if device is not None and str(device).startswith("cuda:"):
        return int(str(device).split(":")[1])
    return 0
