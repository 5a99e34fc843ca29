"""The CUDA emulator (alamp_fast.cuda.emulate): each device feature against a numpy model, and
planted bugs it must catch, naming kernel, block and thread.

The kernels here are small CUDA C++ sources compiled by the emulator (g++, cached); the package's
own kernels run on it through tests/cuda/test_gpu.py and the cupy backend of the kernel tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, assert_exact

from alamp_fast.cuda import emulate
from alamp_fast.cuda.emulate import _build

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs a host C++ compiler (g++)")

cp = emulate.cupy()
EmulatorError = emulate.EmulatorError


# ---------------------------------------------------------------------------------------------
# device features, one module (one compile)

FEATURES = r"""
extern "C" __global__ void indices(int* out) {
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    out[b * nt + t] = b * 10000 + t * 10 + (warpSize == 32);
}

template <typename T>
__global__ void shuffles(const T* in, T* out, int delta, int width) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const T v = in[i];
    out[4 * i + 0] = __shfl_sync(0xffffffffu, v, delta, width);
    out[4 * i + 1] = __shfl_up_sync(0xffffffffu, v, delta, width);
    out[4 * i + 2] = __shfl_down_sync(0xffffffffu, v, delta, width);
    out[4 * i + 3] = __shfl_xor_sync(0xffffffffu, v, delta, width);
}

extern "C" __global__ void votes(const int* pred, const unsigned* val, unsigned* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int p = pred[i];
    out[8 * i + 0] = __ballot_sync(0xffffffffu, p);
    out[8 * i + 1] = __any_sync(0xffffffffu, p);
    out[8 * i + 2] = __all_sync(0xffffffffu, p);
    out[8 * i + 3] = __match_any_sync(0xffffffffu, val[i]);
    int same = 0;
    out[8 * i + 4] = __match_all_sync(0xffffffffu, val[i] & 1u, &same);
    out[8 * i + 5] = same;
    out[8 * i + 6] = __activemask();
    __syncwarp();
    out[8 * i + 7] = __reduce_add_sync(0xffffffffu, val[i]);
}

extern "C" __global__ void block_votes(const int* pred, int* out) {
    const int p = pred[blockIdx.x * blockDim.x + threadIdx.x];
    const int c = __syncthreads_count(p);
    const int a = __syncthreads_and(p);
    const int o = __syncthreads_or(p);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x + 0] = c;
        out[3 * blockIdx.x + 1] = a;
        out[3 * blockIdx.x + 2] = o;
    }
}

// each block reverses its chunk through static and dynamic shared memory
extern "C" __global__ void reverse(const float* in, float* out, float* out2) {
    __shared__ float buf[256];
    extern __shared__ float dyn[];
    const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buf[t] = in[base + t];
    dyn[t] = 2.0f * in[base + t];
    __syncthreads();
    out[base + t] = buf[blockDim.x - 1 - t];
    out2[base + t] = dyn[blockDim.x - 1 - t];
}

extern "C" __global__ void atomics(int* i32, unsigned* u32, unsigned long long* u64,
                                   long long* i64, float* f32, double* f64) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(i32 + 0, 1);
    atomicMin(i32 + 1, -t);
    atomicMax(i32 + 2, t);
    atomicSub(i32 + 3, 2);
    atomicAdd(u32 + 0, 3u);
    atomicOr(u32 + 1, 1u << (t % 32));
    atomicAnd(u32 + 2, ~(1u << (t % 32)));
    atomicXor(u32 + 3, 1u << (t % 4));
    atomicInc(u32 + 4, 6u);
    atomicExch(u32 + 5, 7u);
    atomicAdd(u64 + 0, 1ull << 40);
    atomicMin(u64 + 1, (unsigned long long)t + 5);
    atomicMax(u64 + 2, (unsigned long long)t << 33);
    unsigned long long seen = u64[3];
    while (atomicCAS(u64 + 3, seen, seen + 2) != seen) seen = u64[3];
    atomicMax(i64 + 0, (long long)t * -3);
    atomicAdd(f32, 0.5f);
    atomicAdd(f64, 0.25);
}

extern "C" __global__ void bits(const unsigned* in, const unsigned long long* in64, int* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned v = in[i];
    out[6 * i + 0] = __popc(v);
    out[6 * i + 1] = __clz((int)v);
    out[6 * i + 2] = __ffs((int)v);
    out[6 * i + 3] = (int)__brev(v);
    out[6 * i + 4] = __popcll(in64[i]);
    out[6 * i + 5] = __clzll((long long)in64[i]);
}

extern "C" __global__ void halves(const unsigned short* h, float* f, const float* x,
                                  unsigned short* hx, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    f[i] = __half2float(__ushort_as_half(h[i]));
    hx[i] = __half_as_ushort(__float2half_rn(x[i]));
}

extern "C" __global__ void vec_load(const float4* in, float* out, double* dsum, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float4 v = __ldg(in + i);
    out[i] = __fadd_rn(__fadd_rn(v.x, v.y), __fadd_rn(v.z, v.w));
    dsum[i] = __dadd_rn(__dmul_rn((double)v.x, (double)v.y), (double)__fdiv_rn(v.z, 3.0f));
}

extern "C" __global__ void conversions(const float* x, const unsigned* u, long long* out) {
    const int i = threadIdx.x;
    out[8 * i + 0] = __float2int_rn(x[i]);
    out[8 * i + 1] = __float2ll_rn(x[i] * 1e6f);
    out[8 * i + 2] = __double2int_rn((double)x[i]);
    out[8 * i + 3] = __funnelshift_l(u[i], u[i + 1], u[i + 2]);
    out[8 * i + 4] = __funnelshift_r(u[i], u[i + 1], u[i + 2]);
    out[8 * i + 5] = __funnelshift_lc(u[i], u[i + 1], u[i + 2] % 40u);
    out[8 * i + 6] = __funnelshift_rc(u[i], u[i + 1], u[i + 2] % 40u);
    const long long t0 = clock64();
    __nanosleep(10);
    out[8 * i + 7] = clock64() >= t0;
}

// reads shared memory it never wrote in this block: garbage on the GPU, not the last block's data
extern "C" __global__ void stale_shared(unsigned* out) {
    __shared__ unsigned cell[2];
    out[blockIdx.x] = cell[0];
    __syncthreads();
    cell[0] = 7u;
}

extern "C" __global__ void ptx_widen(const unsigned short* h, float* f) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h[threadIdx.x]));
    f[threadIdx.x] = v;
}
"""

EXPRESSIONS = ["shuffles<int>", "shuffles<double>", "shuffles<long long>"]


@pytest.fixture(scope="module")
def features():
    return cp.RawModule(code=FEATURES, name_expressions=EXPRESSIONS)


def test_thread_block_and_grid_indices_in_3d(features):
    grid, block = (2, 3, 2), (4, 2, 3)
    nb, nt = int(np.prod(grid)), int(np.prod(block))
    out = cp.full(nb * nt, -1, dtype=np.int32)
    features.get_function("indices")(grid, block, (out,))
    b, t = np.divmod(np.arange(nb * nt), nt)
    assert_exact(out.get(), b * 10000 + t * 10 + 1, "linear indices")


def _shuffle_model(v, delta, width):
    lanes = np.arange(v.size) % 32
    base = np.arange(v.size) - lanes  # the warp's first element
    seg = lanes & ~(width - 1)
    idx = seg + (delta & (width - 1))
    up = np.where(lanes - delta >= seg, lanes - delta, lanes)
    down = np.where(lanes + delta < seg + width, lanes + delta, lanes)
    x = lanes ^ delta
    xor = np.where(x < seg + width, x, lanes)
    return np.stack([v[base + s] for s in (idx, up, down, xor)], axis=1).ravel()


@pytest.mark.parametrize("ctype, dtype", [("int", np.int32), ("double", np.float64),
                                          ("long long", np.int64)])
@pytest.mark.parametrize("delta, width", [(1, 32), (5, 32), (3, 8), (2, 4), (17, 16), (0, 1)])
def test_shuffles_equal_the_cuda_semantics(features, rng, ctype, dtype, delta, width):
    v = (rng.standard_normal(128) * 1e6).astype(dtype)
    out = cp.zeros(4 * v.size, dtype=dtype)
    features.get_function(f"shuffles<{ctype}>")((2,), (64,), (cp.asarray(v), out,
                                                               np.int32(delta), np.int32(width)))
    assert_exact(out.get(), _shuffle_model(v, delta, width), "shfl idx/up/down/xor")


def test_votes_match_and_warp_reduce(features, rng):
    n = 96
    pred = (rng.random(n) < 0.5).astype(np.int32)
    pred[32:64] = 1  # warp 1: all true
    val = rng.integers(0, 4, n).astype(np.uint32)
    val[64:] = 6  # warp 2: all equal
    out = cp.zeros(8 * n, dtype=np.uint32)
    features.get_function("votes")((1,), (n,), (cp.asarray(pred), cp.asarray(val), out))
    got = out.get().reshape(n, 8)
    for w in range(3):
        lanes = slice(32 * w, 32 * w + 32)
        p, v = pred[lanes], val[lanes]
        ballot = int(sum(int(b) << i for i, b in enumerate(p)))
        assert (got[lanes, 0] == ballot).all()
        assert (got[lanes, 1] == int(p.any())).all() and (got[lanes, 2] == int(p.all())).all()
        for lane in range(32):
            peers = sum(1 << k for k in range(32) if v[k] == v[lane])
            assert got[32 * w + lane, 3] == peers
        same = bool((v & 1 == v[0] & 1).all())
        assert (got[lanes, 4] == (0xFFFFFFFF if same else 0)).all()
        assert (got[lanes, 5] == int(same)).all()
        assert (got[lanes, 6] == 0xFFFFFFFF).all()
        assert (got[lanes, 7] == int(v.sum())).all()


def test_syncthreads_count_and_or(features, rng):
    pred = (rng.random(3 * 64) < 0.3).astype(np.int32)
    pred[64:128] = 1
    pred[128:] = 0
    out = cp.zeros(9, dtype=np.int32)
    features.get_function("block_votes")((3,), (64,), (cp.asarray(pred), out))
    p = pred.reshape(3, 64)
    want = np.stack([p.sum(1), p.all(1), p.any(1)], axis=1).ravel()
    assert_exact(out.get(), want, "__syncthreads_count/and/or")


def test_static_and_dynamic_shared_memory_are_per_block(features, rng):
    x = rng.standard_normal(4 * 256).astype(np.float32)
    out, out2 = cp.zeros_like(cp.asarray(x)), cp.zeros(x.size, dtype=np.float32)
    features.get_function("reverse")((4,), (256,), (cp.asarray(x), out, out2),
                                     shared_mem=256 * 4)
    want = x.reshape(4, 256)[:, ::-1].ravel()
    assert_exact(out.get(), want, "static __shared__")
    assert_exact(out2.get(), 2 * want, "extern __shared__")


def test_rounding_conversions_funnel_shifts_and_clock(features, rng):
    x = np.concatenate([[0.5, 1.5, 2.5, -0.5, -1.5, 3.49999, -2.5000002],
                        rng.standard_normal(57) * 100]).astype(np.float32)
    u = rng.integers(0, 2**32, 66, dtype=np.uint64).astype(np.uint32)
    out = cp.zeros(8 * 64, dtype=np.int64)
    features.get_function("conversions")((1,), (64,), (cp.asarray(x), cp.asarray(u), out))
    got = out.get().reshape(64, 8)
    assert_exact(got[:, 0], np.rint(x).astype(np.int64), "__float2int_rn (ties to even)")
    assert_exact(got[:, 1], np.rint(x * np.float32(1e6)).astype(np.int64), "__float2ll_rn")
    assert_exact(got[:, 2], np.rint(x.astype(np.float64)).astype(np.int64), "__double2int_rn")
    for i in range(64):
        lo, hi, sh = int(u[i]), int(u[i + 1]), int(u[i + 2])
        cat = (hi << 32) | lo
        c = sh % 40
        want = [((cat << (sh & 31)) >> 32) & 0xFFFFFFFF, (cat >> (sh & 31)) & 0xFFFFFFFF,
                lo if c >= 32 else ((cat << c) >> 32) & 0xFFFFFFFF,
                hi if c >= 32 else (cat >> c) & 0xFFFFFFFF]
        assert [v & 0xFFFFFFFF for v in got[i, 3:7].tolist()] == want, i
    assert (got[:, 7] == 1).all()


def test_shared_memory_starts_as_garbage_in_every_block(features):
    out = cp.zeros(3, dtype=np.uint32)
    features.get_function("stale_shared")((3,), (1,), (out,))
    assert out.get().tolist() == [0xA5A5A5A5] * 3


def test_atomics_32_and_64_bit(features):
    i32 = cp.asarray(np.array([0, 0, 0, 100], dtype=np.int32))
    u32 = cp.asarray(np.array([0, 0, 0xFFFFFFFF, 0, 0, 0], dtype=np.uint32))
    u64 = cp.asarray(np.array([0, 2**63, 0, 10], dtype=np.uint64))
    i64 = cp.asarray(np.array([-(2**62)], dtype=np.int64))
    f32, f64 = cp.zeros(1, dtype=np.float32), cp.zeros(1, dtype=np.float64)
    features.get_function("atomics")((3,), (100,), (i32, u32, u64, i64, f32, f64))
    n = 300
    assert i32.get().tolist() == [n, -(n - 1), n - 1, 100 - 2 * n]
    inc = 0
    for _ in range(n):
        inc = 0 if inc >= 6 else inc + 1
    xor = 0
    for t in range(n):
        xor ^= 1 << (t % 4)
    assert u32.get().tolist() == [3 * n, 0xFFFFFFFF, 0, xor, inc, 7]
    assert u64.get().tolist() == [n << 40, 5, (n - 1) << 33, 10 + 2 * n]
    assert i64.get().tolist() == [0]
    assert f32.get()[0] == n * 0.5 and f64.get()[0] == n * 0.25


def test_bit_intrinsics(features, rng):
    v = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    v[:4] = [0, 1, 0x80000000, 0xFFFFFFFF]
    v64 = rng.integers(0, 2**63, 64, dtype=np.uint64) >> rng.integers(0, 63, 64).astype(np.uint64)
    v64[0] = 0
    out = cp.zeros(6 * 64, dtype=np.int32)
    features.get_function("bits")((1,), (64,), (cp.asarray(v), cp.asarray(v64), out))
    got = out.get().reshape(64, 6)
    for i, (x, y) in enumerate(zip(v.tolist(), v64.tolist(), strict=True)):
        want = [bin(x).count("1"), 32 - x.bit_length(), (x & -x).bit_length(),
                int(f"{x:032b}"[::-1], 2), bin(y).count("1"), 64 - y.bit_length()]
        assert got[i].tolist() == [w if w < 2**31 else w - 2**32 for w in want], hex(x)


def test_half_conversions_are_exact(features, rng):
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)  # every binary16 bit pattern
    x = np.concatenate([rng.standard_normal(30000) * 10.0 ** rng.integers(-9, 6, 30000),
                        [65504, 65519.99, 65520, 1e-8, 2.0**-25, 2.0**-24 * 1.5, -0.0, np.inf,
                         -np.inf, 6.1e-5, 5.96e-8]]).astype(np.float32)
    x = np.resize(x, h.size)
    f, hx = cp.zeros(h.size, dtype=np.float32), cp.zeros(h.size, dtype=np.uint16)
    features.get_function("halves")((256,), (256,), (cp.asarray(h), f, cp.asarray(x), hx,
                                                     np.int32(h.size)))
    want = h.view(np.float16).astype(np.float32)
    got = f.get()
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all()
    assert_exact(got[~nan].view(np.uint32), want[~nan].view(np.uint32), "__half2float bits")
    with np.errstate(over="ignore"):
        want_h = x.astype(np.float16).view(np.uint16)
    assert_exact(hx.get(), want_h, "__float2half_rn bits")


def test_inline_ptx_widening_equals_numpy(features):
    h = np.array([0x3C00, 0x0001, 0x7BFF, 0xFC00, 0x8000, 0x3555], dtype=np.uint16)
    f = cp.zeros(h.size, dtype=np.float32)
    features.get_function("ptx_widen")((1,), (h.size,), (cp.asarray(h), f))
    assert_exact(f.get(), h.view(np.float16).astype(np.float32), "cvt.f32.f16")


def test_vector_loads_ldg_and_rounded_intrinsics(features, rng):
    x = rng.standard_normal((50, 4)).astype(np.float32)
    out, d = cp.zeros(50, dtype=np.float32), cp.zeros(50, dtype=np.float64)
    features.get_function("vec_load")((1,), (64,), (cp.asarray(x), out, d, np.int32(50)))
    assert_exact(out.get(), (x[:, 0] + x[:, 1]) + (x[:, 2] + x[:, 3]), "float4 sums")
    want = x[:, 0].astype(np.float64) * x[:, 1] + (x[:, 2] / np.float32(3.0)).astype(np.float64)
    assert_exact(d.get(), want, "__dadd_rn/__dmul_rn/__fdiv_rn")


# ---------------------------------------------------------------------------------------------
# planted bugs the emulator must catch: in every build


BUGS = r"""
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) __syncthreads();   // half the block skips it
    out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void two_barriers(float* out) {
    if (threadIdx.x % 2) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void exits_before_barrier(float* out) {
    if (blockIdx.x == 1 && threadIdx.x == 40) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void mask_excludes_caller(float* out) {
    float v = out[threadIdx.x];
    v += __shfl_xor_sync(0x0000ffffu, v, 1);   // lanes 16..31 call it too
    out[threadIdx.x] = v;
}

extern "C" __global__ void lane_skips_collective(float* out) {
    float v = out[threadIdx.x];
    if (threadIdx.x != 7) v += __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

extern "C" __global__ void reads_outside_mask(float* out) {
    float v = out[threadIdx.x];
    if (threadIdx.x < 16) v += __shfl_xor_sync(0x0000ffffu, v, 16);
    out[threadIdx.x] = v;
}

extern "C" __global__ void collective_vs_barrier(float* out) {
    float v = out[threadIdx.x];
    if (threadIdx.x == 3) __syncthreads();
    else v = __shfl_sync(0xffffffffu, v, 0);
    out[threadIdx.x] = v;
}

extern "C" __global__ void misaligned_vector(const float* in, float* out) {
    const float4 v = reinterpret_cast<const float4*>(in + 1)[threadIdx.x];
    out[threadIdx.x] = v.x + v.w;
}

extern "C" __global__ void traps(float* out) {
    if (threadIdx.x == 5) __trap();
    out[threadIdx.x] = 0.0f;
}
"""


@pytest.fixture(scope="module")
def bugs():
    return cp.RawModule(code=BUGS)


@pytest.mark.parametrize(
    "kernel, grid, block, pattern",
    [
        ("divergent_barrier", 1, 32,
         r"divergent barrier: __syncthreads \(line 3\) .* block \(0, 0, 0\), thread \(16, 0, 0\) "
         r"has exited"),
        ("two_barriers", 1, 32, r"divergent barrier: __syncthreads \(line \d+\).* waits at "
                                r"__syncthreads \(line \d+\)"),
        ("exits_before_barrier", 2, 64,
         r"block \(1, 0, 0\), thread \(40, 0, 0\) has exited"),
        ("mask_excludes_caller", 1, 32,
         r"__shfl_xor_sync \(line \d+\) with mask 0x0000ffff, which does not contain the "
         r"calling lane 16, in block \(0, 0, 0\), thread \(16, 0, 0\)"),
        ("lane_skips_collective", 1, 32,
         r"warp collective mask mismatch: __shfl_down_sync .* mask 0xffffffff .* lane 7 of the "
         r"mask has exited"),
        ("reads_outside_mask", 1, 32,
         r"__shfl_xor_sync \(line \d+\) with mask 0x0000ffff in block \(0, 0, 0\), thread "
         r"\(0, 0, 0\) reads lane 16, which is not in the mask"),
        ("collective_vs_barrier", 1, 32,
         r"lane 3 of the mask waits at __syncthreads"),
        ("traps", 1, 32, r"__trap\(\) at line \d+ in block \(0, 0, 0\), thread \(5, 0, 0\)"),
    ],
)
def test_synchronisation_bugs_are_reported_with_kernel_block_and_thread(bugs, kernel, grid,
                                                                        block, pattern):
    out = cp.zeros(block, dtype=np.float32)
    with pytest.raises(EmulatorError, match=f"^kernel {kernel}: .*{pattern}"):
        bugs.get_function(kernel)((grid,), (block,), (out,))


def test_misaligned_vector_load_is_reported(bugs):
    x = cp.zeros(129, dtype=np.float32)
    out = cp.zeros(32, dtype=np.float32)
    with pytest.raises(EmulatorError, match=r"kernel misaligned_vector: misaligned .*"
                       r"address 0x[0-9a-f]+ of type .*float4.*16-byte alignment.* thread "
                       r"\(0, 0, 0\)"):
        bugs.get_function("misaligned_vector")((1,), (32,), (x, out))


def test_launch_and_argument_errors(bugs):
    out = cp.zeros(32, dtype=np.float32)
    k = bugs.get_function("traps")
    with pytest.raises(EmulatorError, match="2048 threads per block"):
        k((1,), (2048,), (out,))
    with pytest.raises(EmulatorError, match="bytes of dynamic shared memory"):
        k((1,), (32,), (out,), shared_mem=64 * 1024)
    with pytest.raises(TypeError, match="takes 1 arguments, 2 were given"):
        k((1,), (32,), (out, out))
    with pytest.raises(TypeError, match="host array"):
        k((1,), (32,), (np.zeros(32, dtype=np.float32),))
    with pytest.raises(TypeError, match="is a pointer"):
        k((1,), (32,), (np.int64(3),))
    align = cp.RawModule(code='extern "C" __global__ void f(float* o, int n) { o[0] = n; }')
    with pytest.raises(TypeError, match=r"argument 1 takes 4 bytes, got int64 \(8 bytes\)"):
        align.get_function("f")((1,), (1,), (out, np.int64(3)))
    with pytest.raises(KeyError, match="nope"):
        bugs.get_function("nope")


def test_unknown_inline_ptx_is_a_clear_build_error():
    code = 'extern "C" __global__ void f(float* o) { asm("brev.b32 %0, %1;" : "=r"(o) : "r"(o)); }'
    with pytest.raises(_build.EmulatorBuildError, match="does not implement the inline PTX"):
        cp.RawModule(code=code)


def test_compile_errors_carry_the_compiler_log():
    with pytest.raises(_build.EmulatorBuildError, match="undeclared_thing"):
        cp.RawModule(code='extern "C" __global__ void f(float* o) { o[0] = undeclared_thing; }')


# ---------------------------------------------------------------------------------------------
# planted bugs for the checking build: out of bounds, data races


RACES = r"""
extern "C" __global__ void oob_write(float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f;   // one past the end
}

extern "C" __global__ void oob_before(const float* in, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i - 1];   // reads in[-1] on thread 0
}

extern "C" __global__ void oob_dynamic_shared(float* out) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x + 1] = 1.0f;   // blockDim.x floats were given
    __syncthreads();
    out[threadIdx.x] = dyn[threadIdx.x];
}

extern "C" __global__ void shared_race(float* out) {
    __shared__ float total;
    if (threadIdx.x == 0) total = 0.0f;
    // missing __syncthreads(): other threads read `total` in the same phase
    out[threadIdx.x] = total + 1.0f;
}

extern "C" __global__ void shared_no_race(float* out) {
    __shared__ float total;
    if (threadIdx.x == 0) total = 0.0f;
    __syncthreads();
    out[threadIdx.x] = total + 1.0f;
}

extern "C" __global__ void global_race(float* out) {
    out[0] = (float)threadIdx.x;   // every thread writes the same element
}

extern "C" __global__ void atomic_no_race(unsigned* counter, unsigned* out) {
    __shared__ unsigned local;
    if (threadIdx.x == 0) local = 0u;
    __syncthreads();
    atomicAdd(&local, 1u);
    atomicAdd(counter, 1u);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = local;
}

extern "C" __global__ void warp_reduce_no_race(float* out) {
    __shared__ float parts[8];
    float v = out[blockIdx.x * blockDim.x + threadIdx.x];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if ((threadIdx.x & 31) == 0) parts[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += parts[w];
        out[blockIdx.x * blockDim.x] = s;
    }
}

extern "C" __global__ void race_after_reuse(float* out) {
    __shared__ float parts[8];
    parts[threadIdx.x >> 5] = 1.0f;      // every lane of a warp writes its warp's slot
    __syncthreads();
    out[threadIdx.x] = parts[0];
}
"""


@pytest.fixture(scope="module")
def races():
    with emulate.checking():
        return cp.RawModule(code=RACES)


def test_out_of_bounds_global_write_and_read(races):
    out = cp.zeros(100, dtype=np.float32)
    with pytest.raises(EmulatorError, match=r"^kernel oob_write: out-of-bounds write of 4 bytes "
                       r"at address 0x[0-9a-f]+ \(0 bytes past the end of argument 0 "
                       r"\(float32\[100\]\), 400 bytes\) in block \(1, 0, 0\), thread "
                       r"\(36, 0, 0\)"):
        races.get_function("oob_write")((2,), (64,), (out, np.int32(100)))
    x = cp.zeros(64, dtype=np.float32)
    with pytest.raises(EmulatorError, match=r"out-of-bounds read of 4 bytes .*4 bytes before "
                       r"argument 0 .* thread \(0, 0, 0\)"):
        races.get_function("oob_before")((1,), (64,), (x[1:][:63], out, np.int32(63)))


def test_out_of_bounds_dynamic_shared_memory(races):
    out = cp.zeros(32, dtype=np.float32)
    with pytest.raises(EmulatorError, match=r"out-of-bounds write of 4 bytes at dynamic shared "
                       r"memory offset 128 \(the launch gave 128 bytes\) in block \(0, 0, 0\), "
                       r"thread \(31, 0, 0\)"):
        races.get_function("oob_dynamic_shared")((1,), (32,), (out,), shared_mem=32 * 4)


@pytest.mark.parametrize("kernel, pattern", [
    ("shared_race", r"data race \(read after write\) on __shared__ total, byte 0 .* between "
                    r"thread \(0, 0, 0\) and thread \(1, 0, 0\) with no barrier in between, in "
                    r"block \(0, 0, 0\)"),
    ("global_race", r"data race \(write after write\) on argument 0 \(float32\[64\]\), byte 0 "),
    ("race_after_reuse", r"data race \(write after write\) on __shared__ parts, byte 0 "),
])
def test_data_races_between_barriers_are_reported(races, kernel, pattern):
    out = cp.zeros(64, dtype=np.float32)
    with pytest.raises(EmulatorError, match=f"^kernel {kernel}: {pattern}"):
        races.get_function(kernel)((1,), (64,), (out,))


def test_synchronised_code_passes_the_checks(races, rng):
    out = cp.zeros(64, dtype=np.float32)
    races.get_function("shared_no_race")((1,), (64,), (out,))
    assert_exact(out.get(), np.float32(1.0), "after the barrier")
    counter, per_block = cp.zeros(1, dtype=np.uint32), cp.zeros(3, dtype=np.uint32)
    races.get_function("atomic_no_race")((3,), (96,), (counter, per_block))
    assert counter.get().tolist() == [288] and per_block.get().tolist() == [96] * 3
    x = rng.integers(-50, 50, 2 * 256).astype(np.float32)
    out = cp.asarray(x)
    races.get_function("warp_reduce_no_race")((2,), (256,), (out,))
    assert out.get()[[0, 256]].tolist() == [x[:256].sum(), x[256:].sum()]


# ---------------------------------------------------------------------------------------------
# the CuPy stand-in


def test_cupy_stand_in_keeps_cupys_rules():
    a = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert type(a).__module__ == "cupy" and isinstance(a, cp.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    host = a.get()
    host[0, 0] = 99
    assert a.get()[0, 0] == 0, ".get() copies"
    assert a.data.ptr % 256 == 0, "allocations are aligned like cudaMalloc's"
    s = a.sum()
    assert isinstance(s, cp.ndarray) and s.shape == () and float(s) == 15.0
    with pytest.raises(TypeError, match="host"):
        a + np.ones(3, dtype=np.float32)
    keys = cp.asarray(np.array([3, 1, 3, 1, 2, 1]))
    assert cp.argsort(keys).get().tolist() == [1, 3, 5, 4, 0, 2], "stable, like CuPy's"
    b = a[:, 1:]
    b[...] = 7
    assert a.get().tolist() == [[0, 7, 7], [3, 7, 7]], "slices are views"
    assert cp.cuda.runtime.getDeviceCount() == 1
    attrs = cp.cuda.Device(0).attributes
    assert attrs["MultiProcessorCount"] > 0 and cp.cuda.Device(0).compute_capability == "90"
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="invalid device"):
        with cp.cuda.Device(1):
            pass


def test_streams_and_events_keep_order():
    s = cp.cuda.Stream(non_blocking=True)
    a = cp.zeros(4)
    with s:
        a += 1
        e = s.record()
    cp.cuda.get_current_stream().wait_event(e)
    e.synchronize()
    assert a.get().tolist() == [1, 1, 1, 1] and e.query()
    t0, t1 = cp.cuda.Event(), cp.cuda.Event()
    t0.record()
    t1.record()
    assert cp.cuda.get_elapsed_time(t0, t1) >= 0


def test_memory_size_is_configurable_and_out_of_memory_raises():
    code = textwrap.dedent("""
        import numpy as np
        from alamp_fast.cuda import emulate
        cp = emulate.cupy()
        free, total = cp.cuda.runtime.memGetInfo()
        assert total == 64 << 20, total
        a = cp.empty(10 << 20, dtype=np.uint8)
        free2, _ = cp.cuda.runtime.memGetInfo()
        assert free - free2 >= 10 << 20, (free, free2)
        del a
        assert cp.cuda.runtime.memGetInfo()[0] == free
        try:
            cp.empty(100 << 20, dtype=np.uint8)
        except cp.cuda.memory.OutOfMemoryError as exc:
            print("OOM", exc)
    """)
    env = dict(os.environ, ALAMP_FAST_EMULATE_MEM="64M")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OOM Out of memory allocating 104,857,856 bytes" in out.stdout


# ---------------------------------------------------------------------------------------------
# the switch: ALAMP_FAST_CUDA=emulate


def _run(code, **env_vars):
    env = {k: v for k, v in os.environ.items() if k != "ALAMP_FAST_CUDA"}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, cwd=REPO)


def test_switch_runs_the_public_api_on_the_emulator():
    out = _run("""
        import sys
        import numpy as np
        import alamp_fast as af
        assert "cupy" not in sys.modules
        rng = np.random.default_rng(5)
        P = rng.dirichlet(np.ones(7), 300).astype(np.float32)
        P[:5] = 1e-41  # subnormal probabilities
        m, top = af.top2_margin(P, device="cuda")
        wm, wt = af.top2_margin(P)
        assert type(m) is np.ndarray and (m == wm).all() and (top == wt).all()
        s = np.round(rng.random(500), 2)
        assert (af.select_top(s, 40, device="cuda") == af.select_top(s, 40)).all()
        X = rng.standard_normal((200, 6))
        assert (af.kcenter_greedy(X, [3], 9, device="cuda") == af.kcenter_greedy(X, [3], 9)).all()
        import cupy
        print(cupy.__name__)
    """, ALAMP_FAST_CUDA="emulate")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "alamp_fast.cuda.emulate._cupy"


def test_without_the_switch_nothing_changes():
    out = _run("""
        import sys, importlib.util
        import alamp_fast
        from alamp_fast.cuda import emulate
        print(emulate.active(), emulate._finder in sys.meta_path,
              importlib.util.find_spec("cupy") is None or "real")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# the package's kernels under the checking build: no race, no out-of-bounds access


@pytest.mark.slow
def test_package_kernels_pass_the_checking_build():
    out = _run("""
        import numpy as np
        import alamp_fast as af  # first: installs the emulator as `cupy`
        import alamp_fast.cuda as afc
        import cupy
        rng = np.random.default_rng(0)
        for dt in (np.float16, np.float32, np.float64):
            P = np.round(rng.random((70, 37)), 1).astype(dt)
            for layout in ("group", "block"):
                m, top = afc.top2_margin(cupy.asarray(P), layout=layout)
                assert (m.get() == af.top2_margin(P)[0]).all()
                afc.entropy(cupy.asarray(P), layout=layout)
                prev = rng.random(70).astype(np.float32)
                afc.top2_margin_alamp(cupy.asarray(P), cupy.asarray(prev), layout=layout)
        s = np.round(rng.random(3000), 2)
        assert (af.select_top(s, 100, device="cuda") == af.select_top(s, 100)).all()
        pc = rng.integers(0, 5, 3000)
        assert (af.diversify(s, pc, 100, device="cuda") == af.diversify(s, pc, 100)).all()
        r = s[::-1].copy()
        assert (af.alamp_score(s, r, device="cuda") == af.alamp_score(s, r)).all()
        for d in (9, 64):
            X = rng.standard_normal((300, d)).astype(np.float32)
            got = af.kcenter_greedy(X, [1, 2], 10, device="cuda")
            assert (got == af.kcenter_greedy(X, [1, 2], 10)).all()
        print("clean")
    """, ALAMP_FAST_CUDA="emulate", ALAMP_FAST_EMULATE_CHECK="1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "clean"


# ---------------------------------------------------------------------------------------------
# the AddressSanitizer / UBSan build (ALAMP_FAST_EMULATE_SANITIZE=asan, ASan runtime preloaded)


def _libasan():
    cxx = shutil.which(os.environ.get("CXX", "g++")) or "g++"
    path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True,
                          text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


needs_asan = pytest.mark.skipif(_libasan() is None, reason="no libasan for the host compiler")


def _run_asan(code):
    return _run(code, LD_PRELOAD=_libasan() or "", ASAN_OPTIONS="detect_leaks=0",
                ALAMP_FAST_EMULATE_SANITIZE="asan", ALAMP_FAST_CUDA="emulate")


@needs_asan
@pytest.mark.slow
@pytest.mark.parametrize("bug, pattern", [
    ("out[i] = 1.0f;  // i == n: one past the end",
     r"AddressSanitizer: heap-buffer-overflow.*WRITE of size 4.*in planted .*kernel\.cu.*"
     r"the report above is from kernel planted, block \(1, 0, 0\), thread \(36, 0, 0\)"),
    ("out[0] = reinterpret_cast<const float2*>(out + 1)->x;  // 8-byte load at 4 (mod 8)",
     r"EmulatorError: kernel planted: misaligned .* of type 'const struct float2', which needs "
     r"8-byte alignment .* in block \(1, 0, 0\), thread \(36, 0, 0\)"),
])
def test_asan_build_catches_planted_bugs(bug, pattern):
    out = _run_asan(f"""
        import numpy as np
        import alamp_fast
        import cupy
        code = r'''
        extern "C" __global__ void planted(float* out, int n) {{
            const int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) out[i] = 2.0f;
            __syncthreads();
            if (i == n) {bug}
        }}
        '''
        k = cupy.RawModule(code=code).get_function("planted")
        out = cupy.zeros(100, dtype=np.float32)
        k((2,), (64,), (out, np.int32(100)))
        print("not caught")
    """)
    assert out.returncode != 0 and "not caught" not in out.stdout
    assert re.search(pattern, out.stderr, re.S), out.stderr[-3000:]


@needs_asan
@pytest.mark.slow
def test_package_selection_and_alamp_kernels_are_clean_under_asan():
    out = _run_asan("""
        import numpy as np
        import alamp_fast as af
        rng = np.random.default_rng(1)
        for dt in (np.float16, np.float32, np.float64):
            s = np.round(rng.random(2000), 2).astype(dt)
            assert (af.select_top(s, 77, device="cuda") == af.select_top(s, 77)).all()
            pc = rng.integers(0, 9, 2000)
            assert (af.diversify(s, pc, 50, device="cuda") == af.diversify(s, pc, 50)).all()
            p, c = rng.random(999).astype(dt), rng.random(999).astype(dt)
            assert (af.alamp_score(p, c, device="cuda") == af.alamp_score(p, c)).all()
        print("clean")
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "clean"


def test_warmup_builds_into_the_cache_once(tmp_path, monkeypatch, capsys):
    from alamp_fast.cuda.emulate.__main__ import main

    monkeypatch.setenv("ALAMP_FAST_EMULATE_CACHE", str(tmp_path))
    assert main(["alamp"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("alamp.cu [fast] 2 kernels: ") and str(tmp_path) in first
    assert len(list(tmp_path.glob("*/kernels.so"))) == 1
    assert main(["alamp"]) == 0
    assert capsys.readouterr().out.strip().endswith("(0.0 s)")
    with pytest.raises(SystemExit):
        main(["nope"])


def test_fiber_stack_overflow_is_named_and_the_stack_size_configurable():
    code = """
        import numpy as np
        from alamp_fast.cuda import emulate
        cp = emulate.cupy()
        k = cp.RawModule(code=r'''
        extern "C" __global__ void big_frame(float* out, int n) {
            volatile float local[40000];   // 160 KB of locals
            for (int i = 0; i < n; ++i) local[i] = i;
            out[threadIdx.x] = local[n - 1];
        }''').get_function("big_frame")
        out = cp.zeros(32, dtype=np.float32)
        k((1,), (32,), (out, np.int32(40000)))
        print(out.get()[31])
    """
    crash = _run(code)
    assert crash.returncode != 0
    assert ("alamp_fast CUDA emulator: stack overflow in kernel big_frame, block (0, 0, 0), "
            "thread (0, 0, 0) (fiber stacks are 64 KiB; set ALAMP_FAST_EMULATE_STACK_KB)"
            in crash.stderr), crash.stderr[-2000:]
    ok = _run(code, ALAMP_FAST_EMULATE_STACK_KB="256")
    assert ok.returncode == 0 and ok.stdout.strip() == "39999.0", ok.stderr[-2000:]


def test_unusable_cache_folder_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ALAMP_FAST_EMULATE_CACHE", str(blocker / "cache"))  # cannot be made
    root = _build.cache_root()
    assert root.name.startswith("alamp_fast-emulate-") and os.access(root, os.W_OK)


def test_without_a_gpu_the_cupy_backend_runs_on_the_emulator_not_skipped():
    # the guard against GPU tests silently skipping in CI (tests/conftest.py's switch)
    from conftest import _cuda_skip_reason, _real_gpu_present

    if _real_gpu_present() or os.environ.get("ALAMP_FAST_CUDA") != "emulate":
        pytest.skip("a GPU is present or ALAMP_FAST_CUDA was set by the caller")
    assert _cuda_skip_reason("cupy") is None
    import cupy

    assert cupy is cp and emulate.active()


def test_without_the_switch_and_without_cupy_device_cuda_still_raises_clearly():
    # tests/kernels/test_dispatch.py's check of this skips while the suite runs on the emulator
    out = _run("""
        import importlib.util
        import numpy as np
        import alamp_fast as af
        if importlib.util.find_spec("cupy") is not None:
            print("HAVE_CUPY")
        else:
            try:
                af.top2_margin(np.ones((3, 2)), device="cuda:0")
            except ImportError as exc:
                print(exc)
    """)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "HAVE_CUPY":
        pytest.skip("a real CuPy is installed")
    assert "top2_margin(device='cuda:0')" in out.stdout and "CuPy" in out.stdout, out.stdout
