// alamp score, elementwise: (prev - cur) / (prev + cur), 0 where prev + cur == 0.
//
// P is the output dtype (float32, or float64 if either input is float64); the caller casts
// both inputs to P first, exactly as alamp_fast/alamp.py does, so the value is the one numpy
// computes in P: one subtraction, one addition, one correctly rounded division (no fast-math:
// NVRTC and nvcc default to IEEE division). An input that is NaN, Inf or negative is reported
// through first_bad (its smallest index), checked in the same pass.
#include "common.cuh"

template <typename P>
__global__ void __launch_bounds__(256)
    alamp_score_kernel(const P* __restrict__ prev, const P* __restrict__ cur, long long n,
                       P* __restrict__ out, unsigned long long* __restrict__ first_bad) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const P p = prev[i];
        const P c = cur[i];
        const P s = p + c;
        out[i] = s != (P)0 ? (p - c) / s : (P)0;
        if (!(p >= (P)0 && c >= (P)0 && p < pos_inf<P>() && c < pos_inf<P>()))
            report_row(first_bad, i);
    }
}

#ifdef ALAMP_FAST_INSTANTIATE
template __global__ void alamp_score_kernel<float>(const float*, const float*, long long, float*,
                                                   unsigned long long*);
template __global__ void alamp_score_kernel<double>(const double*, const double*, long long,
                                                    double*, unsigned long long*);
#endif
