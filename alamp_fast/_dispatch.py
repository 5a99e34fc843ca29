"""The kernels' dispatch decorator: one implementation per call, chosen by :mod:`._backend`.

Every public kernel (:data:`alamp_fast._backend.KERNELS`) is its numpy implementation decorated
with :func:`dispatch`. The wrapper asks :func:`alamp_fast._backend.plan` once where the call
runs (the device rule is documented there) and then runs one implementation:

* numpy input on the CPU -> the numba kernels, as they are;
* torch CPU tensors -> the same kernels on zero-copy numpy views, results as torch tensors;
* GPU plans (CuPy arrays, torch CUDA tensors, host input with ``device="cuda[:N]"``) -> the
  CuPy implementations registered in :data:`alamp_fast.cuda.IMPLS`, inside the plan's device;
  torch CUDA tensors travel zero-copy through DLPack, host arrays stay on the host (the GPU
  implementations stream them in chunks); results in the input's library;
* ``dask.array`` -> the implementations registered in :data:`alamp_fast.distributed.IMPLS`.
"""

from __future__ import annotations

import functools

from alamp_fast._backend import (
    array_library,
    cupy_to,
    gpu_library,
    implementations,
    map_outputs,
    numpy_to,
    plan,
    torch_cuda_to_cupy,
    torch_to_numpy,
)

# the names the rest of the package imported from here before _backend existed
_torch_to_numpy = torch_to_numpy

__all__ = ["array_library", "dispatch", "torch_cuda_to_cupy"]


def _map_arrays(fn, args, kwargs):
    args = tuple(fn(a) for a in args)
    kwargs = {k: fn(v) for k, v in kwargs.items()}
    return args, kwargs


def _to_numpy_view(a):
    return torch_to_numpy(a) if array_library(a) == "torch" else a


def dispatch(name: str):
    """Decorate the numpy implementation of public kernel ``name``."""

    def decorate(cpu_impl):
        @functools.wraps(cpu_impl)
        def wrapper(*args, device=None, **kwargs):
            p = plan(name, (*args, *kwargs.values()), device)
            if p.device == "cpu":
                if p.library == "numpy":
                    return cpu_impl(*args, **kwargs)
                args, kwargs = _map_arrays(_to_numpy_view, args, kwargs)
                return map_outputs(numpy_to(p.library), cpu_impl(*args, **kwargs))
            if p.device == "dask":
                return implementations("dask")[name](*args, **kwargs)
            gpu_library(name, p, device, ("cupy",))  # CuPy with a device, or a clear error
            import cupy

            impls = implementations("cupy")
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
                    return torch_to_numpy(a)
                return a

            with cupy.cuda.Device(p.index or 0):
                gargs, gkwargs = _map_arrays(to_cupy, args, kwargs)
                out = impls[name](*gargs, **gkwargs)
            return map_outputs(cupy_to(p.library), out)

        wrapper.cpu_impl = cpu_impl
        return wrapper

    return decorate
