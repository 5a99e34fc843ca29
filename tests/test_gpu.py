"""The CUDA implementations (alamp_fast.cuda) against the CPU kernels, plus their host logic.

Two kinds of tests:

* CPU-runnable (no GPU, no CuPy needed): streaming chunk planning and the copy/compute pipeline
  on a fake device that defers every asynchronous operation (a missing wait gives wrong
  results there), the radix-select digit plan and pick rule emulated in numpy, the bucketed
  diversify host logic run on numpy, the order-key transform; and, where NVRTC is installed,
  every kernel instantiation compiled by NVRTC.
* ``@pytest.mark.gpu``: the kernels on a device, compared with the CPU kernels (exactly for
  margin, least confidence, alamp, select_top, diversify; to rounding for entropy; covering
  radius for k-center), streamed == in-memory, torch CUDA in -> torch CUDA out. They skip
  cleanly without CuPy or a GPU.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from conftest import _cuda_skip_reason, assert_close, assert_exact

import alamp_fast as af
from alamp_fast.cuda import _stream
from alamp_fast.cuda.selection import diversify_from_keys, radix_passes, sort_by_key_then_row

# ---------------------------------------------------------------------------------------------
# CPU-runnable: import hygiene


def test_importing_alamp_fast_and_its_cuda_package_does_not_import_cupy():
    code = (
        "import sys, alamp_fast, alamp_fast.cuda, alamp_fast.cuda._stream;"
        "import alamp_fast.cuda.selection;"
        "print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_impls_names_match_the_public_api():
    import alamp_fast.cuda as afc

    public = {"top2_margin", "margin", "entropy", "least_confidence", "alamp_score",
              "select_top", "diversify", "kcenter_greedy"}
    assert set(afc._PUBLIC) == public
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        afc.nope  # noqa: B018


# ---------------------------------------------------------------------------------------------
# CPU-runnable: chunk planning


def _covers(chunks, n):
    flat = [i for a, b in chunks for i in range(a, b)]
    return flat == list(range(n))


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 1001])
@pytest.mark.parametrize("chunk_rows", [1, 3, 64, 5000])
def test_plan_chunks_override_covers_rows_in_order(n, chunk_rows):
    chunks = _stream.plan_chunks(n, 400, 1 << 30, chunk_rows=chunk_rows)
    assert _covers(chunks, n)
    assert all(b - a == min(chunk_rows, n) for a, b in chunks[:-1])


def test_plan_chunks_from_free_memory():
    # 2 buffers x rows x 1000 B <= 0.5 * 1 MB -> 250 rows per chunk
    chunks = _stream.plan_chunks(1000, 1000, 1_000_000)
    assert chunks[0] == (0, 250) and _covers(chunks, 1000) and len(chunks) == 4
    # a larger memory is capped by max_chunk_bytes
    chunks = _stream.plan_chunks(10_000, 1000, 1 << 40, max_chunk_bytes=100_000)
    assert chunks[0] == (0, 100) and _covers(chunks, 10_000)
    # too little memory for one row still makes progress one row at a time
    assert _stream.plan_chunks(3, 1000, 10) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(
    "kwargs, err, match",
    [({"chunk_rows": 0}, ValueError, "chunk_rows=0"), ({"chunk_rows": 2.5}, TypeError, "2.5"),
     ({"chunk_rows": True}, TypeError, "True"), ({"n_buffers": 0}, ValueError, "n_buffers"),
     ({"memory_fraction": 0.0}, ValueError, "memory_fraction")],
)
def test_plan_chunks_rejects_bad_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        _stream.plan_chunks(10, 4, 1000, **kwargs)


# ---------------------------------------------------------------------------------------------
# CPU-runnable: the streaming pipeline on a fake device that defers asynchronous work


class _Stream:
    def __init__(self, name):
        self.name = name
        self.ops = []
        self.done = 0

    def run_until(self, k):
        while self.done < k:
            op = self.ops[self.done]
            self.done += 1
            op()


class _Event:
    def __init__(self, stream):
        self.stream = stream
        self.index = len(stream.ops)


class DeferredDevice:
    """A device whose asynchronous operations run only when something waits for them.

    Buffers start as garbage (-7), copies and kernels sit in per-stream queues; host_wait and
    synchronize drain a queue, a stream wait drains the other queue when reached. So every
    ordering the pipeline relies on must be an explicit wait, or results are wrong.
    """

    GARBAGE = -7

    def __init__(self):
        self.copy_stream = _Stream("copy")
        self.compute_stream = _Stream("compute")
        self.host_copies = 0

    def pinned(self, shape, dtype):
        return np.full(shape, self.GARBAGE, dtype=dtype)

    def empty(self, shape, dtype):
        return np.full(shape, self.GARBAGE, dtype=dtype)

    def host_copy(self, dst, src):
        self.host_copies += 1
        np.copyto(dst, src)

    def h2d(self, dst, src, stream):
        stream.ops.append(lambda: np.copyto(dst, src))

    def record(self, stream):
        return _Event(stream)

    def wait(self, stream, event):
        stream.ops.append(lambda: event.stream.run_until(event.index))

    def host_wait(self, event):
        event.stream.run_until(event.index)

    def launch(self, stream, fn, *args):
        stream.ops.append(lambda: fn(*args))

    def synchronize(self, stream):
        stream.run_until(len(stream.ops))


def _stream_weighted_sums(host, chunk_rows, device, n_buffers=2):
    # integer-valued data and weights: sums are exact whatever the BLAS blocking
    w = np.arange(1, host.shape[1] + 1, dtype=np.float64)
    out = np.full(host.shape[0], np.nan)

    def compute(rows, start, stop):
        out[start:stop] = rows @ w

    chunks = _stream.plan_chunks(host.shape[0], host.shape[1] * host.itemsize, 0,
                                 chunk_rows=chunk_rows)
    _stream.stream_rows(host, chunks, device, compute, n_buffers=n_buffers)
    return out, host @ w


@pytest.mark.parametrize("n_buffers", [1, 2, 3])
@pytest.mark.parametrize("n, chunk_rows", [(0, 4), (5, 10), (50, 7), (64, 8), (101, 1)])
def test_stream_rows_equals_in_memory_on_deferred_device(rng, n, chunk_rows, n_buffers):
    host = rng.integers(-1000, 1000, (n, 5)).astype(np.float64)
    device = DeferredDevice()
    got, want = _stream_weighted_sums(host, chunk_rows, device, n_buffers)
    assert_exact(got, want, "streamed weighted sums")
    assert device.host_copies == -(-n // chunk_rows)


def test_stream_rows_reads_a_memmap_without_loading_it(rng, tmp_path):
    host = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32,
                                     shape=(200, 6))
    host[...] = rng.integers(-100, 100, (200, 6))
    got, want = _stream_weighted_sums(host, 16, DeferredDevice())
    assert_exact(got, want, "streamed memmap")


@pytest.mark.parametrize("broken", ["host_wait", "wait"])
def test_deferred_device_catches_a_missing_wait(rng, broken):
    # the negative control: the fake must make a pipeline without this wait fail
    host = rng.integers(-1000, 1000, (90, 4)).astype(np.float64)
    device = DeferredDevice()
    setattr(device, broken, lambda *args: None)
    got, want = _stream_weighted_sums(host, 10, device)
    assert not np.array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# CPU-runnable: order keys, radix select and bucketed diversify, emulated in numpy


def order_keys_numpy(scores, largest):
    """numpy twin of make_keys in kernels/select.cu (float32 keys unless float64/integer)."""
    s = np.asarray(scores)
    if s.dtype.kind in "iu":
        s = s.astype(np.float64)
    if s.dtype == np.float64:
        u, sign = s.view(np.uint64).copy(), np.uint64(1 << 63)
    else:
        u, sign = s.astype(np.float32).view(np.uint32).copy(), np.uint32(1 << 31)
    u[(u << u.dtype.type(1)) == 0] = 0  # -0.0 -> +0.0
    u = np.where((u & sign) != 0, ~u, u | sign)
    return ~u if largest else u


def radix_select_numpy(keys, b):
    """numpy twin of radix_hist / radix_pick / radix_collect: rows of the b smallest (key, row)."""
    n = keys.shape[0]
    k = keys.astype(np.uint64)
    rows = np.arange(n, dtype=np.uint64)
    pref = {1: 0, 0: 0}
    want, thr = b, None
    for in_hi, shift, width, mask_hi, mask_lo, last in radix_passes(keys.dtype.itemsize * 8, n):
        match = ((k & np.uint64(mask_hi)) == np.uint64(pref[1])) & (
            (rows & np.uint64(mask_lo)) == np.uint64(pref[0]))
        src = k if in_hi else rows
        digits = (src[match] >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        h = np.bincount(digits.astype(np.int64), minlength=1 << width)
        before, d = 0, 0
        while d < (1 << width) - 1 and before + h[d] < want:
            before += h[d]
            d += 1
        want -= before
        pref[in_hi] |= d << shift
        below = (1 << shift) - 1
        if h[d] == want or last:
            thr = (pref[1] | below, 0xFFFFFFFF) if in_hi else (pref[1], pref[0] | below)
            break
    take = (k < np.uint64(thr[0])) | ((k == np.uint64(thr[0])) & (rows <= np.uint64(thr[1])))
    return np.flatnonzero(take)


def _scores(rng, n, kind, dtype):
    if kind == "ties":
        s = np.round(rng.random(n), 1)
    elif kind == "signed-zeros":
        s = rng.choice([-0.0, 0.0, 1.0, -1.0], n)
    elif kind == "int":
        return rng.integers(-5, 5, n)
    else:
        s = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
    return s.astype(dtype)


def test_radix_passes_cover_key_and_row_bits():
    for key_bits in (32, 64):
        for n in (1, 2, 255, 256, 257, 10**7):
            passes = radix_passes(key_bits, n)
            row_bits = max(1, (n - 1).bit_length())
            decided = {1: 0, 0: 0}
            for in_hi, shift, width, mask_hi, mask_lo, _ in passes:
                assert (mask_hi, mask_lo) == (decided[1], decided[0])
                bits = ((1 << width) - 1) << shift
                assert decided[in_hi] & bits == 0, "digits overlap"
                decided[in_hi] |= bits
            assert decided == {1: (1 << key_bits) - 1, 0: (1 << row_bits) - 1}
            assert [p[-1] for p in passes] == [False] * (len(passes) - 1) + [True]
            # key digits first, most significant first
            order = [(p[0], p[1]) for p in passes]
            assert order == sorted(order, reverse=True)


@pytest.mark.parametrize("kind", ["normal", "ties", "signed-zeros", "int"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("largest", [True, False])
def test_radix_select_emulation_equals_cpu_select_top(rng, kind, dtype, largest):
    for n in (1, 2, 300, 3000):
        scores = _scores(rng, n, kind, dtype)
        exclude = rng.choice(n, rng.integers(0, n // 3 + 1), replace=False)
        for b in sorted({0, 1, (n - exclude.size) // 2, n - exclude.size}):
            want = af.select_top(scores, b, exclude=exclude, largest=largest)
            keys = order_keys_numpy(scores, largest)
            keys[exclude] = np.iinfo(keys.dtype).max
            rows = radix_select_numpy(keys, b) if b else np.empty(0, dtype=np.int64)
            got = sort_by_key_then_row(keys, rows, np)
            assert_exact(got, want, f"select n={n} b={b} kind={kind}", dtype=np.int64)


@pytest.mark.parametrize("kind", ["normal", "ties", "int"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 3, 40])
def test_bucketed_diversify_host_logic_equals_cpu(rng, kind, dtype, n_classes):
    for n in (1, 5, 400):
        scores = _scores(rng, n, kind, dtype)
        pc = rng.integers(0, n_classes, n)
        for largest in (True, False):
            for b in sorted({1, n // 3 + 1, n}):
                want = af.diversify(scores, pc, b, largest=largest)
                keys = order_keys_numpy(scores, largest)
                counts = np.bincount(pc, minlength=n_classes)
                got = diversify_from_keys(keys, pc, counts, b, np)
                assert_exact(got, want, f"diversify n={n} b={b}", dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# CPU-runnable where NVRTC is installed: every instantiation compiles


def _nvrtc_reason():
    if importlib.util.find_spec("cupy_backends") is None:
        return "cupy is not installed"
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # a missing libnvrtc surfaces as various errors
        return f"NVRTC unavailable: {exc}"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
def test_every_kernel_instantiation_compiles_with_nvrtc():
    from alamp_fast.cuda import _kernels

    counts = _kernels.nvrtc_compile_check("compute_90")
    assert counts["rowwise"] > 0 and counts["select"] > 0 and counts["kcenter"] > 0


# ---------------------------------------------------------------------------------------------
# GPU

_GPU_REASON = _cuda_skip_reason("cupy")
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(_GPU_REASON is not None, reason=str(_GPU_REASON))

DTYPES = [np.float16, np.float32, np.float64]
OUT = {np.float16: np.float32, np.float32: np.float32, np.float64: np.float64}


def _probs(rng, n, C, dtype, kind="ties"):
    if kind == "ties":
        P = np.round(rng.random((n, C)), 1)
    else:
        P = rng.standard_normal((n, C)) * 3
    return P.astype(dtype)


def _misaligned(cp, P):
    """The same values one element past an aligned address: vector loads must narrow."""
    buf = cp.empty(P.size + 1, dtype=P.dtype)
    view = buf[1:].reshape(P.shape)
    view[...] = cp.asarray(P)
    return view


@gpu
@needs_gpu
@pytest.mark.parametrize("layout", [None, "group", "block"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (33, 3), (257, 8), (1000, 100), (300, 1000),
                                   (40, 1025), (9, 5000), (2, 70000)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_top2_margin_equals_cpu(rng, shape, dtype, layout):
    import cupy as cp

    import alamp_fast.cuda as afc

    P = _probs(rng, *shape, dtype)
    want_m, want_top = af.top2_margin(P)
    for name, dev in (("aligned", cp.asarray(P)), ("misaligned", _misaligned(cp, P))):
        m, top = afc.top2_margin(dev, layout=layout)
        assert_exact(m.get(), want_m, f"margin ({name})", dtype=OUT[dtype])
        assert_exact(top.get(), want_top, f"top_class ({name})", dtype=np.int64)
        assert_exact(afc.margin(dev, layout=layout).get(), want_m, f"margin only ({name})")
        assert_exact(afc.least_confidence(dev, layout=layout).get(), af.least_confidence(P),
                     f"least_confidence ({name})", dtype=OUT[dtype])


@gpu
@needs_gpu
@pytest.mark.parametrize("layout", ["group", "block"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_close_to_cpu(rng, dtype, layout):
    import cupy as cp

    import alamp_fast.cuda as afc

    P = rng.dirichlet(np.ones(37), 500).astype(dtype)
    P[::7, 3] = 0  # 0 log 0
    got = afc.entropy(cp.asarray(P), layout=layout).get()
    assert got.dtype == OUT[dtype]
    rtol = 1e-12 if dtype == np.float64 else 2.0**-22
    assert_close(got, af.entropy(P), "entropy", rtol=rtol, atol=1e-300)


@gpu
@needs_gpu
@pytest.mark.parametrize("fn", ["top2_margin", "entropy", "least_confidence"])
def test_row_errors_match_cpu(rng, fn):
    import cupy as cp

    import alamp_fast.cuda as afc

    P = rng.random((500, 9)).astype(np.float32)
    P[321, 4] = np.nan
    P[400, 2] = np.inf
    bad = [P.copy()]
    if fn == "entropy":
        neg = rng.random((500, 9)).astype(np.float32)
        neg[77, 5] = -0.25
        bad.append(neg)
    for Q in bad:
        with pytest.raises(ValueError) as cpu_err:
            getattr(af, fn)(Q)
        with pytest.raises(ValueError) as gpu_err:
            getattr(afc, fn)(cp.asarray(Q))
        assert str(gpu_err.value) == str(cpu_err.value)


@gpu
@needs_gpu
@pytest.mark.parametrize("prev_dtype", DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_top2_margin_alamp_equals_cpu(rng, dtype, prev_dtype):
    import cupy as cp

    import alamp_fast.cuda as afc

    P = _probs(rng, 2000, 17, dtype)
    prev = np.abs(rng.standard_normal(2000)).astype(prev_dtype)
    prev[::5] = 0  # 0/0 -> 0 where the margin is 0 too
    m, top, s = afc.top2_margin_alamp(cp.asarray(P), cp.asarray(prev))
    want_m, want_top = af.top2_margin(P)
    want_s = af.alamp_score(prev, want_m)
    assert_exact(m.get(), want_m, "margin")
    assert_exact(top.get(), want_top, "top_class")
    assert_exact(s.get(), want_s, "alamp score", dtype=want_s.dtype)
    prev[13] = -1.0
    with pytest.raises(ValueError, match=r"prev_margin\[13\] = .* is negative"):
        afc.top2_margin_alamp(cp.asarray(P), cp.asarray(prev))


@gpu
@needs_gpu
@pytest.mark.parametrize("cur_dtype", DTYPES)
@pytest.mark.parametrize("prev_dtype", DTYPES)
def test_alamp_score_equals_cpu(rng, prev_dtype, cur_dtype):
    import cupy as cp

    import alamp_fast.cuda as afc

    prev = rng.random(5000).astype(prev_dtype)
    cur = rng.random(5000).astype(cur_dtype)
    prev[:50] = cur[:50] = 0
    want = af.alamp_score(prev, cur)
    assert_exact(afc.alamp_score(cp.asarray(prev), cp.asarray(cur)).get(), want, "alamp",
                 dtype=want.dtype)
    for name, bad in (("prev_margin", prev.copy()), ("margin", cur.copy())):
        bad[4321] = -0.5 if name == "margin" else np.nan
        args = (bad, cur) if name == "prev_margin" else (prev, bad)
        with pytest.raises(ValueError) as cpu_err:
            af.alamp_score(*args)
        with pytest.raises(ValueError) as gpu_err:
            afc.alamp_score(*(cp.asarray(a) for a in args))
        assert str(gpu_err.value) == str(cpu_err.value)


@gpu
@needs_gpu
@pytest.mark.parametrize("kind", ["normal", "ties", "signed-zeros", "int"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_select_top_and_diversify_equal_cpu(rng, kind, dtype):
    import cupy as cp

    import alamp_fast.cuda as afc

    for n in (1, 257, 100_000):
        scores = _scores(rng, n, kind, dtype)
        pc = rng.integers(-3, 50, n)  # negative labels: the np.unique path
        dense = rng.integers(0, 50, n)
        exclude = rng.choice(n, rng.integers(0, n // 4 + 1), replace=False)
        left = n - exclude.size
        for b in sorted({0, 1, min(2000, left), left}):
            for largest in (True, False):
                kw = {"exclude": exclude, "largest": largest}
                dkw = {"exclude": cp.asarray(exclude), "largest": largest}
                assert_exact(afc.select_top(cp.asarray(scores), b, **dkw).get(),
                             af.select_top(scores, b, **kw), f"select_top n={n} b={b}")
                for labels in (pc, dense):
                    assert_exact(
                        afc.diversify(cp.asarray(scores), cp.asarray(labels), b, **dkw).get(),
                        af.diversify(scores, labels, b, **kw), f"diversify n={n} b={b}")


@gpu
@needs_gpu
def test_selection_errors_match_cpu(rng):
    import cupy as cp

    import alamp_fast.cuda as afc

    s = rng.random(100)
    calls = [
        ("select_top", (s, 101), {}),
        ("select_top", (s, 3), {"exclude": np.array([5, 5])}),
        ("select_top", (s, 3), {"exclude": np.array([100])}),
        ("select_top", (np.where(np.arange(100) == 9, np.nan, s), 3), {}),
        ("diversify", (s, np.arange(99), 3), {}),
        ("diversify", (s, np.arange(100.0), 3), {}),
    ]

    def dev(a):
        return cp.asarray(a) if isinstance(a, np.ndarray) else a

    for name, args, kwargs in calls:
        with pytest.raises((ValueError, TypeError)) as cpu_err:
            getattr(af, name)(*args, **kwargs)
        with pytest.raises(type(cpu_err.value)) as gpu_err:
            getattr(afc, name)(*map(dev, args), **{k: dev(v) for k, v in kwargs.items()})
        assert str(gpu_err.value) == str(cpu_err.value)


def _covering_radius(X, centers):
    d2 = ((X[:, None, :] - X[None, centers, :]) ** 2).sum(-1)
    return float(np.sqrt(d2.min(axis=1).max()))


@gpu
@needs_gpu
@pytest.mark.parametrize("d", [1, 7, 64, 6001])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kcenter_greedy_matches_cpu(rng, dtype, d):
    import cupy as cp

    import alamp_fast.cuda as afc

    n = 600 if d < 6001 else 150
    X = rng.standard_normal((n, d)).astype(dtype)
    for labeled in (np.empty(0, dtype=np.int64), rng.choice(n, 11, replace=False)):
        b = 40
        want = af.kcenter_greedy(X, labeled, b)
        got = afc.kcenter_greedy(cp.asarray(X), cp.asarray(labeled), b).get()
        assert got.dtype == np.int64 and got.shape == (b,)
        assert not set(got) & set(labeled.tolist()) and len(set(got)) == b
        Xf = X.astype(np.float64)
        centers = np.concatenate([labeled, got]).astype(np.int64)
        want_centers = np.concatenate([labeled, want]).astype(np.int64)
        assert_close(_covering_radius(Xf, centers), _covering_radius(Xf, want_centers),
                     "covering radius", rtol=1e-9)
        # continuous random features: distinct distances, so the picks agree exactly
        assert_exact(got, want, "k-center picks")


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_streamed_equals_in_memory(rng, tmp_path, dtype, monkeypatch):
    import cupy as cp

    import alamp_fast.cuda as afc

    P = _probs(rng, 5003, 37, dtype, kind="normal")
    mm = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=dtype, shape=P.shape)
    mm[...] = P
    launches = []
    real_launch = _stream.CupyDevice.launch

    def spy(self, stream, fn, *args):
        launches.append(args[1:])
        return real_launch(self, stream, fn, *args)

    monkeypatch.setattr(_stream.CupyDevice, "launch", spy)
    m_mem, top_mem = afc.top2_margin(cp.asarray(P))
    m, top = afc.top2_margin(mm, chunk_rows=97)
    assert len(launches) == -(-5003 // 97)
    assert_exact(m.get(), m_mem.get(), "streamed margin")
    assert_exact(top.get(), top_mem.get(), "streamed top_class")
    prev = rng.random(5003).astype(np.float32)
    s = afc.top2_margin_alamp(mm, cp.asarray(prev), chunk_rows=1000)[2]
    assert_exact(s.get(), af.alamp_score(prev, af.margin(P)), "streamed fused alamp")
    # the public API with device="cuda": numpy in, numpy out
    got = af.top2_margin(mm, device="cuda")
    assert isinstance(got[0], np.ndarray)
    assert_exact(got[0], m_mem.get(), "device='cuda' margin")
    # an error in a late chunk names the global row, as the CPU does
    mm[4321, 5] = np.nan
    with pytest.raises(ValueError) as cpu_err:
        af.top2_margin(np.asarray(mm))
    with pytest.raises(ValueError) as gpu_err:
        afc.top2_margin(mm, chunk_rows=500)
    assert str(gpu_err.value) == str(cpu_err.value)


@gpu
@pytest.mark.skipif(_cuda_skip_reason("torch-cuda") is not None,
                    reason=str(_cuda_skip_reason("torch-cuda")))
def test_torch_cuda_in_torch_cuda_out(rng):
    import torch

    P = _probs(rng, 777, 12, np.float32)
    t = torch.from_numpy(P).cuda()
    m, top = af.top2_margin(t)
    assert m.is_cuda and top.is_cuda and top.dtype == torch.int64
    want_m, want_top = af.top2_margin(P)
    assert_exact(m.cpu().numpy(), want_m, "torch margin")
    assert_exact(top.cpu().numpy(), want_top, "torch top_class")
    sel = af.diversify(m, top, 50, largest=False)
    assert sel.is_cuda
    assert_exact(sel.cpu().numpy(), af.diversify(want_m, want_top, 50, largest=False), "div")
