"""Explicit SIMD for the top-2 row scan, as a numba intrinsic.

numba does not vectorise float max/argmax reductions (its LLVM pipeline keeps the scalar
compare-select chain, and the SLP vectoriser is off by default), so the plain row loop ran at
~170 ms for a 1e6 x 100 float32 matrix on 2 cores, 10x the memory floor. This intrinsic emits
the vector code directly: each of the 16 float32 (8 float64) lanes keeps its own
(top1, top2, argmax) over a strided subset of the columns, then the lanes are merged by a
shuffle tree. Measured on the 2-core dev machine: 24 ms at 1e6 x 100 float32 against a 17 ms
``P.sum()`` floor (``benchmarks/`` has the recorded numbers).

Tie rule: a lane updates its argmax only on a strictly larger value (first occurrence within
the lane), and the merge prefers the lower column index on equal values, so the result is the
first argmax of the row, as ``np.argmax``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["lanes_top2_64", "lanes_top2_32", "lanes_top2_16", "as_float", "HAS_F16C"]


def _host_has_f16c() -> bool:
    """Whether LLVM may emit F16C conversions here (else fpext half would call a runtime
    helper the JIT does not link): the host CPU's features, unless numba is told to
    compile for another CPU."""
    try:
        import llvmlite.binding as llvm
        from numba.core import config

        if config.CPU_NAME or config.CPU_FEATURES:
            return "+f16c" in (config.CPU_FEATURES or "")
        feats = llvm.get_host_cpu_features()
        return bool(feats.get("f16c", False))
    except Exception:  # pragma: no cover - any doubt: the software path
        return False


HAS_F16C = _host_has_f16c()


@intrinsic
def as_float(typingctx, x_t):
    """``x`` as the float the row scans compare: float32/float64 as they are, and the uint16
    bits of a float16 widened to float32 (exact; F16C's vcvtph2ps, so only for F16C hosts)."""
    if x_t in (types.float32, types.float64):

        def codegen(context, builder, signature, args):
            return args[0]

        return x_t(x_t), codegen
    if x_t != types.uint16:
        return None

    def codegen_half(context, builder, signature, args):
        hv = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(hv, ir.FloatType())

    return types.float32(x_t), codegen_half


def _make_lanes_top2(lane_bytes: int):
    """The intrinsic for vectors of ``lane_bytes`` bytes: 64 (one AVX-512 register: 16 float32
    or 8 float64 lanes; LLVM splits it on narrower targets), 32 or 16 for rows too short to
    fill a wider vector (10-class problems are common)."""

    @intrinsic
    def lanes_top2(typingctx, P_t, i_t, out_t):
        return _lanes_top2_typer(lane_bytes, P_t, i_t, out_t)

    return lanes_top2


def _lanes_top2_typer(lane_bytes, P_t, i_t, out_t):
    """Scan row ``i`` of C-contiguous 2-D ``P``, all its ``C`` columns, in vectors.

    ``C`` must be at least the lane count (``lane_bytes`` over the compared float's size).
    The columns after the last whole vector are read as one more vector ending at column
    ``C``, its lanes over columns already scanned masked out (-inf, no NaN check), so no
    scalar tail is left. Writes ``out[0] = top1, out[1] = top2, out[2] = argmax (as a
    float), out[3] = chk`` where ``chk`` is a sum of ``v - v`` over the scanned values: 0
    unless a NaN or Inf was seen.
    """
    half = P_t.dtype == types.uint16  # float16 bits, widened to float32 lanes on load
    if P_t.dtype not in (types.float32, types.float64) and not half:
        return None
    nb_float = types.float32 if half else P_t.dtype
    width = lane_bytes // (4 if nb_float == types.float32 else 8)
    sig = types.void(P_t, i_t, out_t)

    def codegen(context, builder, signature, args):
        P, i, out = args
        Pa = context.make_array(signature.args[0])(context, builder, P)
        Oa = context.make_array(signature.args[2])(context, builder, out)
        C = builder.extract_value(Pa.shape, 1)
        intp = C.type

        def as_intp(v):
            return builder.sext(v, intp) if v.type != intp else v

        base = builder.gep(Pa.data, [builder.mul(as_intp(i), C)])
        fty = context.get_value_type(nb_float)
        esize = 4 if nb_float == types.float32 else 8
        ity = ir.IntType(8 * esize)
        vf = ir.VectorType(fty, width)
        vi = ir.VectorType(ity, width)
        vptr = vf.as_pointer()

        def vload(j):
            if half:
                # <w x i16> -> <w x half> -> fpext <w x float>: vcvtph2ps with F16C, exact
                vh = ir.VectorType(ir.IntType(16), width).as_pointer()
                raw = builder.load(builder.bitcast(builder.gep(base, [j]), vh), align=2)
                hv = builder.bitcast(raw, ir.VectorType(ir.HalfType(), width))
                return builder.fpext(hv, vf)
            return builder.load(builder.bitcast(builder.gep(base, [j]), vptr), align=esize)

        def splat(x, vty):
            one = builder.insert_element(ir.Constant(vty, None), x, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32),
                                                                                width), None))

        a_slot = cgutils.alloca_once(builder, vf)
        b_slot = cgutils.alloca_once(builder, vf)
        k_slot = cgutils.alloca_once(builder, vi)
        c_slot = cgutils.alloca_once(builder, vf)
        neg_inf = ir.Constant(vf, [float("-inf")] * width)
        iota = ir.Constant(vi, list(range(width)))
        v0 = vload(ir.Constant(intp, 0))
        builder.store(v0, a_slot)
        builder.store(neg_inf, b_slot)
        builder.store(iota, k_slot)
        builder.store(builder.fsub(v0, v0), c_slot)

        def update(v, jv, nan_check):
            """Fold the vector ``v`` of columns ``jv`` into the lanes' (top1, top2, argmax)."""
            a = builder.load(a_slot)
            b = builder.load(b_slot)
            gt = builder.fcmp_ordered(">", v, a)
            lo = builder.select(builder.fcmp_ordered("<", a, v), a, v)  # min(a, v)
            builder.store(builder.select(builder.fcmp_ordered(">", b, lo), b, lo), b_slot)
            builder.store(builder.select(gt, jv, builder.load(k_slot)), k_slot)
            builder.store(builder.select(gt, v, a), a_slot)
            builder.store(builder.fadd(builder.load(c_slot), nan_check), c_slot)

        w = ir.Constant(intp, width)
        n_blocks = builder.sdiv(C, w)
        one = ir.Constant(intp, 1)
        with cgutils.for_range_slice(builder, one, n_blocks, one) as (blk, _):
            j = builder.mul(blk, w)
            v = vload(j)
            update(v, builder.add(splat(builder.trunc(j, ity) if ity.width < intp.width
                                        else j, vi), iota), builder.fsub(v, v))
        # the columns after the last whole vector: one vector ending at column C, the lanes
        # that would scan a column again set to -inf and left out of the NaN check
        scanned = builder.mul(n_blocks, w)
        rem = builder.sub(C, scanned)
        with builder.if_then(builder.icmp_signed(">", rem, ir.Constant(intp, 0)), likely=True):
            start = builder.sub(C, w)
            v = vload(start)
            skip = builder.sub(w, rem)  # lanes below this one were scanned already
            if ity.width < intp.width:
                start, skip = builder.trunc(start, ity), builder.trunc(skip, ity)
            fresh = builder.icmp_signed(">=", iota, splat(skip, vi))
            zero = ir.Constant(vf, [0.0] * width)
            update(builder.select(fresh, v, neg_inf), builder.add(splat(start, vi), iota),
                   builder.select(fresh, builder.fsub(v, v), zero))

        # merge lane l with lane l + h, halving h: top1 = max (lower index on ties),
        # top2 = max(b1, b2, min(a1, a2))
        a = builder.load(a_slot)
        b = builder.load(b_slot)
        k = builder.load(k_slot)
        c = builder.load(c_slot)
        h = width // 2
        while h >= 1:
            lo_mask = ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(h)))
            hi_mask = ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(h, 2 * h)))

            def halves(x, lo_mask=lo_mask, hi_mask=hi_mask):
                return builder.shuffle_vector(x, x, lo_mask), builder.shuffle_vector(x, x, hi_mask)

            a1, a2 = halves(a)
            b1, b2 = halves(b)
            k1, k2 = halves(k)
            c1, c2 = halves(c)
            take2 = builder.or_(
                builder.fcmp_ordered(">", a2, a1),
                builder.and_(builder.fcmp_ordered("==", a2, a1), builder.icmp_signed("<", k2, k1)),
            )
            mn = builder.select(builder.fcmp_ordered("<", a1, a2), a1, a2)
            bb = builder.select(builder.fcmp_ordered(">", b1, b2), b1, b2)
            b = builder.select(builder.fcmp_ordered(">", bb, mn), bb, mn)
            a = builder.select(take2, a2, a1)
            k = builder.select(take2, k2, k1)
            c = builder.fadd(c1, c2)
            h //= 2
        lane0 = ir.Constant(ir.IntType(32), 0)
        values = (
            builder.extract_element(a, lane0),
            builder.extract_element(b, lane0),
            builder.sitofp(builder.extract_element(k, lane0), fty),
            builder.extract_element(c, lane0),
        )
        for q, val in enumerate(values):
            builder.store(val, builder.gep(Oa.data, [ir.Constant(intp, q)]))
        return context.get_dummy_value()

    return sig, codegen


lanes_top2_64 = _make_lanes_top2(64)
lanes_top2_32 = _make_lanes_top2(32)
lanes_top2_16 = _make_lanes_top2(16)
