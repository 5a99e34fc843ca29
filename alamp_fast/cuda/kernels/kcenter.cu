// k-center greedy: one fused pass over the features per step.
//
// kcenter_step reads every candidate row once, computes its squared distance to the newest
// center in float64 (as alamp_fast/coreset.py), lowers the running nearest distance min_d2,
// and takes the argmax of the updated min_d2 (lowest row on ties) through per-block partials;
// the last block to finish reduces the partials, records the pick, retires it (min_d2 = -1)
// and writes the next center, so the host launches b - 1 kernels and never waits on one.
// min_d2 < 0 marks labeled and already chosen rows, which are skipped without reading them.
//
// dist_to_rows recomputes, exactly in float64, the distance of each row to the labeled row the
// GEMM found nearest (the GEMM's |l|^2 - 2 x.l only chooses it).
#include "common.cuh"

#define AF_NONE_ARG 0x7fffffffffffffffLL

// The lane's share of |row - c|^2 over vectors first, first + step, ...: batches of four
// loads issued before the first use (as accumulate_row in rowwise.cu).
template <typename T, int VEC, typename C>
__device__ __forceinline__ double partial_d2(const T* __restrict__ row, const C* c, int nvec,
                                             int first, int step) {
    double s = 0.0;
    for (int q = first; q < nvec; q += 4 * step) {
        Vec<T, VEC> x[4];
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (q + u * step < nvec) x[u] = load_vec<T, VEC>(row, q + u * step);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            if (q + u * step < nvec) {
                const int j0 = (q + u * step) * VEC;
#pragma unroll
                for (int e = 0; e < VEC; ++e) {
                    const double t = (double)widen(x[u].v[e]) - (double)widen(c[j0 + e]);
                    s += t * t;
                }
            }
        }
    }
    return s;
}

// (best, arg): larger distance wins, equal distances go to the lower row.
__device__ __forceinline__ void merge_best(double& best, long long& arg, double ob, long long oa) {
    if (ob > best || (ob == best && oa < arg)) {
        best = ob;
        arg = oa;
    }
}

template <typename T, int VEC, bool SMEM>
__global__ void __launch_bounds__(256)
    kcenter_step(const T* __restrict__ X, long long n, int d, int group,
                 double* __restrict__ min_d2, double* __restrict__ center,
                 long long* __restrict__ chosen, long long step,
                 double* __restrict__ part_best, long long* __restrict__ part_arg,
                 unsigned int* __restrict__ counter) {
    extern __shared__ double smem_center[];
    __shared__ double wbest[32];
    __shared__ long long warg[32];
    __shared__ bool is_last;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int sub = lane & (group - 1);
    const int rows_per_warp = 32 / group;
    const int rows_per_block = (blockDim.x >> 5) * rows_per_warp;
    const int nvec = d / VEC;

    const double* c = center;
    if constexpr (SMEM) {
        for (int j = threadIdx.x; j < d; j += blockDim.x) smem_center[j] = center[j];
        __syncthreads();
        c = smem_center;
    }

    double best = -1.0;
    long long arg = AF_NONE_ARG;
    // uniform per warp (see rows_group in rowwise.cu): every lane reaches the shuffles
    for (long long r0 = (long long)blockIdx.x * rows_per_block + warp * rows_per_warp; r0 < n;
         r0 += (long long)gridDim.x * rows_per_block) {
        const long long row = r0 + lane / group;
        double m = row < n ? min_d2[row] : -1.0;
        double s = 0.0;
        if (m >= 0.0) s = partial_d2<T, VEC>(X + row * d, c, nvec, sub, group);
        for (int off = group >> 1; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (m >= 0.0) {
            if (s < m) {
                m = s;
                if (sub == 0) min_d2[row] = s;
            }
            merge_best(best, arg, m, row);  // rows of a group rise: strict > keeps the lowest
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        const double ob = __shfl_xor_sync(0xffffffffu, best, off);
        const long long oa = __shfl_xor_sync(0xffffffffu, arg, off);
        merge_best(best, arg, ob, oa);
    }
    if (lane == 0) {
        wbest[warp] = best;
        warg[warp] = arg;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) merge_best(best, arg, wbest[w], warg[w]);
        part_best[blockIdx.x] = best;
        part_arg[blockIdx.x] = arg;
        __threadfence();  // partials visible before the ticket is taken
        is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!is_last) return;

    // the last block: every other block has finished and read the center
    best = -1.0;
    arg = AF_NONE_ARG;
    for (int b = threadIdx.x; b < (int)gridDim.x; b += blockDim.x)
        merge_best(best, arg, __ldcg(part_best + b), __ldcg(part_arg + b));
    for (int off = 16; off > 0; off >>= 1) {
        const double ob = __shfl_xor_sync(0xffffffffu, best, off);
        const long long oa = __shfl_xor_sync(0xffffffffu, arg, off);
        merge_best(best, arg, ob, oa);
    }
    __syncthreads();  // wbest/warg reuse
    if (lane == 0) {
        wbest[warp] = best;
        warg[warp] = arg;
    }
    __syncthreads();
    __shared__ long long next;
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) merge_best(best, arg, wbest[w], warg[w]);
        next = arg;
        chosen[step] = arg;
        min_d2[arg] = -1.0;
        *counter = 0u;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < d; j += blockDim.x) center[j] = (double)widen(X[next * d + j]);
}

// out[i] = |X[i] - L[nearest[i]]|^2 in float64, L the labeled rows (same dtype as X).
template <typename T, int VEC>
__global__ void __launch_bounds__(256)
    dist_to_rows(const T* __restrict__ X, long long n, int d, int group, const T* __restrict__ L,
                 const long long* __restrict__ nearest, double* __restrict__ out) {
    const int lane = threadIdx.x & 31;
    const int sub = lane & (group - 1);
    const int rows_per_warp = 32 / group;
    const int rows_per_block = (blockDim.x >> 5) * rows_per_warp;
    const int nvec = d / VEC;
    for (long long r0 = (long long)blockIdx.x * rows_per_block + (threadIdx.x >> 5) * rows_per_warp;
         r0 < n; r0 += (long long)gridDim.x * rows_per_block) {
        const long long row = r0 + lane / group;
        double s = 0.0;
        if (row < n) s = partial_d2<T, VEC>(X + row * d, L + nearest[row] * d, nvec, sub, group);
        for (int off = group >> 1; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (sub == 0 && row < n) out[row] = s;
    }
}

#ifdef ALAMP_FAST_INSTANTIATE
#define AF_KC(T, VEC)                                                                             \
    template __global__ void kcenter_step<T, VEC, true>(const T*, long long, int, int, double*,    \
                                                        double*, long long*, long long, double*,   \
                                                        long long*, unsigned int*);                \
    template __global__ void kcenter_step<T, VEC, false>(const T*, long long, int, int, double*,   \
                                                         double*, long long*, long long, double*,  \
                                                         long long*, unsigned int*);               \
    template __global__ void dist_to_rows<T, VEC>(const T*, long long, int, int, const T*,         \
                                                  const long long*, double*);
AF_KC(f16bits, 1)
AF_KC(f16bits, 2)
AF_KC(f16bits, 4)
AF_KC(f16bits, 8)
AF_KC(float, 1)
AF_KC(float, 2)
AF_KC(float, 4)
AF_KC(double, 1)
AF_KC(double, 2)
#endif
