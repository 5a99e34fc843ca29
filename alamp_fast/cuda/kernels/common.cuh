// Device helpers shared by the alamp_fast kernels.
//
// Every .cu file here compiles both with nvcc (CMakeLists.txt, a compile check for sm_80 and
// sm_90) and with NVRTC through cupy.RawModule. NVRTC has no host headers, so nothing is
// included: float16 travels as its raw bits (unsigned short) and is widened with one PTX
// instruction, and the loader (alamp_fast/cuda/_kernels.py) pastes this file in place of the
// #include line, so CuPy's on-disk cache keys on the full text.
#pragma once

#define AF_INF_F __int_as_float(0x7f800000)
#define AF_INF_D __longlong_as_double(0x7ff0000000000000LL)
#define AF_INT_MAX 0x7fffffff

typedef unsigned short f16bits;  // IEEE binary16, stored as numpy float16 stores it

// Accumulator type: float16 is computed in float32 (exactly widened), as the CPU kernels do.
template <typename T> struct Acc { typedef T type; };
template <> struct Acc<f16bits> { typedef float type; };

__device__ __forceinline__ float widen(f16bits h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

// NaN or +-Inf, by the exponent bits: exact whatever the floating-point flags.
__device__ __forceinline__ bool nonfinite(f16bits h) { return (h & 0x7c00u) == 0x7c00u; }
__device__ __forceinline__ bool nonfinite(float v) {
    return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;
}
__device__ __forceinline__ bool nonfinite(double v) {
    return ((unsigned long long)__double_as_longlong(v) & 0x7ff0000000000000ULL) ==
           0x7ff0000000000000ULL;
}

__device__ __forceinline__ float fmax_(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double fmax_(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float fmin_(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double fmin_(double a, double b) { return fmin(a, b); }

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -AF_INF_F; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -AF_INF_D; }
template <typename A> __device__ __forceinline__ A pos_inf();
template <> __device__ __forceinline__ float pos_inf<float>() { return AF_INF_F; }
template <> __device__ __forceinline__ double pos_inf<double>() { return AF_INF_D; }

// VEC consecutive elements loaded as one access (up to 16 bytes). The caller guarantees the
// alignment: the row length is a multiple of VEC and the base pointer is VEC*sizeof(T) aligned.
template <typename T, int VEC> struct alignas(sizeof(T) * VEC) Vec {
    T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Vec<T, VEC> load_vec(const T* __restrict__ p, int q) {
    return reinterpret_cast<const Vec<T, VEC>*>(p)[q];
}

// First offending row: rows are written by many threads; the smallest index wins, so the error
// message names the same row as the CPU kernels' (the first bad row).
__device__ __forceinline__ void report_row(unsigned long long* first_bad, long long row) {
    atomicMin(first_bad, (unsigned long long)row);
}
