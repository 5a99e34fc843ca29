// Row reductions over an (n, C) probability matrix, one pass: top-2 margin + argmax (with the
// alamp score fused in when the previous margins are given), least confidence, entropy.
//
// Semantics are those of the CPU kernels in alamp_fast/uncertainty.py and alamp.py, bit for
// bit where they promise it:
//   * float16 is widened exactly to float32; the margin top1 - top2 is one subtraction in
//     float32 (float64 for float64 input), so it equals the CPU's value exactly;
//   * top_class is the lowest index holding the maximum (np.argmax);
//   * a row holding NaN/Inf (entropy: also a negative entry) is reported through first_bad[0],
//     the smallest such row, so the caller raises the CPU's error without a second pass.
//
// Two layouts, one accumulation code:
//   rows_group: `group` lanes (1..32, a power of two) per row, several rows per warp. Each lane
//     walks its vectors of the row in increasing index order with four loads in flight, then
//     the group merges by shuffles. For small C a warp covers several rows with one
//     coalesced access per row segment; for large C a whole warp shares a row.
//   rows_block: one 256-thread block per row, for very long rows with too few rows to fill
//     the GPU with warps.
// Merging keeps (value, index) order: the larger value wins, equal values go to the lower
// index, so the result does not depend on how the row was split.
//
// Entropy is a float64 sum, whose rounding depends on the order of the additions; its order is
// fixed by the row alone (not by the layout, the vector width, the lanes per row or the chunk
// a streamed row came in), so every path gives the same bits:
//   * the row is cut into segments of AF_SEG = 8 consecutive entries (a vector never straddles
//     two: VEC divides 8); a segment's sum s = s - p log p runs from 0 in index order;
//   * slot t (0..31) sums segments t, t + 32, t + 64, ... in that order, from 0;
//   * the 32 slots are combined by the butterfly v[t] = v[t] + v[t ^ o], o = 16, 8, 4, 2, 1,
//     and the row's entropy is v[0] (the same tree whether a level runs inside a lane, across
//     lanes by shuffles, or through shared memory).
#include "common.cuh"

#define MODE_TOP2 0
#define MODE_LEASTCONF 1
#define MODE_ENTROPY 2

template <typename A, int MODE> struct RowOp;

// top-2: running (top, second, first argmax); second = max(second, min(top, v)) is the
// branch-free form of "if v > top: second = top; elif v > second: second = v".
template <typename A> struct RowOp<A, MODE_TOP2> {
    A a, b;
    int k, bad;
    __device__ __forceinline__ void init() {
        a = neg_inf<A>();
        b = neg_inf<A>();
        k = AF_INT_MAX;
        bad = 0;
    }
    template <typename T> __device__ __forceinline__ void push(T raw, int j) {
        A v = widen(raw);
        bad |= nonfinite(raw);
        if (v > a) k = j;  // strict: the first index of the maximum stays
        b = fmax_(b, fmin_(a, v));
        a = fmax_(a, v);
    }
    __device__ __forceinline__ void merge(A oa, A ob, int ok, int obad) {
        const bool other = oa > a || (oa == a && ok < k);
        const A loser_top = other ? a : oa;
        const A winner_second = other ? ob : b;
        b = fmax_(winner_second, loser_top);
        if (other) {
            a = oa;
            k = ok;
        }
        bad |= obad;
    }
    __device__ __forceinline__ void merge(const RowOp& o) { merge(o.a, o.b, o.k, o.bad); }
    __device__ __forceinline__ void shfl_merge(int off) {
        A oa = __shfl_xor_sync(0xffffffffu, a, off);
        A ob = __shfl_xor_sync(0xffffffffu, b, off);
        int ok = __shfl_xor_sync(0xffffffffu, k, off);
        int obad = __shfl_xor_sync(0xffffffffu, bad, off);
        merge(oa, ob, ok, obad);
    }
};

template <typename A> struct RowOp<A, MODE_LEASTCONF> {
    A a;
    int bad;
    __device__ __forceinline__ void init() {
        a = neg_inf<A>();
        bad = 0;
    }
    template <typename T> __device__ __forceinline__ void push(T raw, int) {
        bad |= nonfinite(raw);
        a = fmax_(a, widen(raw));
    }
    __device__ __forceinline__ void merge(const RowOp& o) {
        a = fmax_(a, o.a);
        bad |= o.bad;
    }
    __device__ __forceinline__ void shfl_merge(int off) {
        a = fmax_(a, __shfl_xor_sync(0xffffffffu, a, off));
        bad |= __shfl_xor_sync(0xffffffffu, bad, off);
    }
};

// entropy in float64 whatever the input, as the CPU kernel; 0 log 0 = 0; a negative entry or
// NaN/Inf makes the row bad. The product is rounded before the subtraction (no FMA), as numba.
// Only the running sum of one segment lives here (see the order above); rows_group and
// rows_block combine the segments.
template <typename A> struct RowOp<A, MODE_ENTROPY> {
    double s;
    int bad;
    __device__ __forceinline__ void init() {
        s = 0.0;
        bad = 0;
    }
    template <typename T> __device__ __forceinline__ void push(T raw, int) {
        const double p = (double)widen(raw);
        if (!(p >= 0.0 && p < AF_INF_D))
            bad = 1;
        else if (p > 0.0)
            s = __dsub_rn(s, __dmul_rn(p, log(p)));
    }
};

#define AF_SEG 8  // entries per entropy segment: a multiple of every vector width

// Sum of segment g of a row of C entries (its entries in index order, from 0); bad |= a
// negative, NaN or Inf entry.
template <typename T, int VEC>
__device__ __forceinline__ double segment_entropy(const T* __restrict__ row, int C, int g,
                                                  int& bad) {
    RowOp<double, MODE_ENTROPY> st;
    st.init();
    const int q0 = g * (AF_SEG / VEC);
    const int q1 = min(C, (g + 1) * AF_SEG) / VEC;
    for (int q = q0; q < q1; ++q) {
        const Vec<T, VEC> x = load_vec<T, VEC>(row, q);
#pragma unroll
        for (int e = 0; e < VEC; ++e) st.push(x.v[e], 0);
    }
    bad |= st.bad;
    return st.s;
}

// The group layout's share of a row's entropy: lane `sub` of `group` owns slots sub + group*i
// (i < 32 / group); it sums each slot's segments in order, then runs the butterfly levels
// o >= group inside the lane. Returns slot `sub`'s value after those levels; the caller runs
// the levels o < group by shuffles.
template <typename T, int VEC>
__device__ __forceinline__ double group_entropy(const T* __restrict__ row, int C, int sub,
                                                int group, int& bad) {
    const int nseg = (C + AF_SEG - 1) / AF_SEG;
    const int k = 32 / group;
    double acc[32];
#pragma unroll 1
    for (int i = 0; i < k; ++i) {
        double v = 0.0;
        for (int g = sub + group * i; g < nseg; g += 32)
            v = __dadd_rn(v, segment_entropy<T, VEC>(row, C, g, bad));
        acc[i] = v;
    }
#pragma unroll 1
    for (int m = k >> 1; m > 0; m >>= 1)
#pragma unroll 1
        for (int i = 0; i < m; ++i) acc[i] = __dadd_rn(acc[i], acc[i + m]);
    return acc[0];
}

template <typename T, int VEC, class Op>
__device__ __forceinline__ void push_vec(Op& st, const Vec<T, VEC>& x, int j0) {
#pragma unroll
    for (int e = 0; e < VEC; ++e) st.push(x.v[e], j0 + e);
}

// Vectors first, first + step, ... of one row, in increasing index order. Loads go in batches
// of four, all issued before the first is used (predicated at the row's end), so a lane keeps
// up to 4 x 16 bytes in flight even when its share of a short row is only 3 vectors.
template <typename T, int VEC, class Op>
__device__ __forceinline__ void accumulate_row(Op& st, const T* __restrict__ row, int nvec,
                                               int first, int step) {
    for (int q = first; q < nvec; q += 4 * step) {
        Vec<T, VEC> x[4];
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (q + u * step < nvec) x[u] = load_vec<T, VEC>(row, q + u * step);
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (q + u * step < nvec) push_vec<T, VEC>(st, x[u], (q + u * step) * VEC);
    }
}

// Write one row's results. prev/score: the fused alamp score (prev - m) / (prev + m) in P
// (float32, or float64 when either the margin or prev is float64), 0 where prev + m == 0;
// a NaN/Inf/negative prev, or an Inf margin, is reported through first_bad[1].
template <int MODE, bool TOP, bool FUSE, typename A, typename P>
__device__ __forceinline__ void finish_row(const RowOp<A, MODE>& st, long long row,
                                           A* __restrict__ out, long long* __restrict__ top,
                                           const P* __restrict__ prev, P* __restrict__ score,
                                           unsigned long long* __restrict__ first_bad) {
    if (st.bad) report_row(first_bad, row);
    if constexpr (MODE == MODE_TOP2) {
        const A m = st.a - st.b;
        out[row] = m;
        if constexpr (TOP) top[row] = st.k;
        if constexpr (FUSE) {
            const P p = prev[row];
            const P c = (P)m;
            const P s = p + c;
            score[row] = s != (P)0 ? (p - c) / s : (P)0;
            // both inputs of the score are checked, as alamp_score checks them: the new margin
            // overflows to Inf for finite rows like float32 [3e38, -3e38]
            if (!(p >= (P)0 && c >= (P)0 && p < pos_inf<P>() && c < pos_inf<P>()))
                report_row(first_bad + 1, row);
        }
    } else if constexpr (MODE == MODE_LEASTCONF) {
        out[row] = (A)1 - st.a;
    } else {
        out[row] = (A)st.s;
    }
}

template <typename T, int VEC, int MODE, bool TOP, bool FUSE, typename P>
__global__ void __launch_bounds__(256)
    rows_group(const T* __restrict__ probs, long long n, int C, int group,
               typename Acc<T>::type* __restrict__ out, long long* __restrict__ top,
               const P* __restrict__ prev, P* __restrict__ score,
               unsigned long long* __restrict__ first_bad) {
    typedef typename Acc<T>::type A;
    const int lane = threadIdx.x & 31;
    const int sub = lane & (group - 1);
    const int rows_per_warp = 32 / group;
    const int rows_per_block = (blockDim.x >> 5) * rows_per_warp;
    const int nvec = C / VEC;
    // the loop runs on the warp's first row, the same for all 32 lanes, so every lane reaches
    // the shuffles; the groups of rows past n merge empty states and write nothing
    for (long long r0 = (long long)blockIdx.x * rows_per_block + (threadIdx.x >> 5) * rows_per_warp;
         r0 < n; r0 += (long long)gridDim.x * rows_per_block) {
        const long long row = r0 + lane / group;
        RowOp<A, MODE> st;
        st.init();
        if constexpr (MODE == MODE_ENTROPY) {
            if (row < n) st.s = group_entropy<T, VEC>(probs + row * C, C, sub, group, st.bad);
            for (int off = group >> 1; off > 0; off >>= 1) {
                st.s = __dadd_rn(st.s, __shfl_xor_sync(0xffffffffu, st.s, off));
                st.bad |= __shfl_xor_sync(0xffffffffu, st.bad, off);
            }
        } else {
            if (row < n) accumulate_row<T, VEC>(st, probs + row * C, nvec, sub, group);
            for (int off = group >> 1; off > 0; off >>= 1) st.shfl_merge(off);
        }
        if (sub == 0 && row < n)
            finish_row<MODE, TOP, FUSE>(st, row, out, top, prev, score, first_bad);
    }
}

template <typename T, int VEC, int MODE, bool TOP, bool FUSE, typename P>
__global__ void __launch_bounds__(256)
    rows_block(const T* __restrict__ probs, long long n, int C, int group,
               typename Acc<T>::type* __restrict__ out, long long* __restrict__ top,
               const P* __restrict__ prev, P* __restrict__ score,
               unsigned long long* __restrict__ first_bad) {
    typedef typename Acc<T>::type A;
    __shared__ RowOp<A, MODE> parts[32];
    // entropy: one tile of segment sums (blockDim.x <= 256 by the launch bounds)
    __shared__ double seg_sums[MODE == MODE_ENTROPY ? 256 : 1];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    const int nvec = C / VEC;
    (void)group;
    for (long long row = blockIdx.x; row < n; row += gridDim.x) {
        if constexpr (MODE == MODE_ENTROPY) {
            // thread t computes segment base + t; warp 0's lane t adds the tile's segments
            // t, t + 32, ... to slot t in order; then the butterfly over the 32 slots
            const T* r = probs + row * C;
            const int nseg = (C + AF_SEG - 1) / AF_SEG;
            int bad = 0;
            double slot = 0.0;
            for (int base = 0; base < nseg; base += blockDim.x) {
                const int g = base + threadIdx.x;
                seg_sums[threadIdx.x] = g < nseg ? segment_entropy<T, VEC>(r, C, g, bad) : 0.0;
                __syncthreads();
                if (warp == 0)
                    for (int w = 0; w < nwarps && base + w * 32 + lane < nseg; ++w)
                        slot = __dadd_rn(slot, seg_sums[w * 32 + lane]);
                __syncthreads();  // seg_sums is refilled by the next tile
            }
            bad = __syncthreads_or(bad);
            if (warp == 0) {
                for (int off = 16; off > 0; off >>= 1)
                    slot = __dadd_rn(slot, __shfl_xor_sync(0xffffffffu, slot, off));
                if (lane == 0) {
                    RowOp<A, MODE> w;
                    w.s = slot;
                    w.bad = bad;
                    finish_row<MODE, TOP, FUSE>(w, row, out, top, prev, score, first_bad);
                }
            }
        } else {
            RowOp<A, MODE> st;
            st.init();
            accumulate_row<T, VEC>(st, probs + row * C, nvec, threadIdx.x, blockDim.x);
            for (int off = 16; off > 0; off >>= 1) st.shfl_merge(off);
            if (lane == 0) parts[warp] = st;
            __syncthreads();
            if (warp == 0) {
                RowOp<A, MODE> w;
                if (lane < nwarps)
                    w = parts[lane];
                else
                    w.init();
                for (int off = 16; off > 0; off >>= 1) w.shfl_merge(off);
                if (lane == 0) finish_row<MODE, TOP, FUSE>(w, row, out, top, prev, score, first_bad);
            }
            __syncthreads();  // parts[] is reused by the next row
        }
    }
}

#ifdef ALAMP_FAST_INSTANTIATE
// nvcc compile check (CMakeLists.txt): every instantiation the Python launcher can ask for.
#define AF_ROWS(T, VEC, MODE, TOP, FUSE, P)                                                       \
    template __global__ void rows_group<T, VEC, MODE, TOP, FUSE, P>(                               \
        const T*, long long, int, int, Acc<T>::type*, long long*, const P*, P*,                    \
        unsigned long long*);                                                                      \
    template __global__ void rows_block<T, VEC, MODE, TOP, FUSE, P>(                               \
        const T*, long long, int, int, Acc<T>::type*, long long*, const P*, P*,                    \
        unsigned long long*);
#define AF_ROWS_MODES(T, VEC)                                                                      \
    AF_ROWS(T, VEC, MODE_TOP2, true, false, float)                                                 \
    AF_ROWS(T, VEC, MODE_TOP2, false, false, float)                                                \
    AF_ROWS(T, VEC, MODE_TOP2, true, true, float)                                                  \
    AF_ROWS(T, VEC, MODE_TOP2, true, true, double)                                                 \
    AF_ROWS(T, VEC, MODE_LEASTCONF, false, false, float)                                           \
    AF_ROWS(T, VEC, MODE_ENTROPY, false, false, float)
AF_ROWS_MODES(f16bits, 1)
AF_ROWS_MODES(f16bits, 2)
AF_ROWS_MODES(f16bits, 4)
AF_ROWS_MODES(f16bits, 8)
AF_ROWS_MODES(float, 1)
AF_ROWS_MODES(float, 2)
AF_ROWS_MODES(float, 4)
AF_ROWS_MODES(double, 1)
AF_ROWS_MODES(double, 2)
#endif
