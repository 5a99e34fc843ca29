// CUDA device-code emulation for the host C++ compiler (C++20).
//
// The project's .cu sources are compiled by g++ against this header (see _build.py, which also
// rewrites the few constructs a macro cannot express: `extern __shared__` arrays and inline PTX).
// Every CUDA thread of a block runs as a fiber of runtime.cpp; the functions below that
// synchronise (barriers, warp collectives) switch to the scheduler, which executes them for
// the whole block or warp at once and reports misuse (divergent barriers, mask mismatches)
// with the kernel name, block and thread.
//
// Nothing here models speed, caches or the GPU's floating-point quirks: arithmetic is the host's
// IEEE arithmetic (no FMA contraction, no flush-to-zero), transcendental functions are glibc's.
#pragma once

#include <atomic>
#include <chrono>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(AF_EMU_CHECK)
#define AF_EMU_NOSAN __attribute__((no_sanitize_thread, noinline))
#else
#define AF_EMU_NOSAN inline
#endif

namespace af_emu {

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The part of a fiber the device code reads (the rest lives in runtime.cpp).
struct ThreadInfo {
    uint3 tid;
    unsigned lane;
};

// Set by the scheduler before it switches to a fiber; read by threadIdx & co.
extern "C" ThreadInfo* af_emu_cur;
extern "C" uint3 af_emu_block_idx;
extern "C" dim3 af_emu_block_dim;
extern "C" dim3 af_emu_grid_dim;

// Out of line, in runtime.cpp (never instrumented).
#include "emu_ops.h"
extern "C" unsigned long long af_emu_warp_op(int op, unsigned mask, unsigned long long bits,
                                             int size, int arg, int width, int line);
extern "C" int af_emu_barrier(int kind, int pred, int line);
extern "C" unsigned af_emu_activemask();
extern "C" void* af_emu_dynamic_smem();
extern "C" bool af_emu_shared_var(const void* p, unsigned long size, const char* name);
extern "C" void af_emu_note_atomic(const void* p, int size);
extern "C" [[noreturn]] void af_emu_trap(const char* what, int line);

AF_EMU_NOSAN uint3 thread_idx() { return af_emu_cur->tid; }
AF_EMU_NOSAN uint3 block_idx() { return af_emu_block_idx; }
AF_EMU_NOSAN dim3 block_dim() { return af_emu_block_dim; }
AF_EMU_NOSAN dim3 grid_dim() { return af_emu_grid_dim; }

template <class T> inline unsigned long long to_bits(T v) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                  "warp collectives move values of at most 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// Atomics: std::atomic_ref on the host, marked for the race checker (atomics never race with
// each other). Kept out of the instrumented code in the checking build.
template <class T, class F> AF_EMU_NOSAN T atomic_rmw(T* p, F f) {
    af_emu_note_atomic(p, sizeof(T));
    std::atomic_ref<T> r(*p);
    T old = r.load(std::memory_order_relaxed);
    while (!r.compare_exchange_weak(old, f(old), std::memory_order_seq_cst)) {
    }
    return old;
}

}  // namespace af_emu

// ---------------------------------------------------------------------------------------------
// keywords

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static
#define __managed__
#define __grid_constant__
// __shared__ variables live once per process (static storage); blocks run one after another, so
// that is one copy per block. _build.py turns `extern __shared__ T name[];` into the per-launch
// dynamic buffer.
#define __shared__ static
#define AF_EMU_CAT2(a, b) a##b
#define AF_EMU_CAT(a, b) AF_EMU_CAT2(a, b)
#define AF_EMU_SHARED_VAR(name)                                                                   \
    [[maybe_unused]] static const bool AF_EMU_CAT(af_emu_shared_, __COUNTER__) =                  \
        ::af_emu::af_emu_shared_var(&(name), sizeof(name), #name);
#define __CUDA_ARCH__ 900
#define __CUDACC_RTC__ 1

using af_emu::dim3;
using af_emu::uint3;

#define threadIdx (::af_emu::thread_idx())
#define blockIdx (::af_emu::block_idx())
#define blockDim (::af_emu::block_dim())
#define gridDim (::af_emu::grid_dim())
#define warpSize 32

// ---------------------------------------------------------------------------------------------
// synchronisation

inline void __syncthreads(int line = __builtin_LINE()) { af_emu::af_emu_barrier(0, 0, line); }
inline int __syncthreads_count(int p, int line = __builtin_LINE()) {
    return af_emu::af_emu_barrier(1, p != 0, line);
}
inline int __syncthreads_and(int p, int line = __builtin_LINE()) {
    return af_emu::af_emu_barrier(2, p != 0, line);
}
inline int __syncthreads_or(int p, int line = __builtin_LINE()) {
    return af_emu::af_emu_barrier(3, p != 0, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, int line = __builtin_LINE()) {
    af_emu::af_emu_warp_op(af_emu::OP_SYNCWARP, mask, 0, 0, 0, 32, line);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned __activemask() { return af_emu::af_emu_activemask(); }
inline void __trap(int line = __builtin_LINE()) { af_emu::af_emu_trap("__trap()", line); }
inline void __brkpt(int line = __builtin_LINE()) { af_emu::af_emu_trap("__brkpt()", line); }

// ---------------------------------------------------------------------------------------------
// warp collectives

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, int line = __builtin_LINE()) {
    return af_emu::from_bits<T>(af_emu::af_emu_warp_op(
        af_emu::OP_SHFL_IDX, mask, af_emu::to_bits(v), sizeof(T), src, width, line));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                        int line = __builtin_LINE()) {
    return af_emu::from_bits<T>(af_emu::af_emu_warp_op(
        af_emu::OP_SHFL_UP, mask, af_emu::to_bits(v), sizeof(T), (int)delta, width, line));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                          int line = __builtin_LINE()) {
    return af_emu::from_bits<T>(af_emu::af_emu_warp_op(
        af_emu::OP_SHFL_DOWN, mask, af_emu::to_bits(v), sizeof(T), (int)delta, width, line));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         int line = __builtin_LINE()) {
    return af_emu::from_bits<T>(af_emu::af_emu_warp_op(
        af_emu::OP_SHFL_XOR, mask, af_emu::to_bits(v), sizeof(T), lane_mask, width, line));
}
inline unsigned __ballot_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
    return (unsigned)af_emu::af_emu_warp_op(af_emu::OP_BALLOT, mask, pred != 0, 4, 0, 32, line);
}
inline int __any_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
    return (int)af_emu::af_emu_warp_op(af_emu::OP_ANY, mask, pred != 0, 4, 0, 32, line);
}
inline int __all_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
    return (int)af_emu::af_emu_warp_op(af_emu::OP_ALL, mask, pred != 0, 4, 0, 32, line);
}
inline int __uni_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
    const unsigned b = __ballot_sync(mask, pred, line);
    return b == 0u || b == mask;
}
template <class T>
inline unsigned __match_any_sync(unsigned mask, T v, int line = __builtin_LINE()) {
    return (unsigned)af_emu::af_emu_warp_op(af_emu::OP_MATCH_ANY, mask, af_emu::to_bits(v),
                                            sizeof(T), 0, 32, line);
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T v, int* pred, int line = __builtin_LINE()) {
    const unsigned r = (unsigned)af_emu::af_emu_warp_op(af_emu::OP_MATCH_ALL, mask,
                                                        af_emu::to_bits(v), sizeof(T), 0, 32, line);
    *pred = r != 0u;
    return r;
}
#define AF_EMU_REDUX(name, op, T)                                                                 \
    inline T name(unsigned mask, T v, int line = __builtin_LINE()) {                              \
        return (T)af_emu::af_emu_warp_op(op, mask, (unsigned)v, 4, 0, 32, line);                  \
    }
AF_EMU_REDUX(__reduce_add_sync, af_emu::OP_REDUX_ADD, unsigned)
AF_EMU_REDUX(__reduce_add_sync, af_emu::OP_REDUX_ADD, int)
AF_EMU_REDUX(__reduce_min_sync, af_emu::OP_REDUX_UMIN, unsigned)
AF_EMU_REDUX(__reduce_min_sync, af_emu::OP_REDUX_MIN, int)
AF_EMU_REDUX(__reduce_max_sync, af_emu::OP_REDUX_UMAX, unsigned)
AF_EMU_REDUX(__reduce_max_sync, af_emu::OP_REDUX_MAX, int)
AF_EMU_REDUX(__reduce_and_sync, af_emu::OP_REDUX_AND, unsigned)
AF_EMU_REDUX(__reduce_or_sync, af_emu::OP_REDUX_OR, unsigned)
AF_EMU_REDUX(__reduce_xor_sync, af_emu::OP_REDUX_XOR, unsigned)
#undef AF_EMU_REDUX

// ---------------------------------------------------------------------------------------------
// atomics (32 and 64 bit, and float/double add), through std::atomic_ref

#define AF_EMU_ATOMIC(name, T, expr)                                                              \
    inline T name(T* p, T v) {                                                                    \
        return af_emu::atomic_rmw(p, [v](T o) { return (T)(expr); });                             \
    }
#define AF_EMU_ATOMIC_ALL(T)                                                                      \
    AF_EMU_ATOMIC(atomicAdd, T, o + v)                                                            \
    AF_EMU_ATOMIC(atomicSub, T, o - v)                                                            \
    AF_EMU_ATOMIC(atomicMin, T, v < o ? v : o)                                                    \
    AF_EMU_ATOMIC(atomicMax, T, v > o ? v : o)                                                    \
    AF_EMU_ATOMIC(atomicExch, T, v)                                                               \
    AF_EMU_ATOMIC(atomicAnd, T, o & v)                                                            \
    AF_EMU_ATOMIC(atomicOr, T, o | v)                                                             \
    AF_EMU_ATOMIC(atomicXor, T, o ^ v)
AF_EMU_ATOMIC_ALL(int)
AF_EMU_ATOMIC_ALL(unsigned int)
AF_EMU_ATOMIC_ALL(unsigned long long)
AF_EMU_ATOMIC_ALL(long long)
AF_EMU_ATOMIC(atomicAdd, float, o + v)
AF_EMU_ATOMIC(atomicAdd, double, o + v)
AF_EMU_ATOMIC(atomicExch, float, v)
AF_EMU_ATOMIC(atomicExch, double, v)
#undef AF_EMU_ATOMIC_ALL
#undef AF_EMU_ATOMIC
inline unsigned atomicInc(unsigned* p, unsigned v) {
    return af_emu::atomic_rmw(p, [v](unsigned o) { return o >= v ? 0u : o + 1u; });
}
inline unsigned atomicDec(unsigned* p, unsigned v) {
    return af_emu::atomic_rmw(p, [v](unsigned o) { return (o == 0u || o > v) ? v : o - 1u; });
}
template <class T> AF_EMU_NOSAN T af_emu_cas(T* p, T compare, T v) {
    af_emu::af_emu_note_atomic(p, sizeof(T));
    std::atomic_ref<T> r(*p);
    r.compare_exchange_strong(compare, v, std::memory_order_seq_cst);
    return compare;  // the old value, whether or not it was replaced
}
inline int atomicCAS(int* p, int c, int v) { return af_emu_cas(p, c, v); }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { return af_emu_cas(p, c, v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c,
                                    unsigned long long v) {
    return af_emu_cas(p, c, v);
}
inline unsigned short atomicCAS(unsigned short* p, unsigned short c, unsigned short v) {
    return af_emu_cas(p, c, v);
}

// ---------------------------------------------------------------------------------------------
// loads and stores with cache hints: plain accesses here

template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---------------------------------------------------------------------------------------------
// bit reinterpretation, integer intrinsics

inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
inline int __double2hiint(double v) { return (int)(std::bit_cast<unsigned long long>(v) >> 32); }
inline int __double2loint(double v) { return (int)std::bit_cast<unsigned long long>(v); }
inline double __hiloint2double(int hi, int lo) {
    return std::bit_cast<double>(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo);
}

inline int __popc(unsigned v) { return std::popcount(v); }
inline int __popcll(unsigned long long v) { return std::popcount(v); }
inline int __clz(int v) { return std::countl_zero((unsigned)v); }
inline int __clzll(long long v) { return std::countl_zero((unsigned long long)v); }
inline int __ffs(int v) { return v == 0 ? 0 : std::countr_zero((unsigned)v) + 1; }
inline int __ffsll(long long v) {
    return v == 0 ? 0 : std::countr_zero((unsigned long long)v) + 1;
}
inline unsigned __brev(unsigned v) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned long long __brevll(unsigned long long v) {
    unsigned long long r = 0;
    for (int i = 0; i < 64; ++i) r |= ((v >> i) & 1ull) << (63 - i);
    return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
    return r;
}

// CUDA's overloaded integer min/max
template <class A, class B> inline auto min(A a, B b) -> std::common_type_t<A, B> {
    return b < a ? b : a;
}
template <class A, class B> inline auto max(A a, B b) -> std::common_type_t<A, B> {
    return a < b ? b : a;
}

// ---------------------------------------------------------------------------------------------
// floating point: IEEE round-to-nearest on the host (compiled with -ffp-contract=off)

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : (v == v ? v : 0.0f)); }
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __log2f(float v) { return std::log2(v); }
inline float __sinf(float v) { return std::sin(v); }
inline float __cosf(float v) { return std::cos(v); }
inline float __powf(float a, float b) { return std::pow(a, b); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
inline float __int2float_rn(int v) { return (float)v; }
inline double __int2double_rn(int v) { return (double)v; }
inline float __ll2float_rn(long long v) { return (float)v; }
inline double __ll2double_rn(long long v) { return (double)v; }
inline double __ull2double_rn(unsigned long long v) { return (double)v; }
inline int __float2int_rz(float v) { return (int)v; }
inline int __double2int_rz(double v) { return (int)v; }
inline long long __double2ll_rz(double v) { return (long long)v; }
inline float __double2float_rn(double v) { return (float)v; }
inline int __float2int_rn(float v) { return (int)std::nearbyint(v); }  // ties to even
inline unsigned __float2uint_rn(float v) { return (unsigned)std::nearbyint(v); }
inline int __double2int_rn(double v) { return (int)std::nearbyint(v); }
inline long long __float2ll_rn(float v) { return (long long)std::nearbyint(v); }
inline long long __double2ll_rn(double v) { return (long long)std::nearbyint(v); }
inline float __frsqrt_rn(float v) { return 1.0f / std::sqrt(v); }
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) << (s & 31u) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s & 31u));
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned s) {
    return s >= 32u ? lo : __funnelshift_l(lo, hi, s);
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned s) {
    return s >= 32u ? hi : __funnelshift_r(lo, hi, s);
}
inline long long clock64() {  // nanoseconds of the host's steady clock
    return (long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
inline void __nanosleep(unsigned) {}

// ---------------------------------------------------------------------------------------------
// binary16 as raw bits (exact conversions, round to nearest even)

namespace af_emu {
inline float half_bits_to_float(unsigned short h) {
    const unsigned sign = (unsigned)(h >> 15) << 31;
    const unsigned exp = (h >> 10) & 0x1fu;
    const unsigned man = h & 0x3ffu;
    if (exp == 0x1fu) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
    if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
    // zero or subnormal: man * 2^-24, exact in float
    const float mag = (float)man * 0x1p-24f;
    return sign ? -mag : mag;
}
inline unsigned short float_to_half_bits(float f) {
    const unsigned u = std::bit_cast<unsigned>(f);
    const unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
    const unsigned a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow
    if (a < 0x38800000u) {                         // below 2^-14: subnormal half (or zero)
        const float mag = std::bit_cast<float>(a) * 0x1p24f;  // exact scaling
        return sign | (unsigned short)std::nearbyint(mag);
    }
    const unsigned e = (a >> 23) - 112u, m = a & 0x7fffffu;
    unsigned h = (e << 10) | (m >> 13);
    const unsigned rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return sign | (unsigned short)h;
}
inline float cvt_f32_f16(unsigned short h) { return half_bits_to_float(h); }
inline unsigned short cvt_rn_f16_f32(float f) { return float_to_half_bits(f); }
}  // namespace af_emu

struct __half {
    unsigned short __x;
};
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline short __half_as_short(__half h) { return (short)h.__x; }
inline __half __short_as_half(short b) { return __half{(unsigned short)b}; }
inline float __half2float(__half h) { return af_emu::half_bits_to_float(h.__x); }
inline __half __float2half(float f) { return __half{af_emu::float_to_half_bits(f)}; }
inline __half __float2half_rn(float f) { return __half{af_emu::float_to_half_bits(f)}; }

// ---------------------------------------------------------------------------------------------
// vector types

#define AF_EMU_VEC(T, name, A)                                                                    \
    struct __attribute__((aligned(A))) name##1 { T x; };                                          \
    struct __attribute__((aligned(2 * A))) name##2 { T x, y; };                                   \
    struct __attribute__((aligned(4 * A > 16 ? 16 : 4 * A))) name##4 { T x, y, z, w; };           \
    inline name##1 make_##name##1(T x) { return {x}; }                                            \
    inline name##2 make_##name##2(T x, T y) { return {x, y}; }                                    \
    inline name##4 make_##name##4(T x, T y, T z, T w) { return {x, y, z, w}; }
AF_EMU_VEC(float, float, 4)
AF_EMU_VEC(int, int, 4)
AF_EMU_VEC(unsigned int, uint, 4)
AF_EMU_VEC(short, short, 2)
AF_EMU_VEC(unsigned short, ushort, 2)
AF_EMU_VEC(char, char, 1)
AF_EMU_VEC(unsigned char, uchar, 1)
AF_EMU_VEC(double, double, 8)
AF_EMU_VEC(long long, longlong, 8)
AF_EMU_VEC(unsigned long long, ulonglong, 8)
#undef AF_EMU_VEC
#define AF_EMU_VEC3(T, name)                                                                      \
    struct name##3 {                                                                              \
        T x, y, z;                                                                                \
    };                                                                                            \
    inline name##3 make_##name##3(T x, T y, T z) { return {x, y, z}; }
AF_EMU_VEC3(float, float)
AF_EMU_VEC3(int, int)
AF_EMU_VEC3(short, short)
AF_EMU_VEC3(unsigned short, ushort)
AF_EMU_VEC3(char, char)
AF_EMU_VEC3(unsigned char, uchar)
AF_EMU_VEC3(double, double)
AF_EMU_VEC3(long long, longlong)
AF_EMU_VEC3(unsigned long long, ulonglong)
#undef AF_EMU_VEC3
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

// ---------------------------------------------------------------------------------------------
// launchers (one per name expression, generated by _build.py)

#include <utility>

namespace af_emu {
extern "C" int af_emu_launch(const void* desc, void (*invoke)(void*, void**), void* fn,
                             void** args);

template <class... P, std::size_t... I>
AF_EMU_NOSAN void call_with(void (*f)(P...), void** a, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<P>*>(a[I])...);
}
template <class... P> AF_EMU_NOSAN void invoke(void* fn, void** a) {
    call_with(reinterpret_cast<void (*)(P...)>(fn), a, std::index_sequence_for<P...>{});
}
template <class... P> int launch(const void* desc, void (*f)(P...), void** args) {
    return af_emu_launch(desc, &invoke<P...>, reinterpret_cast<void*>(f), args);
}
// parameter sizes and which are pointers, for the Python side's argument checks
template <class... P> int describe(void (*)(P...), int* sizes, int* pointers, int cap) {
    const int s[] = {(int)sizeof(P)..., 0};
    const int p[] = {(int)std::is_pointer_v<P>..., 0};
    for (int i = 0; i < (int)sizeof...(P) && i < cap; ++i) {
        sizes[i] = s[i];
        pointers[i] = p[i];
    }
    return (int)sizeof...(P);
}
}  // namespace af_emu
