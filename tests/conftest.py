"""Shared fixtures: one test body on every backend, real data, exact-equality assertions."""

from __future__ import annotations

import importlib.util
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# numba compiles on first call and hypothesis would count that against its deadline; the
# "ci" profile is the default, "thorough" is for a local hunt (HYPOTHESIS_PROFILE=thorough).
settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

# The test folders mirror the package's rooms (tests/kernels, tests/cuda, tests/al, ...; see
# tests/README.md) and hold no __init__.py: each test module imports by its file name, so file
# names stay unique across folders. The helpers shared by every folder live here in tests/ and
# import as top-level modules: `from conftest import assert_exact`, `import reference`,
# `from faults.helpers import ...`. Put tests/ on sys.path so those imports work from any
# folder under any --import-mode (the default "prepend" mode adds it too, when it loads this
# file).
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


# ---------------------------------------------------------------------------------------------
# backends


def _real_gpu_present() -> bool:
    """A CUDA driver that sees a device, and CuPy installed (asked without importing CuPy)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return libcuda.cuInit(0) == 0 and libcuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and (
            count.value > 0
        )
    except OSError:
        return False


# No GPU (CI): the CuPy backend and tests/cuda/test_gpu.py run on alamp_fast's CUDA emulator, the
# same test bodies. ALAMP_FAST_CUDA set by the caller wins (e.g. ALAMP_FAST_CUDA=device on a GPU
# machine, or to test the skips). Must happen before anything imports alamp_fast or cupy.
if "ALAMP_FAST_CUDA" not in os.environ and not _real_gpu_present():
    os.environ["ALAMP_FAST_CUDA"] = "emulate"
if os.environ.get("ALAMP_FAST_CUDA") == "emulate":
    # `import alamp_fast` installs it too, unless alamp_fast was imported before this file
    from alamp_fast.cuda.emulate import install as _install_cuda_emulator

    _install_cuda_emulator()


def _cuda_skip_reason(library: str) -> str | None:
    """Why a GPU backend cannot run here, or None when it can.

    cupy can be installed yet fail to import (no CUDA libraries): that is a skip, not an error.
    """
    try:
        import cupy
    except ImportError as exc:
        return f"cupy is not importable: {str(exc).strip().splitlines()[-1]}"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device visible to cupy"
    except Exception as exc:  # CUDARuntimeError and friends, whose classes vary by version
        return f"CUDA unavailable to cupy: {exc}"
    if library == "torch-cuda":
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        import torch

        if not torch.cuda.is_available():
            return "torch reports no CUDA device"
    # the GPU kernels arrive with a later issue; absent module = skip, broken module = fail
    if importlib.util.find_spec("alamp_fast.cuda") is None:
        return "alamp_fast.cuda (the GPU implementations) does not exist yet"
    return None


def _torch_from_numpy(x: np.ndarray, device: str):
    """A tensor with the same values and, where torch can express it, the same strides."""
    import torch

    flipped = tuple(ax for ax in range(x.ndim) if x.strides[ax] < 0)
    if flipped:  # torch has no negative strides: flip back after the (copying) conversion
        return torch.from_numpy(np.flip(x, flipped)).to(device).flip(flipped)
    return torch.from_numpy(x).to(device)


class Backend:
    """Runs a public kernel on one array library: numpy arrays in, numpy arrays out.

    Backends: ``numpy`` (the numba CPU kernels, serial or parallel build chosen by input size
    as in production), ``numpy-parallel`` (the parallel builds forced for every size, so the
    multithreaded code paths meet the same small, tie-heavy inputs), ``torch-cpu``, ``cupy``
    and ``torch-cuda``.

    ``backend(af.margin, probs)`` converts every numpy array argument (positional or keyword)
    to the backend's array type, calls the kernel, checks every returned array is of the
    backend's type (torch in -> torch out), and converts the results back to numpy so the
    assertions are written once. Lists, scalars and None pass through unchanged.
    """

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def to_backend(self, x):
        if not isinstance(x, np.ndarray):
            return x
        if self.name.startswith("numpy"):
            return x
        if self.name == "torch-cpu":
            return _torch_from_numpy(x, "cpu")
        if self.name == "torch-cuda":
            return _torch_from_numpy(x, "cuda")
        import cupy

        return cupy.asarray(x)

    def to_numpy(self, out):
        if isinstance(out, tuple):
            return tuple(self.to_numpy(o) for o in out)
        if self.name.startswith("numpy"):
            assert isinstance(out, np.ndarray), f"numpy backend returned {type(out)}"
            return out
        if self.name.startswith("torch"):
            import torch

            assert isinstance(out, torch.Tensor), f"{self.name} backend returned {type(out)}"
            want = "cuda" if self.name == "torch-cuda" else "cpu"
            assert out.device.type == want, f"{self.name} result is on {out.device}"
            return out.cpu().numpy()
        import cupy

        assert isinstance(out, cupy.ndarray), f"cupy backend returned {type(out)}"
        return out.get()

    def __call__(self, fn, *args, **kwargs):
        args = tuple(self.to_backend(a) for a in args)
        kwargs = {k: self.to_backend(v) for k, v in kwargs.items()}
        if self.name != "numpy-parallel":
            return self.to_numpy(fn(*args, **kwargs))
        from alamp_fast import _parallel

        # every kernel picks its parallel twin only above a work threshold, so small test
        # inputs would never run it: lower the threshold to 0 for this call
        saved = _parallel.PARALLEL_MIN_WORK
        _parallel.PARALLEL_MIN_WORK = 0
        try:
            return self.to_numpy(fn(*args, **kwargs))
        finally:
            _parallel.PARALLEL_MIN_WORK = saved


def _parallel_twin_skip_reason() -> str | None:
    try:
        from alamp_fast import _parallel
    except ImportError:
        return "alamp_fast has no serial/parallel kernel twins (alamp_fast._parallel)"
    if not hasattr(_parallel, "PARALLEL_MIN_WORK"):
        return "alamp_fast._parallel.PARALLEL_MIN_WORK is gone; update tests/conftest.py"
    return None


def _backend_params():
    params = [pytest.param("numpy", id="numpy")]
    reason = _parallel_twin_skip_reason()
    params.append(
        pytest.param(
            "numpy-parallel",
            id="numpy-parallel",
            marks=[pytest.mark.skip(reason=reason)] if reason else [],
        )
    )
    cpu_torch = (
        []
        if importlib.util.find_spec("torch") is not None
        else [pytest.mark.skip(reason="torch is not installed (pip install alamp_fast[torch])")]
    )
    params.append(pytest.param("torch-cpu", id="torch-cpu", marks=cpu_torch))
    for name in ("cupy", "torch-cuda"):
        reason = _cuda_skip_reason(name)
        marks = [pytest.mark.gpu]
        if reason is not None:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


# session scope: hypothesis tests may use it (no function-scoped fixture health check)
@pytest.fixture(scope="session", params=_backend_params())
def backend(request) -> Backend:
    return Backend(request.param)


def _seed_key(nodeid: str) -> str:
    """The test's id without its folder under tests/: ``tests/<file>::<test>[<params>]``.

    The ids as they read while every test file sat flat in tests/, so moving a test file
    between the room folders keeps each test's data.
    """
    path, sep, rest = nodeid.partition("::")
    return f"tests/{Path(path).name}{sep}{rest}" if path.startswith("tests/") else nodeid


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's id (file name, test name and parameters, not the
    folder; ``_seed_key``): fresh data per test, reproducible per test."""
    return np.random.default_rng(zlib.crc32(_seed_key(request.node.nodeid).encode()))


# ---------------------------------------------------------------------------------------------
# real data


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$ALAMP_FAST_DATA`` or ``<repo>/../shared/data``; skips the test when absent."""
    path = Path(os.environ.get("ALAMP_FAST_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real feature data not found at {path} (set ALAMP_FAST_DATA)")
    return path


# ---------------------------------------------------------------------------------------------
# assertions


def _first_positions(mask: np.ndarray, k: int = 5) -> list:
    pos = np.argwhere(mask)[:k]
    return [tuple(int(v) for v in p) if len(p) > 1 else int(p[0]) for p in pos]


def assert_exact(actual, expected, what: str = "result", *, dtype=None) -> None:
    """Exact equality (values, shape and, if given, dtype) with a message that helps.

    On mismatch the message gives how many elements differ, the first positions and the values
    there. Floats compare with ``==`` (so ``-0.0 == 0.0``); NaN never matches. A scalar
    ``expected`` means every element.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if expected.ndim == 0:  # a scalar stands for "every element equals it"
        expected = np.full(actual.shape, expected)
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}\n"
        f"  actual   {actual.ravel()[:20].tolist()}\n  expected {expected.ravel()[:20].tolist()}"
    )
    differ = actual != expected
    if differ.any():
        pos = _first_positions(differ)
        pairs = ", ".join(f"{p}: {actual[p]!r} != {expected[p]!r}" for p in pos)
        raise AssertionError(
            f"{what}: {int(differ.sum())} of {differ.size} elements differ; first at {pairs}"
        )


def assert_close(actual, expected, what: str = "result", *, rtol: float, atol: float = 0.0):
    """``|a - e| <= atol + rtol |e|`` elementwise, with the same helpful message."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = ~(np.abs(actual - expected) <= atol + rtol * np.abs(expected))
    if bad.any():
        pos = _first_positions(bad)
        pairs = ", ".join(f"{p}: {actual[p]!r} vs {expected[p]!r}" for p in pos)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements outside rtol={rtol} atol={atol}; "
            f"first at {pairs}"
        )


# ---------------------------------------------------------------------------------------------
# memory layouts


def layouts_2d(a: np.ndarray, rng: np.random.Generator):
    """(name, view) pairs holding the values of C-ordered ``a`` in other memory layouts."""
    n, c = a.shape
    yield "fortran", np.asfortranarray(a)
    yield "transposed-view", np.ascontiguousarray(a.T).T
    big = np.empty((2 * n, c + 3), dtype=a.dtype)
    big[...] = rng.random(big.shape).astype(a.dtype)
    big[::2, 1 : c + 1] = a
    yield "strided-slice", big[::2, 1 : c + 1]
    rev = np.ascontiguousarray(a[::-1, ::-1])
    yield "negative-strides", rev[::-1, ::-1]


def layouts_1d(a: np.ndarray, rng: np.random.Generator):
    """(name, view) pairs holding the values of ``a`` in non-contiguous 1-D layouts."""
    big = rng.random(3 * a.shape[0]).astype(a.dtype)
    big[1::3] = a
    yield "stride-3", big[1::3]
    yield "negative-stride", np.ascontiguousarray(a[::-1])[::-1]
    two = np.stack([a, a], axis=1)
    yield "column-of-2d", two[:, 0]
