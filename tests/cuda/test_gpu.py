"""The CUDA implementations (alamp_fast.cuda) against the CPU kernels, plus their host logic.

Two kinds of tests:

* CPU-runnable (no GPU, no CuPy needed): streaming chunk planning and the copy/compute pipeline
  on a fake device that defers every asynchronous operation (a missing wait gives wrong
  results there; a recycled block and a failing chunk too), the radix-select digit plan and
  pick rule emulated in numpy, the bucketed diversify host logic run on numpy, the order-key
  transform; and, where NVRTC is installed (the ``nvidia-cuda-nvrtc`` wheel of the test
  extra), the loader's exact options, the PTX without flush-to-zero, the compile cache, the
  ``cuda-warmup`` command and every kernel instantiation compiled.
* ``@pytest.mark.gpu``: the kernels on a device, compared with the CPU kernels (exactly for
  margin, least confidence, alamp, select_top, diversify; to rounding for entropy, whose bits
  depend only on the row; covering radius and picks for k-center), streamed == in-memory,
  torch CUDA in -> torch CUDA out, and one test per defect of issue 15. Without a GPU they run
  on the CUDA emulator (``ALAMP_FAST_CUDA=emulate``, set by ``tests/conftest.py``); they skip
  cleanly when neither is available.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


class RecyclingDevice(DeferredDevice):
    """The memory pool hands ``stream_rows`` a block that compute work queued before the call
    still reads (``s = m * 2; del m``): the caller's pending read is the compute stream's
    first operation."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        self.seen = None
        self.compute_stream.ops.append(self._pending_read)
        self._handed = False

    def _pending_read(self):
        self.seen = self.block.copy()

    def empty(self, shape, dtype):
        if not self._handed and self.block.shape == tuple(shape):
            self._handed = True
            return self.block
        return super().empty(shape, dtype)


@pytest.mark.parametrize("n_buffers", [1, 2, 3])
def test_stream_rows_copy_waits_for_queued_compute_before_first_copy(rng, n_buffers):
    host = rng.integers(-1000, 1000, (60, 4)).astype(np.float64)
    block = np.full((10, 4), 123.0)
    device = RecyclingDevice(block)
    got, want = _stream_weighted_sums(host, 10, device, n_buffers)
    assert_exact(got, want, "streamed weighted sums")
    assert device.seen is not None, "the earlier compute work never ran"
    assert_exact(device.seen, np.full((10, 4), 123.0), "block read by earlier compute work")


class FailingDevice(DeferredDevice):
    """The host read of chunk ``fail_at`` raises (an unreadable memmap page, a bad launch)."""

    def __init__(self, fail_at):
        super().__init__()
        self.fail_at = fail_at

    def host_copy(self, dst, src):
        if self.host_copies == self.fail_at:
            # what is still in flight when stream_rows lets go of its buffers
            raise OSError("read error")
        super().host_copy(dst, src)


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_stream_rows_error_path_drains_both_streams_before_freeing(rng, fail_at):
    host = rng.integers(-1000, 1000, (60, 4)).astype(np.float64)
    device = FailingDevice(fail_at)
    with pytest.raises(OSError, match="read error"):
        _stream_weighted_sums(host, 10, device, 3)
    for stream in (device.copy_stream, device.compute_stream):
        assert stream.done == len(stream.ops), f"{stream.name} stream still busy on error"


# ---------------------------------------------------------------------------------------------
# CPU-runnable: order keys, radix select and bucketed diversify, emulated in numpy


def order_keys_numpy(scores, largest):
    """numpy twin of make_keys in kernels/select.cu (float32 keys for float16/32, float64 bits
    for float64, the int64 itself for integers)."""
    s = np.asarray(scores)
    if s.dtype.kind in "iu":
        u = s.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
        return ~u if largest else u
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
    elif kind == "int-2^62":
        # distinct only beyond float64's 53 bits: float keys would tie them
        return (1 << 62) + rng.integers(-5, 5, n) * 3
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


@pytest.mark.parametrize("kind", ["normal", "ties", "signed-zeros", "int", "int-2^62"])
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


@pytest.mark.parametrize("kind", ["normal", "ties", "int", "int-2^62"])
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
# CPU-runnable where NVRTC is installed (the nvidia-cuda-nvrtc wheel of the test extra): the
# loader's exact options, no flush-to-zero in the PTX, every instantiation compiles, the cache


def _nvrtc_reason():
    from alamp_fast.cuda import _nvrtc

    return _nvrtc.available()


needs_nvrtc = pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))

# a float32 instruction that flushes subnormals: add.ftz.f32, mul.rn.ftz.f32, setp.lt.ftz.f32, ...
_FTZ_F32 = re.compile(rb"\.ftz(?:\.[a-z0-9]+)*\.f32\b")


@needs_nvrtc
@pytest.mark.parametrize("name", ["alamp", "rowwise", "select", "kcenter"])
def test_ptx_with_the_loaders_options_has_no_ftz_float32_instruction(name):
    from alamp_fast.cuda import _kernels, _nvrtc

    expressions = _kernels.all_name_expressions()[name]
    options = _kernels.compile_options("compute_90")
    out = _nvrtc.compile_program(_kernels.source(name), f"{name}.cu", expressions, options)
    assert out.kind == "ptx" and b".entry" in out.image
    assert set(out.lowered) == set(expressions)
    bad = sorted({m.group().decode() for m in _FTZ_F32.finditer(out.image)})
    assert not bad, f"{name}.cu flushes float32 subnormals: {bad}"
    if name == "alamp":  # the negative control: the check sees what CuPy's -ftz=true does
        flushed = _nvrtc.compile_program(_kernels.source(name), f"{name}.cu", expressions,
                                         (*options, "-ftz=true"))
        assert _FTZ_F32.search(flushed.image)


class _FakeRawModule:
    made = []

    def __init__(self, code=None, options=(), name_expressions=None, path=None):
        self.kw = {"code": code, "options": options, "name_expressions": name_expressions,
                   "path": path}
        _FakeRawModule.made.append(self)

    def get_function(self, symbol):
        return ("function", symbol)


def _fake_cupy(monkeypatch, capability="90"):
    import types

    cupy = types.ModuleType("cupy")
    cupy.RawModule = _FakeRawModule
    device = types.SimpleNamespace(compute_capability=capability)
    cupy.cuda = types.SimpleNamespace(
        Device=lambda *a: device, runtime=types.SimpleNamespace(getDevice=lambda: 0))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    _FakeRawModule.made = []
    return cupy


@needs_nvrtc
def test_loader_compiles_through_nvrtc_with_exact_options_and_loads_the_cubin(
        monkeypatch, tmp_path):
    """The real-GPU path never hands source to CuPy (whose compile path appends -ftz=true):
    NVRTC gets exactly compile_options(sm_XY), CuPy only loads the CUBIN by path."""
    from alamp_fast.cuda import _kernels, _nvrtc

    monkeypatch.setenv(_kernels.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(_kernels.EMULATE_ENV, raising=False)
    monkeypatch.setattr(_kernels, "_modules", {})
    _fake_cupy(monkeypatch)
    calls = []
    real = _nvrtc.compile_program

    def spy(source, filename, expressions, options):
        calls.append((filename, tuple(expressions), tuple(options)))
        return real(source, filename, expressions, options)

    monkeypatch.setattr(_nvrtc, "compile_program", spy)
    fn = _kernels.function("alamp", "alamp_score_kernel<double>")
    assert calls == [("alamp.cu", tuple(_kernels.all_name_expressions()["alamp"]),
                      _kernels.compile_options("sm_90"))]
    (module,) = _FakeRawModule.made
    assert module.kw["code"] is None and module.kw["path"].endswith(".cubin")
    assert fn[1].startswith("_Z") and "alamp_score_kernel" in fn[1]  # the lowered name
    assert "--ftz=false" in calls[0][2] and not any("ftz=true" in o for o in calls[0][2])
    # one module per file: a second expression of the same file compiles nothing
    _kernels.function("alamp", "alamp_score_kernel<float>")
    assert len(calls) == 1 and len(_FakeRawModule.made) == 1
    with pytest.raises(KeyError, match="not among the instantiations"):
        _kernels.function("alamp", "alamp_score_kernel<int>")


def test_emulated_loader_hands_the_whole_file_to_the_stand_in(monkeypatch):
    from alamp_fast.cuda import _kernels

    monkeypatch.setenv(_kernels.EMULATE_ENV, "emulate")
    monkeypatch.setattr(_kernels, "_modules", {})
    _fake_cupy(monkeypatch)
    _kernels.function("select", "radix_pick")
    (module,) = _FakeRawModule.made
    assert module.kw["code"] == _kernels.source("select")
    assert module.kw["name_expressions"] == tuple(_kernels.all_name_expressions()["select"])


@needs_nvrtc
def test_compile_cache_is_persistent_keyed_on_source_and_survives_damage(monkeypatch, tmp_path):
    from alamp_fast.cuda import _kernels

    monkeypatch.setenv(_kernels.CACHE_ENV, str(tmp_path / "cache"))
    first = _kernels.warmup("sm_90", names=["alamp", "select"], jobs=2)
    assert {k: v["cached"] for k, v in first.items()} == {"alamp": False, "select": False}
    assert first["select"]["kernels"] == len(_kernels.all_name_expressions()["select"])
    again = _kernels.warmup("sm_90", names=["alamp", "select"])
    assert all(v["cached"] for v in again.values())
    assert again["alamp"]["path"] == first["alamp"]["path"]
    # a damaged index is not trusted: compiled again
    Path(first["alamp"]["path"]).with_suffix(".json").write_text("{not json")
    assert not _kernels.warmup("sm_90", names=["alamp"])["alamp"]["cached"]
    # an edited source is a new entry (the key covers the text with its headers pasted in)
    edited = tmp_path / "kernels"
    shutil.copytree(_kernels.kernel_dir(), edited)
    (edited / "common.cuh").write_text((edited / "common.cuh").read_text() + "\n// edit\n")
    monkeypatch.setenv("ALAMP_FAST_KERNELS", str(edited))
    _kernels.source.cache_clear()
    try:
        other = _kernels.warmup("sm_90", names=["alamp"])["alamp"]
    finally:
        _kernels.source.cache_clear()
    assert not other["cached"] and other["path"] != first["alamp"]["path"]


@needs_nvrtc
def test_cuda_warmup_cli(monkeypatch, tmp_path, capsys):
    from alamp_fast.cli import main
    from alamp_fast.cuda import _kernels

    monkeypatch.setenv(_kernels.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_kernels, "all_name_expressions",
                        lambda real=_kernels.all_name_expressions: {"alamp": real()["alamp"]})
    assert main(["cuda-warmup", "--arch", "sm_80", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "sm_80" and out["files"]["alamp"]["kernels"] == 2
    assert Path(out["files"]["alamp"]["path"]).is_file()
    assert main(["cuda-warmup", "--arch", "sm90"]) == 2
    assert "sm_90" in capsys.readouterr().err


def test_missing_nvrtc_is_a_clear_error(monkeypatch):
    from alamp_fast.cuda import _nvrtc

    monkeypatch.setattr(_nvrtc, "_lib", None)
    monkeypatch.setattr(_nvrtc, "library_candidates", lambda: ["/nonexistent/libnvrtc.so.13"])
    monkeypatch.setattr(_nvrtc, "_cupy_loaded_nvrtc", lambda: [])
    with pytest.raises(_nvrtc.NvrtcError, match=r"nvidia-cuda-nvrtc.*/nonexistent/libnvrtc"):
        _nvrtc.library()
    assert "/nonexistent/libnvrtc.so.13" in _nvrtc.available()
    monkeypatch.undo()
    monkeypatch.setenv(_nvrtc.NVRTC_ENV, "/opt/x/libnvrtc.so")
    assert _nvrtc.library_candidates()[0] == "/opt/x/libnvrtc.so"


@needs_nvrtc
def test_nvrtc_falls_back_to_the_library_cupy_loads(monkeypatch):
    from alamp_fast.cuda import _nvrtc

    real = _nvrtc.library_path()
    monkeypatch.setattr(_nvrtc, "_lib", None)
    monkeypatch.setattr(_nvrtc, "library_candidates", lambda: ["/nonexistent/libnvrtc.so.13"])
    monkeypatch.setattr(_nvrtc, "_cupy_loaded_nvrtc", lambda: [real])
    assert _nvrtc.library_path() == real and _nvrtc.version() >= (12, 0)


@needs_nvrtc
def test_nvrtc_compile_error_carries_the_log():
    from alamp_fast.cuda import _nvrtc

    bad = "template <typename T> __global__ void k(T* x) { x[0] = undefined_name; }"
    with pytest.raises(_nvrtc.NvrtcError, match=r"(?s)broken\.cu did not compile.*undefined_name"):
        _nvrtc.compile_program(bad, "broken.cu", ["k<float>"], ("--gpu-architecture=compute_90",))
    with pytest.raises(_nvrtc.NvrtcError, match=r"(?s)ok\.cu did not compile.*nothere"):
        _nvrtc.compile_program("__global__ void k() {}", "ok.cu", ["nothere<int>"],
                               ("--gpu-architecture=compute_90",))


@pytest.mark.slow
@needs_nvrtc
def test_every_kernel_instantiation_compiles_with_nvrtc():
    from alamp_fast.cuda import _kernels

    counts = _kernels.nvrtc_compile_check("compute_90")
    assert counts == {k: len(v) for k, v in _kernels.all_name_expressions().items()}


# ---------------------------------------------------------------------------------------------
# CPU-runnable: bfloat16 torch CUDA tensors are widened before DLPack


def test_bfloat16_tensors_are_widened_before_cupy_from_dlpack():
    import types

    import torch

    from alamp_fast._backend import torch_cuda_to_cupy

    handed = []
    fake = types.SimpleNamespace(from_dlpack=lambda t: handed.append(t) or t)
    t = torch.tensor([[0.1, 0.7, 0.2]], dtype=torch.bfloat16)
    torch_cuda_to_cupy(t, fake)
    assert handed[-1].dtype == torch.float32
    assert torch.equal(handed[-1], t.float())  # exact widening
    for dtype in (torch.float16, torch.float32, torch.float64, torch.int64):
        torch_cuda_to_cupy(t.to(dtype), fake)
        assert handed[-1].dtype == dtype  # everything else zero-copy


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
def test_unsupported_host_inputs_raise_the_cpu_errors(rng):
    sparse = pytest.importorskip("scipy.sparse")
    P = sparse.csr_matrix(rng.random((20, 4)))
    for fn, args in (("top2_margin", (P,)), ("entropy", (P,)), ("select_top", (P, 2)),
                     ("kcenter_greedy", (P, [0], 2)), ("top2_margin", (object(),))):
        with pytest.raises(TypeError) as cpu_err:
            getattr(af, fn)(*args)
        with pytest.raises(TypeError) as gpu_err:
            getattr(af, fn)(*args, device="cuda")
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
        ("select_top", (s, 3), {"largest": "no"}),
        ("diversify", (s, np.arange(100), 3), {"largest": 1}),
        ("select_top", (s, 3), {"exclude": np.array([1, 2**63 + 7], dtype=np.uint64)}),
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


# ---------------------------------------------------------------------------------------------
# GPU: the defects of issue 15, each a test that failed before its fix


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_probabilities_are_not_flushed(rng, dtype):
    """CuPy's compile path appended -ftz=true: float32 subnormal margins became 0."""
    import cupy as cp

    import alamp_fast.cuda as afc

    tiny = np.finfo(dtype).smallest_subnormal
    P = np.zeros((300, 5), dtype=dtype)
    P[:, 0] = tiny * rng.integers(1, 1000, 300)
    P[:, 1] = tiny * rng.integers(0, 1000, 300)
    P[::3, 2] = np.finfo(dtype).tiny * 0.75  # subnormal, near the normal range
    want_m, want_top = af.top2_margin(P)
    assert (want_m[want_m > 0] < np.finfo(dtype).tiny).any()  # subnormal margins
    m, top = afc.top2_margin(cp.asarray(P))
    assert_exact(m.get(), want_m, "subnormal margins")
    assert_exact(top.get(), want_top, "top class")
    prev = (tiny * rng.integers(0, 50, 300)).astype(dtype)
    want_s = af.alamp_score(prev, want_m)
    assert_exact(afc.alamp_score(cp.asarray(prev), cp.asarray(want_m)).get(), want_s, "alamp")
    assert_exact(afc.top2_margin_alamp(cp.asarray(P), cp.asarray(prev))[2].get(), want_s,
                 "fused alamp")
    for largest in (True, False):
        assert_exact(afc.select_top(cp.asarray(want_m), 50, largest=largest).get(),
                     af.select_top(want_m, 50, largest=largest), "select_top on subnormals")
    # the public API with device="cuda"
    assert_exact(af.top2_margin(P, device="cuda")[0], want_m, "device='cuda' margins")


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kcenter_with_features_far_from_the_origin_matches_cpu(rng, dtype):
    """The GPU's initial GEMM did not centre the features: with an offset of 1000 its nearest
    labeled point was wrong for most rows in float32."""
    import cupy as cp

    import alamp_fast.cuda as afc
    from alamp_fast.coreset import _nearest_d2
    from alamp_fast.cuda.coreset import nearest_labeled_d2

    n, d = 400, 16
    X = (rng.standard_normal((n, d)) + 1000.0).astype(dtype)
    labeled = rng.choice(n, 60, replace=False)
    want_d2 = _nearest_d2(X, X[labeled])
    got_d2 = nearest_labeled_d2(cp.asarray(X), cp.asarray(labeled)).get()
    assert_close(got_d2, want_d2, "distance to the nearest labeled row", rtol=1e-9)
    for b in (1, 25):
        want = af.kcenter_greedy(X, labeled, b)
        got = afc.kcenter_greedy(cp.asarray(X), cp.asarray(labeled), b).get()
        assert_exact(got, want, f"k-center picks b={b}")
        assert_exact(af.kcenter_greedy(X, labeled, b, device="cuda"), want, "device='cuda'")


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32])
def test_integer_scores_beyond_2_53_are_keyed_exactly(rng, dtype):
    """Integer scores were keyed as float64 on the GPU: values 3 apart near 2**62 tied."""
    import cupy as cp

    import alamp_fast.cuda as afc

    n = 3000
    base = (1 << 62) if dtype != np.int32 else (1 << 30)
    scores = (base + rng.integers(-200, 200, n) * 3).astype(dtype)
    if dtype == np.int64:
        scores[::7] = -scores[::7]
    pc = rng.integers(0, 9, n)
    exclude = rng.choice(n, 100, replace=False)
    for largest in (True, False):
        for b in (1, 37, 500):
            kw = {"exclude": exclude, "largest": largest}
            want = af.select_top(scores, b, **kw)
            got = afc.select_top(cp.asarray(scores), b, exclude=cp.asarray(exclude),
                                 largest=largest).get()
            assert_exact(got, want, f"select_top b={b} largest={largest}")
            assert_exact(af.select_top(scores, b, device="cuda", **kw), want, "device='cuda'")
            want = af.diversify(scores, pc, b, **kw)
            got = afc.diversify(cp.asarray(scores), cp.asarray(pc), b,
                                exclude=cp.asarray(exclude), largest=largest).get()
            assert_exact(got, want, f"diversify b={b} largest={largest}")


@gpu
@needs_gpu
def test_uint64_scores_beyond_int64_raise_the_cpu_error(rng):
    import cupy as cp

    import alamp_fast.cuda as afc

    scores = rng.integers(0, 1000, 500).astype(np.uint64)
    scores[123] = np.uint64((1 << 63) + 5)
    for name, args in (("select_top", (scores, 3)),
                       ("diversify", (scores, rng.integers(0, 4, 500), 3))):
        with pytest.raises(ValueError) as cpu_err:
            getattr(af, name)(*args)
        with pytest.raises(ValueError) as gpu_err:
            getattr(afc, name)(*(cp.asarray(a) for a in args))
        assert str(gpu_err.value) == str(cpu_err.value)
        with pytest.raises(ValueError) as api_err:
            getattr(af, name)(*args, device="cuda")
        assert str(api_err.value) == str(cpu_err.value)
    scores[123] = np.uint64((1 << 63) - 1)  # the largest value that fits still works
    assert_exact(afc.select_top(cp.asarray(scores), 3).get(), af.select_top(scores, 3), "max")


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_alamp_raises_where_the_cpu_raises_on_an_overflowing_margin(dtype):
    """float32 [3e38, -3e38] has an Inf margin: alamp_score raises; the fused kernel gave NaN."""
    import cupy as cp

    import alamp_fast.cuda as afc

    big = np.finfo(dtype).max * 0.9
    P = np.array([[0.5, 0.25], [big, -big], [0.1, 0.2]], dtype=dtype)
    prev = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    with pytest.raises(ValueError) as cpu_err:
        af.alamp_score(prev, af.top2_margin(P)[0])
    with pytest.raises(ValueError) as gpu_err:
        afc.top2_margin_alamp(cp.asarray(P), cp.asarray(prev))
    assert str(gpu_err.value) == str(cpu_err.value)
    # the margin alone: whatever the CPU does with such rows, the GPU does (streamed too)
    try:
        want = af.top2_margin(P)
    except ValueError as exc:
        for probs in (cp.asarray(P), P):
            with pytest.raises(ValueError) as gpu_err:
                afc.top2_margin(probs)
            assert str(gpu_err.value) == str(exc)
    else:
        assert_exact(afc.top2_margin(cp.asarray(P))[0].get(), want[0], "overflowing margin")


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_of_a_row_depends_only_on_the_row(rng, dtype, tmp_path):
    """float64 entropy was split across lanes differently per layout, vector width and chunk:
    about half the rows differed by one ulp. Now every path gives the same bits."""
    import cupy as cp

    import alamp_fast.cuda as afc

    for n, C in ((90, 8), (70, 40), (40, 300), (6, 2050)):
        P = rng.dirichlet(np.full(C, 0.3), n).astype(dtype)
        P[::5, 1] = 0
        ref = afc.entropy(cp.asarray(P), layout="group").get()
        assert_close(ref, af.entropy(P), "entropy vs CPU", rtol=1e-12 if dtype == np.float64
                     else 2.0**-22, atol=1e-300)
        for layout in ("group", "block", None):
            for name, dev in (("aligned", cp.asarray(P)), ("misaligned", _misaligned(cp, P))):
                assert_exact(afc.entropy(dev, layout=layout).get(), ref,
                             f"entropy {n}x{C} layout={layout} {name}")
        for chunk in (1, 7):
            assert_exact(afc.entropy(P, chunk_rows=chunk).get(), ref, f"streamed by {chunk}")
        # a row alone gives the bits it gives among others
        for i in (0, n - 1):
            assert_exact(afc.entropy(cp.asarray(P[i : i + 1])).get(), ref[i : i + 1],
                         f"row {i} alone")


@gpu
@needs_gpu
def test_streamed_staging_does_not_overwrite_a_freed_block_still_read(rng, tmp_path):
    """``m, _ = top2_margin(mm1); s = m * 2; del m; top2_margin(mm2)``: the pool may hand m's
    block to the second call's staging buffer while ``m * 2`` is still queued."""
    import alamp_fast.cuda as afc

    n, C = 4000, 8
    P1 = _probs(rng, n, C, np.float32, kind="normal")
    # a staging buffer of P2 (250 x 16 float32) has the bytes of m (4000 float32)
    P2 = _probs(rng, 1000, 16, np.float32, kind="normal")
    for _ in range(3):
        m, _top = afc.top2_margin(P1, chunk_rows=n)
        s = m * 2
        del m, _top
        afc.top2_margin(P2, chunk_rows=250)
        assert_exact(s.get(), af.top2_margin(P1)[0] * 2, "m * 2 after the block was reused")


@gpu
@pytest.mark.skipif(_cuda_skip_reason("torch-cuda") is not None,
                    reason=str(_cuda_skip_reason("torch-cuda")))
def test_bfloat16_torch_cuda_tensors_match_cpu(rng):
    import torch

    P = torch.from_numpy(rng.dirichlet(np.ones(10), 333).astype(np.float32)).to(torch.bfloat16)
    want_m, want_top = af.top2_margin(P)
    m, top = af.top2_margin(P.cuda())
    assert m.is_cuda and m.dtype == torch.float32
    assert_exact(m.cpu().numpy(), want_m.numpy(), "bf16 margin")
    assert_exact(top.cpu().numpy(), want_top.numpy(), "bf16 top class")
    assert_close(af.entropy(P.cuda()).cpu().numpy(), af.entropy(P).numpy(), "bf16 entropy",
                 rtol=2.0**-22, atol=1e-300)
