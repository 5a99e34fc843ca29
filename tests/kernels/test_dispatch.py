"""Backend dispatch: torch CPU tensors in -> torch tensors out, device handling, light import."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import torch
from conftest import assert_exact

import alamp_fast as af
from alamp_fast import _dispatch
from alamp_fast._backend import KERNELS

OUT = {torch.float16: torch.float32, torch.float32: torch.float32, torch.float64: torch.float64}
TORCH_DTYPES = list(OUT)


def _cuda_usable() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, driver too old: all mean "no GPU here"
        return False


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_in_torch_out_uncertainty(rng, dtype):
    P_np = np.round(rng.random((300, 7)), 1)
    P = torch.from_numpy(P_np).to(dtype)
    P_host = P.numpy()
    m, top = af.top2_margin(P)
    assert isinstance(m, torch.Tensor) and isinstance(top, torch.Tensor)
    assert (m.dtype, top.dtype, m.device.type) == (OUT[dtype], torch.int64, "cpu")
    want_m, want_top = ref.top2_margin(P_host)
    assert_exact(m.numpy(), want_m, "margin")
    assert_exact(top.numpy(), want_top, "top_class")
    for fn, want in ((af.margin, want_m), (af.least_confidence, ref.least_confidence(P_host))):
        out = fn(P)
        assert isinstance(out, torch.Tensor) and out.dtype == OUT[dtype], fn.__name__
        assert_exact(out.numpy(), want, fn.__name__)
    H = af.entropy(P)
    assert isinstance(H, torch.Tensor) and H.dtype == OUT[dtype]
    np.testing.assert_allclose(H.numpy(), ref.entropy(P_host), rtol=1e-6)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_in_torch_out_selection(rng, dtype):
    scores = torch.from_numpy(np.round(rng.random(500), 1)).to(dtype)
    pc = torch.from_numpy(rng.integers(0, 7, 500))
    exclude = torch.from_numpy(rng.choice(500, 50, replace=False))
    s_host = scores.numpy()
    a = af.alamp_score(scores.abs(), scores.flip(0).abs())
    assert isinstance(a, torch.Tensor) and a.dtype == OUT[dtype]
    for fn, args, want in (
        (af.select_top, (scores, 40), ref.select_top(s_host, 40, exclude.numpy())),
        (af.diversify, (scores, pc, 40), ref.diversify(s_host, pc.numpy(), 40, exclude.numpy())),
    ):
        out = fn(*args, exclude=exclude)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.int64, fn.__name__
        assert_exact(out.numpy(), want, fn.__name__)


def test_torch_kcenter(rng):
    X = torch.from_numpy(rng.standard_normal((200, 5)).astype(np.float32))
    labeled = torch.tensor([3, 17, 150])
    out = af.kcenter_greedy(X, labeled, 10)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
    assert_exact(out.numpy(), ref.kcenter_greedy(X.numpy(), [3, 17, 150], 10), "kcenter")


def test_torch_non_contiguous_and_autograd_tensors(rng):
    base = torch.from_numpy(rng.random((9, 400)))
    P = base.T  # non-contiguous (column-major view)
    assert not P.is_contiguous()
    assert_exact(af.top2_margin(P)[0].numpy(), ref.margin(P.contiguous().numpy()), "transposed")
    scores = torch.from_numpy(rng.random(600)).requires_grad_()
    got = af.select_top(scores[::3], 10)  # strided view of a tensor that requires grad
    assert_exact(got.numpy(), ref.select_top(scores.detach().numpy()[::3], 10), "strided grad")


def test_torch_budget_and_mask_arguments(rng):
    scores = torch.from_numpy(rng.random(100))
    mask = torch.zeros(100, dtype=torch.bool)
    mask[::2] = True
    got = af.select_top(scores, torch.tensor(5), exclude=mask)
    assert_exact(got.numpy(), ref.select_top(scores.numpy(), 5, mask.numpy()), "tensor b, mask")


def test_torch_and_numpy_arguments_mix(rng):
    scores = torch.from_numpy(rng.random(50))
    got = af.diversify(scores, rng.integers(0, 3, 50), 6, exclude=np.array([0, 1]))
    assert isinstance(got, torch.Tensor)


def test_torch_bfloat16_is_widened_exactly_to_float32():
    P = torch.rand(40, 7).to(torch.bfloat16)
    got = af.margin(P)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    want = af.margin(P.float().numpy())
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), None])
def test_device_cpu_keeps_the_input_library(rng, device):
    P = rng.random((20, 4))
    assert isinstance(af.margin(P, device=device), np.ndarray)
    assert isinstance(af.margin(torch.from_numpy(P), device=device), torch.Tensor)


@pytest.mark.parametrize("device", ["gpu", "cuda0", "tpu:0", "cpu:0", "cuda:x", "CUDA", 0, 1.0])
def test_device_invalid_is_named(device):
    # one rule for every entry point: a bad string is a ValueError, another type a TypeError
    exc = ValueError if isinstance(device, str) else TypeError
    want = (
        r"margin: device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, "
        + re.escape(f"got device={device!r}")
    )
    with pytest.raises(exc, match=want):
        af.margin(np.ones((3, 2)), device=device)
    with pytest.raises(exc, match=r"badge: .*" + re.escape(f"got device={device!r}")):
        af.badge(np.full((3, 2), 0.5), np.ones((3, 2)), 1, device=device)
    from alamp_fast.svm import SVC

    with pytest.raises(exc, match=r"SVM: .*" + re.escape(f"got device={device!r}")):
        SVC(device=device).fit(np.arange(8.0).reshape(4, 2), [0, 1, 0, 1])


@pytest.mark.skipif(_cuda_usable(), reason="a CUDA device is usable here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_device_cuda_without_cuda_raises_clearly(device, library):
    P = np.random.default_rng(0).random((10, 3))
    if library == "torch":
        P = torch.from_numpy(P)
    with pytest.raises((ImportError, RuntimeError, NotImplementedError)) as info:
        af.top2_margin(P, device=device)
    msg = str(info.value)
    # says which call wanted what, and that the GPU (CuPy / a CUDA device) is what is missing
    assert "top2_margin" in msg, msg
    assert device in msg, msg
    assert any(w in msg for w in ("CUDA", "GPU", "CuPy")), msg


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_usable(), reason="needs a CUDA device visible to cupy")
def test_device_cuda_with_numpy_returns_numpy(rng):
    P = np.round(rng.random((1000, 10)), 1).astype(np.float32)
    m = af.margin(P, device="cuda")
    assert isinstance(m, np.ndarray)
    assert_exact(m, ref.margin(P), "margin on cuda")


def test_array_library_recognises_libraries_by_module_name():
    assert _dispatch.array_library(np.ones(2)) == "numpy"
    assert _dispatch.array_library([1, 2]) == "numpy"
    assert _dispatch.array_library(np.float32(1)) == "numpy"
    assert _dispatch.array_library(torch.ones(2)) == "torch"
    assert _dispatch.array_library(3) is None
    assert _dispatch.array_library(None) is None


def test_every_public_kernel_is_dispatched():
    for name, module in KERNELS.items():
        fn = getattr(af, name)
        assert callable(getattr(fn, "cpu_impl", None)), f"{name} is not wrapped by dispatch"
        assert fn.__doc__ and "Examples" in fn.__doc__, f"{name} lacks a docstring example"
        assert fn is getattr(importlib.import_module(f"alamp_fast.{module}"), name), name
        assert fn.__name__ == name


def test_the_kernel_lists_agree_with_the_one_list():
    """alamp_fast._backend.KERNELS is the source; where a list cannot be derived from it (a
    static import, a backend's registry, the README's table, the benchmark cases) it must
    agree with it."""
    assert [n for n in af.__all__ if n in KERNELS] == list(KERNELS)
    import alamp_fast.cuda as afc

    assert tuple(afc._PUBLIC) == tuple(KERNELS)
    for name, module in KERNELS.items():  # the GPU twin has the CPU module's name
        assert importlib.util.find_spec(f"alamp_fast.cuda.{module}") is not None, name
        source = Path(importlib.util.find_spec(f"alamp_fast.cuda.{module}").origin).read_text()
        assert f"def {name}(" in source, f"alamp_fast.cuda.{module} has no {name}"
    from alamp_fast import distributed

    assert set(distributed.IMPLS) == set(KERNELS)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in KERNELS:
        assert f"`af.{name}(" in readme, f"the README's table of calls lacks af.{name}"
    from alamp_fast.bench import make_cases

    assert {c.kernel for c in make_cases("quick")} <= set(KERNELS)


def test_import_is_light():
    """import alamp_fast pulls in neither torch, CuPy nor dask (and so touches no GPU)."""
    code = (
        "import sys, alamp_fast\n"
        "print(','.join(m for m in ('torch', 'cupy', 'dask', 'distributed', 'faiss')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import alamp_fast imported: {out.stdout.strip()}"


def test_mixing_array_libraries_is_a_typeerror():
    import dask.array as da

    scores = da.from_array(np.linspace(0, 1, 10), chunks=5)
    with pytest.raises(TypeError, match=r"mix array libraries \['dask', 'torch'\]"):
        af.diversify(scores, torch.arange(10) % 3, 2)


def _all_calls(P, s, pc, idx):
    return {
        "top2_margin": lambda: af.top2_margin(P),
        "entropy": lambda: af.entropy(P),
        "least_confidence": lambda: af.least_confidence(P),
        "alamp_score": lambda: af.alamp_score(s, s[::-1]),
        "select_top": lambda: af.select_top(s, 7, exclude=idx),
        "diversify": lambda: af.diversify(s, pc, 7, exclude=idx),
        "kcenter_greedy": lambda: af.kcenter_greedy(P, idx, 7),
    }


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_readonly_memmap_and_list_inputs_go_the_numpy_way(rng, tmp_path, dtype):
    P = np.round(rng.random((64, 20)), 1).astype(dtype)
    s = np.round(rng.random(64), 1).astype(dtype)
    pc = rng.integers(0, 4, 64)
    idx = np.array([5, 1, 9])
    want = {k: f() for k, f in _all_calls(P, s, pc, idx).items()}
    mm = np.lib.format.open_memmap(tmp_path / "P.npy", mode="w+", dtype=dtype, shape=P.shape)
    mm[...] = P
    mm.flush()
    P_ro = np.load(tmp_path / "P.npy", mmap_mode="r")  # read-only memmap
    s_ro, pc_ro, idx_ro = s.copy(), pc.copy(), idx.copy()
    for a in (s_ro, pc_ro, idx_ro):
        a.flags.writeable = False
    for name, f in _all_calls(P_ro, s_ro, pc_ro, idx_ro).items():
        for g, w in zip(_as_tuple(f()), _as_tuple(want[name]), strict=True):
            assert isinstance(g, np.ndarray), name
            assert_exact(g, w, f"{name} on read-only / memmap input", dtype=w.dtype)
    lists = _all_calls(P.tolist(), s.tolist(), pc.tolist(), idx.tolist())
    for name in ("select_top", "diversify"):  # lists hold the same values, exactly, as floats
        assert_exact(lists[name](), want[name], f"{name} on lists")


def test_inputs_are_not_modified(rng):
    P = np.round(rng.random((300, 20)), 1)
    s = np.round(rng.random(300), 1)
    pc = rng.integers(0, 4, 300)
    idx = np.array([5, 1, 9])
    mask = np.zeros(300, dtype=bool)
    mask[idx] = True
    before = [a.copy() for a in (P, s, pc, idx, mask)]
    for f in _all_calls(P, s, pc, idx).values():
        f()
    af.select_top(s, 7, exclude=mask, largest=False)
    af.kcenter_greedy(P, mask, 7)
    for a, b in zip((P, s, pc, idx, mask), before, strict=True):
        assert_exact(a, b, "input after the calls")


# ---------------------------------------------------------------------------------------------
# the one device rule (alamp_fast._backend.plan), shared by the kernels, badge and the SVMs


def test_plan_host_inputs():
    from alamp_fast._backend import Plan, plan

    x = np.ones(3)
    assert plan("f", (x, 3, None)) == Plan("numpy", "cpu")
    assert plan("f", (x,), "cpu") == plan("f", (x,), torch.device("cpu")) == Plan("numpy", "cpu")
    assert plan("f", (torch.ones(3), x)) == Plan("torch", "cpu")
    assert plan("f", (x,), "cuda") == Plan("numpy", "cuda", None)
    assert plan("f", (torch.ones(3),), "cuda:1") == Plan("torch", "cuda", 1)
    assert plan("f", (x,), torch.device("cuda", 2)) == Plan("numpy", "cuda", 2)


def test_plan_gpu_and_dask_inputs():
    import cupy
    import dask.array as da

    from alamp_fast._backend import Plan, plan

    g = cupy.ones(3)
    assert plan("f", (g, np.arange(2))) == Plan("cupy", "cuda", 0)
    assert plan("f", (g,), "cuda") == plan("f", (g,), "cuda:0") == Plan("cupy", "cuda", 0)
    with pytest.raises(ValueError, match=r"f: cupy input cannot run with device='cpu'"):
        plan("f", (g,), "cpu")
    with pytest.raises(ValueError, match=r"f: cupy input is on cuda:0 but device='cuda:1'"):
        plan("f", (g,), "cuda:1")
    d = da.ones(4, chunks=2)
    assert plan("f", (d, np.arange(2))) == Plan("dask", "dask")
    with pytest.raises(ValueError, match=r"f: dask arrays run where their chunks are; .*'cuda'"):
        plan("f", (d,), "cuda")
    with pytest.raises(TypeError, match=r"f: inputs mix array libraries \['cupy', 'dask'\]"):
        plan("f", (g, d))


def test_gpu_input_with_device_cpu_is_refused_by_every_entry_point():
    import cupy

    P = cupy.asarray(np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"margin: cupy input cannot run with device='cpu'"):
        af.margin(P, device="cpu")
    with pytest.raises(ValueError, match=r"badge: cupy input cannot run with device='cpu'"):
        af.badge(P, P, 1, device="cpu")


def test_torch_cpu_with_device_cuda_comes_back_as_torch(rng):
    """Host input run on the GPU returns in its own library on the host (kernels and badge)."""
    P = np.round(rng.random((50, 4)), 1)
    t = torch.from_numpy(P)
    m = af.margin(t, device="cuda")
    assert isinstance(m, torch.Tensor) and m.device.type == "cpu"
    assert_exact(m.numpy(), ref.margin(P), "margin of torch CPU on cuda")
    got = af.select_top(torch.from_numpy(P[:, 0]), 5, device="cuda")
    assert isinstance(got, torch.Tensor)
    assert_exact(got.numpy(), ref.select_top(P[:, 0], 5), "select_top of torch CPU on cuda")
    probs = P / P.sum(axis=1, keepdims=True)
    picks = af.badge(torch.from_numpy(probs), t, 4, seed=0, device="cuda")
    assert isinstance(picks, torch.Tensor) and picks.device.type == "cpu"
    assert_exact(picks.numpy(), af.badge(probs, P, 4, seed=0), "badge of torch CPU on cuda")


def test_svm_device_goes_through_the_same_parser():
    from alamp_fast.svm._backend import NumpyBackend, TorchBackend, get_backend

    assert type(get_backend("cpu")) is NumpyBackend
    assert type(get_backend(torch.device("cpu"))) is TorchBackend  # the torch path on the host
    with pytest.raises(ValueError, match=r"SVM: .*got device='cuda0'"):
        get_backend("cuda0")
    with pytest.raises(TypeError, match=r"SVM: .*got device=None"):
        get_backend(None)
