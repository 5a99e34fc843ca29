// Selection by score: order keys, exact top-b by radix select, compaction.
//
// The order of alamp_fast/selection.py is (score descending when largest, row index
// ascending): a total order. Here each row gets an unsigned key K whose unsigned order is that
// score order (float32 bits for float16/32 scores, float64 bits for float64 scores, the
// int64 itself for integer scores, so values beyond 2**53 keep their order), and the
// pair (K, row) is the composite key: unique per row, compared lexicographically. The b
// smallest composites are the selection; radix select finds the b-th smallest one digit at a
// time (a histogram pass and a one-block pick per digit, no host round trip), then one pass
// gathers every row at or below it. Only those b rows are sorted afterwards.
//
// state (unsigned long long[6]): 0 prefix of K decided so far, 1 prefix of the row decided so
// far, 2 rank still wanted within the rows matching the prefix (1-based), 3 done flag,
// 4 and 5 the threshold composite (K, row), inclusive, valid once done.
#include "common.cuh"

// Unsigned key in score order: flip the sign bit of non-negatives, all bits of negatives.
// -0.0 is made +0.0 first: they compare equal as floats, so they must tie here too.
__device__ __forceinline__ unsigned int order_key(float v, int largest) {
    unsigned int u = __float_as_uint(v);
    if ((u << 1) == 0u) u = 0u;
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return largest ? ~u : u;
}
__device__ __forceinline__ unsigned long long order_key(double v, int largest) {
    unsigned long long u = (unsigned long long)__double_as_longlong(v);
    if ((u << 1) == 0ULL) u = 0ULL;
    u = (u & 0x8000000000000000ULL) ? ~u : (u | 0x8000000000000000ULL);
    return largest ? ~u : u;
}

// int64 scores keep all 64 bits (as the CPU's int64 keys): flip the sign bit.
__device__ __forceinline__ unsigned long long order_key(long long v, int largest) {
    const unsigned long long u = (unsigned long long)v ^ 0x8000000000000000ULL;
    return largest ? ~u : u;
}
__device__ __forceinline__ long long widen(long long v) { return v; }
__device__ __forceinline__ bool nonfinite(long long) { return false; }

// keys[i] = order key of scores[i] (largest: bigger score -> smaller key); NaN/Inf reported.
template <typename S, typename K>
__global__ void __launch_bounds__(256)
    make_keys(const S* __restrict__ scores, long long n, int largest, K* __restrict__ keys,
              unsigned long long* __restrict__ first_bad) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const S s = scores[i];
        if (nonfinite(s)) report_row(first_bad, i);
        keys[i] = order_key(widen(s), largest);
    }
}

// Histogram of one digit of the composite (K, row) over the rows matching the prefix:
// the digit is `width` bits at `shift` of K (in_hi) or of the row index; mask_hi / mask_lo
// select the bits already decided. Block-local histogram in shared memory, then one atomic
// per non-empty bin. Float keys crowd into a few buckets in the first digits, so lanes of a
// warp holding the same digit add their count with one shared atomic (__match_any_sync).
template <typename K>
__global__ void __launch_bounds__(512)
    radix_hist(const K* __restrict__ keys, long long n, const unsigned long long* __restrict__ state,
               int in_hi, int shift, int width, unsigned long long mask_hi, unsigned int mask_lo,
               unsigned int* __restrict__ hist) {
    __shared__ unsigned int local[256];
    if (state[3]) return;  // an earlier digit settled the threshold
    const int nbins = 1 << width;
    for (int t = threadIdx.x; t < nbins; t += blockDim.x) local[t] = 0u;
    __syncthreads();
    const K pref_hi = (K)state[0];
    const unsigned int pref_lo = (unsigned int)state[1];
    const unsigned int dmask = (unsigned int)nbins - 1u;
    const int lane = threadIdx.x & 31;
    // uniform trip count per warp: __match_any_sync needs all 32 lanes
    for (long long base = (long long)blockIdx.x * blockDim.x + (threadIdx.x & ~31); base < n;
         base += (long long)gridDim.x * blockDim.x) {
        const long long i = base + lane;
        unsigned int d = 0xffffffffu;  // no bucket
        if (i < n) {
            const K hi = keys[i];
            const unsigned int lo = (unsigned int)i;
            if ((hi & (K)mask_hi) == pref_hi && (lo & mask_lo) == pref_lo)
                d = in_hi ? (unsigned int)(hi >> shift) & dmask : (lo >> shift) & dmask;
        }
        const unsigned int peers = __match_any_sync(0xffffffffu, d);
        if (d != 0xffffffffu && lane == __ffs(peers) - 1) atomicAdd(&local[d], __popc(peers));
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nbins; t += blockDim.x)
        if (local[t]) atomicAdd(&hist[t], local[t]);
}

// One block: pick the digit holding the wanted rank, extend the prefix, clear the histogram.
// When the whole bucket is wanted (or this was the last digit) the threshold is settled.
__global__ void radix_pick(unsigned int* __restrict__ hist, unsigned long long* __restrict__ state,
                           int in_hi, int shift, int width, int last) {
    __shared__ unsigned int h[256];
    const int nbins = 1 << width;
    if (state[3]) return;
    for (int t = threadIdx.x; t < nbins; t += blockDim.x) {
        h[t] = hist[t];
        hist[t] = 0u;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    unsigned long long want = state[2];
    unsigned long long before = 0;
    int d = 0;
    for (; d < nbins - 1; ++d) {
        if (before + h[d] >= want) break;
        before += h[d];
    }
    want -= before;
    const unsigned long long below = (1ULL << shift) - 1ULL;  // bits under this digit
    if (in_hi) {
        state[0] |= (unsigned long long)d << shift;
    } else {
        state[1] |= (unsigned long long)d << shift;
    }
    state[2] = want;
    if (h[d] == want || last) {
        // every matching row in this bucket is wanted: the threshold is the bucket's top
        if (in_hi) {
            state[4] = state[0] | below;
            state[5] = 0xffffffffULL;
        } else {
            state[4] = state[0];
            state[5] = state[1] | below;
        }
        state[3] = 1ULL;
    }
}

// Rows whose composite (K, row) is at or below the threshold, in no particular order; one
// atomic per warp.
template <typename K>
__global__ void __launch_bounds__(256)
    radix_collect(const K* __restrict__ keys, long long n, const unsigned long long* __restrict__ state,
                  long long* __restrict__ out, unsigned long long* __restrict__ count) {
    const K thr_hi = (K)state[4];
    const unsigned int thr_lo = (unsigned int)state[5];
    const int lane = threadIdx.x & 31;
    // uniform trip count per warp so the ballot sees all 32 lanes
    for (long long base = (long long)blockIdx.x * blockDim.x + (threadIdx.x & ~31); base < n;
         base += (long long)gridDim.x * blockDim.x) {
        const long long i = base + lane;
        bool take = false;
        if (i < n) {
            const K hi = keys[i];
            take = hi < thr_hi || (hi == thr_hi && (unsigned int)i <= thr_lo);
        }
        const unsigned int ballot = __ballot_sync(0xffffffffu, take);
        if (ballot == 0u) continue;
        unsigned long long first = 0;
        if (lane == 0) first = atomicAdd(count, (unsigned long long)__popc(ballot));
        first = __shfl_sync(0xffffffffu, first, 0);
        if (take) out[first + __popc(ballot & ((1u << lane) - 1u))] = i;
    }
}

#ifdef ALAMP_FAST_INSTANTIATE
template __global__ void make_keys<f16bits, unsigned int>(const f16bits*, long long, int,
                                                          unsigned int*, unsigned long long*);
template __global__ void make_keys<float, unsigned int>(const float*, long long, int,
                                                        unsigned int*, unsigned long long*);
template __global__ void make_keys<double, unsigned long long>(const double*, long long, int,
                                                              unsigned long long*,
                                                              unsigned long long*);
template __global__ void make_keys<long long, unsigned long long>(const long long*, long long,
                                                                 int, unsigned long long*,
                                                                 unsigned long long*);
template __global__ void radix_hist<unsigned int>(const unsigned int*, long long,
                                                  const unsigned long long*, int, int, int,
                                                  unsigned long long, unsigned int, unsigned int*);
template __global__ void radix_hist<unsigned long long>(const unsigned long long*, long long,
                                                        const unsigned long long*, int, int, int,
                                                        unsigned long long, unsigned int,
                                                        unsigned int*);
template __global__ void radix_collect<unsigned int>(const unsigned int*, long long,
                                                     const unsigned long long*, long long*,
                                                     unsigned long long*);
template __global__ void radix_collect<unsigned long long>(const unsigned long long*, long long,
                                                           const unsigned long long*, long long*,
                                                           unsigned long long*);
#endif
