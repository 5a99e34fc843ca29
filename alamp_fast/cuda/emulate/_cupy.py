"""A numpy-backed stand-in for the part of CuPy that alamp_fast and its tests use.

``ndarray`` wraps a numpy array in host memory, playing device memory: CuPy's rules are kept
where code could come to depend on them (no implicit conversion to numpy, ``.get()`` copies,
``asarray`` of host data copies, reductions return 0-d arrays, argsort is stable, allocations are
256-byte aligned and counted against a device memory size). Every other array function is
numpy's, applied to the wrapped arrays (module ``__getattr__``, ``__array_ufunc__``,
``__array_function__``). ``RawModule`` / ``RawKernel`` compile CUDA C++ for the emulator
(:mod:`._build`) and launch into it. Streams and events keep their ordering semantics trivially:
every operation, kernel launches included, completes before the call returns.

Installed as ``cupy`` (and the few ``cupy_backends`` modules used) by
:func:`alamp_fast.cuda.emulate.install`, never imported otherwise.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
import types
import weakref

import numpy as np

from alamp_fast.cuda.emulate import _build

__version__ = "13.0.0+alamp_fast.emulator"

ALIGN = 256


class EmulatorError(RuntimeError):
    """A kernel misbehaved under the emulator (deadlock, bad mask, race, out of bounds, ...);
    the message names the kernel, block and thread."""


# ---------------------------------------------------------------------------------------------
# device memory accounting


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise ValueError(f"ALAMP_FAST_EMULATE_MEM must be a size like 8G or 512M, got {text!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


class _Memory:
    def __init__(self):
        self.lock = threading.Lock()
        self.used = 0
        env = os.environ.get("ALAMP_FAST_EMULATE_MEM")
        self.total = _parse_size(env) if env else 16 << 30
        self.limit = 0  # pool limit (0: none)

    def capacity(self) -> int:
        return min(self.total, self.limit) if self.limit else self.total

    def reserve(self, nbytes: int) -> None:
        with self.lock:
            if self.used + nbytes > self.capacity():
                raise cuda.memory.OutOfMemoryError(nbytes, self.used, self.capacity())
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self.lock:
            self.used -= nbytes


_mem = _Memory()


def _track(owner, nbytes: int) -> None:
    _mem.reserve(nbytes)
    weakref.finalize(owner, _mem.release, nbytes)


def _alloc(shape, dtype, order="C") -> np.ndarray:
    """A fresh device buffer: 256-byte aligned like cudaMalloc's, counted against the memory."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if _build.mode() == "asan":  # exact size: AddressSanitizer's redzone right after the end
        arr = np.empty(shape, dtype=dtype, order=order)
        _track(arr, arr.nbytes)
        return arr
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    _track(raw, raw.nbytes)
    off = (-raw.ctypes.data) % ALIGN
    arr = raw[off : off + nbytes].view(dtype)
    if order == "F" and len(shape) > 1:
        return arr.reshape(shape[::-1]).T
    return arr.reshape(shape)


def _device_copy(a: np.ndarray, dtype=None, order="K") -> np.ndarray:
    a = np.asarray(a)
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    f = order == "F" or (order in ("K", "A") and a.ndim > 1 and a.flags.f_contiguous and
                         not a.flags.c_contiguous)
    out = _alloc(a.shape, dtype, "F" if f else "C")
    np.copyto(out, a, casting="unsafe")
    return out


# ---------------------------------------------------------------------------------------------
# ndarray


def _unwrap(x):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        t = [_unwrap(v) for v in x]
        return type(x)(t) if isinstance(x, tuple) else t
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, np.ndarray):
        if x.flags.owndata and x.base is None and x.nbytes:
            _track(x, x.nbytes)
        return ndarray._from(x)
    if isinstance(x, np.generic):  # CuPy's reductions give 0-d arrays, not scalars
        return ndarray._from(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _host_reject(x, what):
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        raise TypeError(
            f"Unsupported type {type(x)} in {what}: a host (numpy) array where a device array "
            "is needed; convert it with cupy.asarray"
        )


class _MemoryPointer:
    __slots__ = ("ptr", "mem")

    def __init__(self, ptr: int, mem):
        self.ptr = ptr
        self.mem = mem

    def __int__(self):
        return self.ptr


class ndarray:
    """Device array (host memory underneath)."""

    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None:
            raise NotImplementedError("ndarray(memptr=...) is not emulated")
        self._a = _alloc(shape, dtype, order)

    @classmethod
    def _from(cls, a: np.ndarray) -> ndarray:
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # metadata
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._from(self._a.T))
    base = property(lambda self: None if self._a.base is None else ndarray._from(self._a.base))

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def data(self):
        return _MemoryPointer(int(self._a.ctypes.data), self)

    @property
    def device(self):
        return cuda.Device(0)

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self._a.shape,
            "typestr": self._a.dtype.str,
            "descr": self._a.dtype.descr,
            "data": (int(self._a.ctypes.data), False),
            "strides": None if self._a.flags.c_contiguous else self._a.strides,
            "version": 3,
        }

    # host transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        arr = np.asarray(arr)
        if arr.shape != self._a.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self._a.shape}, new shape: {arr.shape}")
        if arr.dtype != self._a.dtype:
            raise TypeError(f"{self._a.dtype} array cannot be set to {arr.dtype} array")
        np.copyto(self._a, arr)

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs:
            _host_reject(x, f"numpy.{ufunc.__name__}")
        out = kwargs.get("out")
        res = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out is not None:
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return _wrap(res)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()

    # conversions
    def _scalar(self):
        if self._a.size != 1:
            raise TypeError("only size-1 arrays can be converted to Python scalars")
        return self._a.reshape(()).item()

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return self._a.__index__()

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_wrap(self._a[i]) for i in range(len(self._a)))

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # indexing
    def __getitem__(self, key):
        _host_check_key(key)
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        _host_check_key(key)
        self._a[_unwrap(key)] = _unwrap(value)

    # copies and views
    def copy(self, order="C"):
        return ndarray._from(_device_copy(self._a, order=order))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self._a.dtype:
            return self
        return ndarray._from(_device_copy(self._a, dtype, order))

    def argsort(self, axis=-1, kind=None):
        return _wrap(np.argsort(self._a, axis=axis, kind="stable"))

    def sort(self, axis=-1, kind=None):
        self._a.sort(axis=axis, kind="stable")

    def __getattr__(self, name):
        # the rest of numpy's ndarray API: views, reductions, ...
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

            method.__name__ = name
            return method
        return _wrap(attr)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return (_from_host, (self.get(),))


def _from_host(a):
    return ndarray._from(_device_copy(a))


def _host_check_key(key):
    keys = key if isinstance(key, tuple) else (key,)
    for k in keys:
        _host_reject(k, "indexing")


def _binary(name):
    ufunc_style = getattr(np.ndarray, name)

    def op(self, other):
        _host_reject(other, name)
        res = ufunc_style(self._a, _unwrap(other))
        if res is NotImplemented:
            return res
        return _wrap(res)

    op.__name__ = name
    return op


def _inplace(name):
    fn = getattr(np.ndarray, name)

    def op(self, other):
        _host_reject(other, name)
        fn(self._a, _unwrap(other))
        return self

    op.__name__ = name
    return op


def _unary(name):
    fn = getattr(np.ndarray, name)

    def op(self):
        return _wrap(fn(self._a))

    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift", "divmod"):
    for _fmt in ("__{}__", "__r{}__"):
        if hasattr(np.ndarray, _fmt.format(_name)):
            setattr(ndarray, _fmt.format(_name), _binary(_fmt.format(_name)))
    if hasattr(np.ndarray, f"__i{_name}__"):
        setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", _unary(f"__{_name}__"))
ndarray.__hash__ = None
ndarray.__module__ = "cupy"
ndarray.__qualname__ = ndarray.__name__ = "ndarray"


# ---------------------------------------------------------------------------------------------
# array creation and module-level functions


def asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            if order is None or order in ("K", "A") or (order == "C" and a.flags.c_contiguous) or (
                order == "F" and a.flags.f_contiguous
            ):
                return a
        return ndarray._from(_device_copy(a._a, dtype, order or "K"))
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        raise TypeError(f"{type(a)} is on a real CUDA device; the emulator has none")
    return ndarray._from(_device_copy(np.asarray(a, dtype=dtype), dtype, order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
            return obj
        out = ndarray._from(_device_copy(obj._a, dtype, order))
    else:
        out = ndarray._from(_device_copy(np.array(obj, dtype=dtype, ndmin=ndmin), dtype, order))
    return out


def ascontiguousarray(a, dtype=None):
    a = asarray(a)
    if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return ndarray._from(_device_copy(a._a, dtype, "C"))


def asfortranarray(a, dtype=None):
    a = asarray(a)
    if a.flags.f_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return ndarray._from(_device_copy(a._a, dtype, "F"))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def empty(shape, dtype=float, order="C"):
    return ndarray._from(_alloc(shape, dtype, order))


def zeros(shape, dtype=float, order="C"):
    out = _alloc(shape, dtype, order)
    out[...] = 0
    return ndarray._from(out)


def ones(shape, dtype=float, order="C"):
    out = _alloc(shape, dtype, order)
    out[...] = 1
    return ndarray._from(out)


def full(shape, fill_value, dtype=None, order="C"):
    fill = _unwrap(fill_value)
    dtype = np.asarray(fill).dtype if dtype is None else dtype
    out = _alloc(shape, dtype, order)
    out[...] = fill
    return ndarray._from(out)


def _like(fn):
    def like(a, dtype=None, order="K", subok=None, shape=None):
        return fn(a.shape if shape is None else shape, dtype=a.dtype if dtype is None else dtype)

    like.__name__ = f"{fn.__name__}_like"
    return like


empty_like = _like(empty)
zeros_like = _like(zeros)
ones_like = _like(ones)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


def argsort(a, axis=-1, kind=None):  # CuPy's sort is always stable
    return _wrap(np.argsort(_unwrap(a), axis=axis, kind="stable"))


def sort(a, axis=-1, kind=None):
    return _wrap(np.sort(_unwrap(a), axis=axis, kind="stable"))


def copyto(dst, src, casting="same_kind", where=None):
    _host_reject(src, "copyto")
    np.copyto(dst._a, _unwrap(src), casting=casting, where=True if where is None else _unwrap(where))


def from_dlpack(x):
    dev = getattr(x, "__dlpack_device__", lambda: (1, 0))()
    if dev[0] != 1:  # kDLCPU
        raise TypeError(f"from_dlpack: the emulator holds no device memory of type {dev}")
    return ndarray._from(_device_copy(np.from_dlpack(x)))


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def _numpy_function(name, fn):
    def wrapper(*args, **kwargs):
        for a in args:
            _host_reject(a, f"cupy.{name}")
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    return wrapper


_MISSING = object()


def __getattr__(name):
    # numpy's dtypes, constants and functions, on the wrapped arrays
    if name.startswith("__"):
        raise AttributeError(name)
    attr = getattr(np, name, _MISSING)
    if attr is _MISSING:
        raise AttributeError(f"module 'cupy' (alamp_fast emulator) has no attribute {name!r}")
    if isinstance(attr, type) or not callable(attr):
        value = attr  # dtypes (cupy.float32 is numpy.float32), constants
    else:
        value = _numpy_function(name, attr)
    globals()[name] = value
    return value


# ---------------------------------------------------------------------------------------------
# kernels


_launch_lock = threading.RLock()


class _LaunchDesc(ctypes.Structure):  # runtime.cpp's LaunchDesc
    _fields_ = [
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("shared_bytes", ctypes.c_ulonglong),
        ("name", ctypes.c_char_p),
        ("n_regions", ctypes.c_int),
        ("regions", ctypes.POINTER(ctypes.c_ulonglong)),
        ("region_names", ctypes.POINTER(ctypes.c_char_p)),
        ("check", ctypes.c_int),
        ("err", ctypes.c_char_p),
        ("err_len", ctypes.c_int),
    ]


def _dims(v, what):
    t = (v,) if isinstance(v, (int, np.integer)) else tuple(v)
    if not 1 <= len(t) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {v!r}")
    out = [int(x) for x in t] + [1] * (3 - len(t))
    if min(out) < 1:
        raise ValueError(f"{what} must be positive, got {v!r}")
    return out


def _byte_range(a: np.ndarray) -> tuple[int, int]:
    if a.size == 0:
        p = int(a.ctypes.data)
        return p, p
    lo = hi = int(a.ctypes.data)
    for n, s in zip(a.shape, a.strides, strict=True):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + a.itemsize


class _Function:
    def __init__(self, kernel):
        self.ptr = id(kernel)
        self.kernel = kernel


class RawKernel:
    """A kernel of a :class:`RawModule`, launched into the emulator."""

    def __init__(self, code, name, options=(), backend="nvrtc", *, translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False, _library=None):
        self.code = code
        self.name = name
        self.options = tuple(options)
        self._lib = _library if _library is not None else _build.load(code, (name,))
        self.kernel = _Function(self)
        self.attributes = {
            "max_threads_per_block": 1024,
            "shared_size_bytes": 0,
            "const_size_bytes": 0,
            "local_size_bytes": 0,
            "num_regs": 32,
            "ptx_version": 90,
            "binary_version": 90,
        }
        self.max_threads_per_block = 1024
        self.num_regs = 32
        self.shared_size_bytes = 0

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        if not isinstance(args, tuple):
            raise TypeError(f"kernel arguments must be a tuple, got {type(args).__name__}")
        params = self._lib.params(self.name)
        if len(args) != len(params):
            raise TypeError(
                f"kernel {self.name} takes {len(params)} arguments, {len(args)} were given"
            )
        keep, ptrs, ranges, names = [], [], [], []
        for i, (arg, (size, is_ptr)) in enumerate(zip(args, params, strict=True)):
            if isinstance(arg, ndarray):
                if not is_ptr:
                    raise TypeError(
                        f"kernel {self.name} argument {i} is a {size}-byte value, got a device "
                        f"array"
                    )
                buf = ctypes.c_void_p(int(arg._a.ctypes.data))
                lo, hi = _byte_range(arg._a)
                ranges += [lo, hi]
                names.append(f"argument {i} ({arg.dtype}{list(arg.shape)})".encode())
            elif isinstance(arg, np.ndarray):
                raise TypeError(
                    f"kernel {self.name} argument {i}: Unsupported type {type(arg)} (a host "
                    "array; the device cannot read host memory)"
                )
            else:
                if isinstance(arg, (bool, np.bool_)):
                    value = np.bool_(arg)
                elif isinstance(arg, int):
                    value = np.int64(arg)
                elif isinstance(arg, float):
                    value = np.float64(arg)
                elif isinstance(arg, np.generic):
                    value = arg
                else:
                    raise TypeError(f"kernel {self.name} argument {i}: Unsupported type {type(arg)}")
                if is_ptr:
                    raise TypeError(
                        f"kernel {self.name} argument {i} is a pointer, got {value.dtype} scalar"
                    )
                if value.dtype.itemsize != size:
                    raise TypeError(
                        f"kernel {self.name} argument {i} takes {size} bytes, got {value.dtype} "
                        f"({value.dtype.itemsize} bytes): the kernel would read the wrong bits"
                    )
                buf = ctypes.create_string_buffer(value.tobytes(), size)
            keep.append(buf)
            ptrs.append(ctypes.cast(ctypes.pointer(buf), ctypes.c_void_p)
                        if isinstance(buf, ctypes.c_void_p) else ctypes.cast(buf, ctypes.c_void_p))
        argv = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        nreg = len(names)
        regions = (ctypes.c_ulonglong * max(1, 2 * nreg))(*ranges)
        region_names = (ctypes.c_char_p * max(1, nreg))(*names)
        err = ctypes.create_string_buffer(4096)
        desc = _LaunchDesc(
            (ctypes.c_uint * 3)(*_dims(grid, "grid")),
            (ctypes.c_uint * 3)(*_dims(block, "block")),
            int(shared_mem),
            self.name.encode(),
            nreg,
            regions,
            region_names,
            int(self._lib.mode == "check"),
            ctypes.cast(err, ctypes.c_char_p),
            len(err),
        )
        with _launch_lock:
            rc = self._lib.launcher(self.name)(ctypes.byref(desc), argv)
        if rc:
            raise EmulatorError(err.value.decode(errors="replace"))


class RawModule:
    """CUDA C++ source compiled for the emulator; ``get_function(name_expression)``."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        if code is None:
            raise NotImplementedError(
                "the CUDA emulator compiles CUDA C++ source: RawModule(path=...) (a cubin/ptx) "
                "cannot run on it"
            )
        self.code = code
        self.options = tuple(options)
        names = list(name_expressions or ()) + _build.extern_c_kernels(code)
        # the package's own sources: compile every instantiation of the file at once
        names += _package_expressions(code)
        self.name_expressions = tuple(dict.fromkeys(names))
        self._lib = _build.load(code, self.name_expressions)

    def get_function(self, name):
        if name not in self._lib.index:
            raise KeyError(f"{name!r} is not a kernel or name expression of this module")
        return RawKernel(self.code, name, self.options, _library=self._lib)


def _package_expressions(code: str) -> list[str]:
    try:
        from alamp_fast.cuda import _kernels
    except ImportError:  # pragma: no cover
        return []
    try:
        for name, exprs in _kernels.all_name_expressions().items():
            if _kernels.source(name) == code:
                return list(exprs)
    except Exception:  # a source that is not there: compile what was asked
        return []
    return []


# ---------------------------------------------------------------------------------------------
# cupy.cuda


def _module(name, doc=""):
    mod = types.ModuleType(name, doc)
    return mod


cuda = _module("cupy.cuda", "Emulated CUDA device, streams, events and memory.")
runtime = _module("cupy.cuda.runtime")
memory = _module("cupy.cuda.memory")
cuda.runtime = runtime
cuda.memory = memory


def sm_count() -> int:
    return int(os.environ.get("ALAMP_FAST_EMULATE_SMS", "132"))


class CUDARuntimeError(RuntimeError):
    def __init__(self, status, msg=""):
        self.status = status
        super().__init__(msg or f"cudaError {status}")


class OutOfMemoryError(MemoryError):
    def __init__(self, size, total, limit=0):
        self.size = size
        super().__init__(
            f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes, "
            f"emulated device memory: {limit:,} bytes; set ALAMP_FAST_EMULATE_MEM)"
        )


runtime.CUDARuntimeError = CUDARuntimeError
memory.OutOfMemoryError = OutOfMemoryError
_current = threading.local()


def _check_device(i):
    if int(i) != 0:
        raise CUDARuntimeError(101, "cudaErrorInvalidDevice: invalid device ordinal")


def _properties():
    return {
        "name": b"alamp_fast CUDA emulator",
        "totalGlobalMem": _mem.total,
        "multiProcessorCount": sm_count(),
        "major": 9,
        "minor": 0,
        "warpSize": 32,
        "maxThreadsPerBlock": 1024,
        "sharedMemPerBlock": 48 * 1024,
        "sharedMemPerMultiprocessor": 228 * 1024,
        "maxThreadsPerMultiProcessor": 2048,
        "clockRate": 0,
        "memoryClockRate": 0,
        "memoryBusWidth": 0,
        "l2CacheSize": 0,
    }


runtime.getDeviceCount = lambda: 1
runtime.getDevice = lambda: getattr(_current, "device", 0)
runtime.setDevice = lambda i: (_check_device(i), setattr(_current, "device", int(i)))[0]
runtime.getDeviceProperties = lambda i: (_check_device(i), _properties())[1]
runtime.runtimeGetVersion = lambda: 12040
runtime.driverGetVersion = lambda: 12040
runtime.deviceSynchronize = lambda: None
runtime.memGetInfo = lambda: (max(0, _mem.capacity() - _mem.used), _mem.capacity())
runtime.is_hip = False


class Device:
    def __init__(self, device=None):
        self.id = runtime.getDevice() if device is None else int(device)
        self._prev = []

    def __enter__(self):
        _check_device(self.id)
        self._prev.append(runtime.getDevice())
        _current.device = self.id
        return self

    def __exit__(self, *exc):
        _current.device = self._prev.pop()

    def use(self):
        _check_device(self.id)
        _current.device = self.id

    def synchronize(self):
        pass

    @property
    def compute_capability(self):
        return "90"

    @property
    def attributes(self):
        _check_device(self.id)
        return {
            "MultiProcessorCount": sm_count(),
            "MaxThreadsPerBlock": 1024,
            "MaxSharedMemoryPerBlock": 48 * 1024,
            "MaxSharedMemoryPerBlockOptin": 227 * 1024,
            "MaxSharedMemoryPerMultiprocessor": 228 * 1024,
            "MaxThreadsPerMultiProcessor": 2048,
            "MaxBlocksPerMultiprocessor": 32,
            "WarpSize": 32,
            "ComputeCapabilityMajor": 9,
            "ComputeCapabilityMinor": 0,
            "MaxGridDimX": 2**31 - 1,
            "MaxGridDimY": 65535,
            "MaxGridDimZ": 65535,
            "MaxBlockDimX": 1024,
            "MaxBlockDimY": 1024,
            "MaxBlockDimZ": 64,
            "L2CacheSize": 50 << 20,
            "TotalConstantMemory": 64 << 10,
        }

    @property
    def mem_info(self):
        return runtime.memGetInfo()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id} (emulated)>"


class Event:
    """Events record nothing to wait for: every operation has completed when it returns."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self.time = None
        self.done = True

    def record(self, stream=None):
        import time

        self.time = time.perf_counter()

    def synchronize(self):
        pass

    def query(self):
        return True


def get_elapsed_time(start, end):
    if start.disable_timing or end.disable_timing:
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event created with disable_timing")
    if start.time is None or end.time is None:
        raise RuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
    return (end.time - start.time) * 1e3


class Stream:
    """Streams execute synchronously, in the order operations are issued (a valid ordering of
    any CUDA program that synchronises correctly)."""

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=0):
        self.null = null
        self.non_blocking = non_blocking
        self.ptr = 0 if null else id(self)
        self._prev = []

    def __enter__(self):
        self._prev.append(get_current_stream())
        _current.stream = self
        return self

    def __exit__(self, *exc):
        _current.stream = self._prev.pop()

    def use(self):
        _current.stream = self
        return self

    def synchronize(self):
        pass

    def wait_event(self, event):
        pass

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def add_callback(self, callback, arg):
        callback(self, 0, arg)

    def launch_host_func(self, callback, arg):
        callback(arg)

    @property
    def done(self):
        return True


Stream.null = Stream(null=True)


def get_current_stream(device_id=None):
    return getattr(_current, "stream", None) or Stream.null


def alloc_pinned_memory(nbytes):
    return bytearray(int(nbytes))


class MemoryPool:
    def used_bytes(self):
        return _mem.used

    def free_bytes(self):
        return 0

    def total_bytes(self):
        return _mem.used

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        if fraction is not None:
            size = int(fraction * _mem.total)
        _mem.limit = int(size or 0)

    def get_limit(self):
        return _mem.limit


class PinnedMemoryPool:
    def free_all_blocks(self):
        pass

    def n_free_blocks(self):
        return 0


_pool = MemoryPool()
_pinned_pool = PinnedMemoryPool()


def get_default_memory_pool():
    return _pool


def get_default_pinned_memory_pool():
    return _pinned_pool


def synchronize():
    pass


for _obj in (Device, Event, Stream, get_elapsed_time, get_current_stream, alloc_pinned_memory,
             MemoryPool, PinnedMemoryPool):
    setattr(cuda, _obj.__name__, _obj)
cuda.is_available = lambda: True
cuda.get_device_id = runtime.getDevice
memory.MemoryPool = MemoryPool
memory.get_default_memory_pool = get_default_memory_pool


# ---------------------------------------------------------------------------------------------
# cupy.random: numpy generators, results on the device


class _Generator:
    def __init__(self, gen):
        self._gen = gen

    def __getattr__(self, name):
        fn = getattr(self._gen, name)
        return lambda *a, **k: _wrap(fn(*_unwrap(a), **_unwrap(k)))


random = _module("cupy.random")
random.default_rng = lambda seed=None: _Generator(np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------
# cupy_backends (the occupancy query of alamp_fast.cuda._kernels)

cupy_backends = _module("cupy_backends")
cupy_backends.__path__ = []
_cb_cuda = _module("cupy_backends.cuda")
_cb_cuda.__path__ = []
_cb_api = _module("cupy_backends.cuda.api")
_cb_api.__path__ = []
driver = _module("cupy_backends.cuda.api.driver")
cupy_backends.cuda = _cb_cuda
_cb_cuda.api = _cb_api
_cb_api.driver = driver
_cb_api.runtime = runtime


def _occupancy(func, block_size, dynamic_smem):
    """Resident blocks per multiprocessor, by an H100's limits (threads, blocks, shared)."""
    block_size = max(1, int(block_size))
    by_threads = 2048 // block_size
    by_smem = (228 * 1024) // max(1, int(dynamic_smem) + 1024) if dynamic_smem else 32
    return max(0, min(32, by_threads, by_smem))


driver.occupancyMaxActiveBlocksPerMultiprocessor = _occupancy

MODULES = {
    "cupy.cuda": cuda,
    "cupy.cuda.runtime": runtime,
    "cupy.cuda.memory": memory,
    "cupy.random": random,
    "cupy_backends": cupy_backends,
    "cupy_backends.cuda": _cb_cuda,
    "cupy_backends.cuda.api": _cb_api,
    "cupy_backends.cuda.api.driver": driver,
    "cupy_backends.cuda.api.runtime": runtime,
}
