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

The columns after the last whole vector are scanned as one more vector ending at the row's
end with the lanes seen before masked out (no scalar tail: a 10-column float32 row took 7.4
instead of 16.6 ns). float16 rows are compared as integer keys of their bits, which order like
the values, so the loop converts nothing; only top1 and top2 are widened to float32.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["lanes_top2_64", "lanes_top2_32", "lanes_top2_16", "as_float", "to_half", "HAS_F16C"]


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


@intrinsic
def to_half(typingctx, x_t):
    """The bits (uint16) of float32 ``x`` rounded to float16, to nearest even (F16C's
    vcvtps2ph, so only for F16C hosts): the inverse of :func:`as_float` on float16 values."""
    if x_t != types.float32:
        return None

    def codegen(context, builder, signature, args):
        hv = builder.fptrunc(args[0], ir.HalfType())
        return builder.bitcast(hv, ir.IntType(16))

    return types.uint16(x_t), codegen


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

    ``C`` must be at least the lane count (``lane_bytes // P.itemsize``). The columns after
    the last whole vector are read as one more vector ending at column ``C``, its lanes over
    columns already scanned masked out, so no scalar tail is left. Writes ``out[0] = top1,
    out[1] = top2, out[2] = argmax (as a float), out[3] = chk`` where ``chk`` is 0 unless a
    NaN or Inf was seen (float lanes: a sum of ``v - v``).

    float16 (``P`` holds its uint16 bits) is compared without widening: as the int16
    ``h >= 0 ? h : -(h & 0x7fff)``, which orders like the float values (-0.0 and +0.0 equal),
    twice the lanes per vector of float32 and no conversion in the loop; top1 and top2 are
    widened to float32 at the end (a zero comes back as +0.0), and a NaN/Inf shows as a
    magnitude ``h & 0x7fff >= 0x7c00``.
    """
    half = P_t.dtype == types.uint16
    if P_t.dtype not in (types.float32, types.float64) and not half:
        return None
    nb_float = types.float32 if half else P_t.dtype
    width = lane_bytes * 8 // P_t.dtype.bitwidth
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
        elem = ir.IntType(16) if half else fty  # the lanes' type
        vx = ir.VectorType(elem, width)
        # argmax lanes: int32 for float32 and float16 keys (columns < 2**24 by the caller's
        # rule), int64 for float64
        ity = ir.IntType(64 if nb_float == types.float64 else 32)
        vi = ir.VectorType(ity, width)

        def const(x):
            return ir.Constant(vx, [x] * width)

        if half:
            lowest = const(-(1 << 15))  # below every key: masked lanes, no top2 yet
            nothing = const(0)
            compare = builder.icmp_signed

            def vload(j):
                """(key, magnitude) of the float16 bits at column j."""
                ptr = builder.bitcast(builder.gep(base, [j]), vx.as_pointer())
                h = builder.load(ptr, align=2)
                sign = builder.ashr(h, const(15))  # 0 or -1
                mag = builder.and_(h, const(0x7FFF))
                return builder.sub(builder.xor(mag, sign), sign), mag

            def fold_check(c, t):
                return builder.select(builder.icmp_signed(">", c, t), c, t)

            def to_float(key):
                neg = builder.icmp_signed("<", key, ir.Constant(elem, 0))
                bits = builder.select(neg, builder.or_(builder.neg(key),
                                                       ir.Constant(elem, 0x8000)), key)
                return builder.fpext(builder.bitcast(bits, ir.HalfType()), fty)

            def check_value(c):
                bad = builder.icmp_signed(">=", c, ir.Constant(elem, 0x7C00))
                return builder.select(bad, ir.Constant(fty, float("nan")), ir.Constant(fty, 0))
        else:
            lowest = const(float("-inf"))
            nothing = const(0.0)
            compare = builder.fcmp_ordered

            def vload(j):
                """(values, v - v: 0 for finite v, NaN for NaN/Inf) at column j."""
                ptr = builder.bitcast(builder.gep(base, [j]), vx.as_pointer())
                v = builder.load(ptr, align=P_t.dtype.bitwidth // 8)
                return v, builder.fsub(v, v)

            def fold_check(c, t):
                return builder.fadd(c, t)

            def to_float(v):
                return v

            def check_value(c):
                return c

        # signed integer keys (float16) and ordered float compares (float32/64) alike
        def gt(x, y):
            return compare(">", x, y)

        def lt(x, y):
            return compare("<", x, y)

        def eq(x, y):
            return compare("==", x, y)

        def splat(x):
            one = builder.insert_element(ir.Constant(vi, None), x, ir.Constant(ir.IntType(32), 0))
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), width), None)
            return builder.shuffle_vector(one, one, zeros)

        def column(j):
            return builder.trunc(j, ity) if ity.width < intp.width else j

        a_slot = cgutils.alloca_once(builder, vx)
        b_slot = cgutils.alloca_once(builder, vx)
        k_slot = cgutils.alloca_once(builder, vi)
        c_slot = cgutils.alloca_once(builder, vx)
        iota = ir.Constant(vi, list(range(width)))
        v0, t0 = vload(ir.Constant(intp, 0))
        builder.store(v0, a_slot)
        builder.store(lowest, b_slot)
        builder.store(iota, k_slot)
        builder.store(t0, c_slot)

        def update(v, jv, t):
            """Fold the vector ``v`` of columns ``jv`` into the lanes' (top1, top2, argmax)."""
            a = builder.load(a_slot)
            b = builder.load(b_slot)
            up = gt(v, a)
            lo = builder.select(lt(a, v), a, v)  # min(a, v)
            builder.store(builder.select(gt(b, lo), b, lo), b_slot)
            builder.store(builder.select(up, jv, builder.load(k_slot)), k_slot)
            builder.store(builder.select(up, v, a), a_slot)
            builder.store(fold_check(builder.load(c_slot), t), c_slot)

        w = ir.Constant(intp, width)
        n_blocks = builder.sdiv(C, w)
        one = ir.Constant(intp, 1)
        with cgutils.for_range_slice(builder, one, n_blocks, one) as (blk, _):
            j = builder.mul(blk, w)
            v, t = vload(j)
            update(v, builder.add(splat(column(j)), iota), t)
        # the columns after the last whole vector: one vector ending at column C, the lanes
        # that would scan a column again masked out (lowest value, nothing to check)
        rem = builder.sub(C, builder.mul(n_blocks, w))
        with builder.if_then(builder.icmp_signed(">", rem, ir.Constant(intp, 0)), likely=True):
            start = builder.sub(C, w)
            v, t = vload(start)
            fresh = builder.icmp_signed(">=", iota, splat(column(builder.sub(w, rem))))
            update(builder.select(fresh, v, lowest), builder.add(splat(column(start)), iota),
                   builder.select(fresh, t, nothing))

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
                gt(a2, a1), builder.and_(eq(a2, a1), builder.icmp_signed("<", k2, k1))
            )
            mn = builder.select(lt(a1, a2), a1, a2)
            bb = builder.select(gt(b1, b2), b1, b2)
            b = builder.select(gt(bb, mn), bb, mn)
            a = builder.select(take2, a2, a1)
            k = builder.select(take2, k2, k1)
            c = fold_check(c1, c2)
            h //= 2
        lane0 = ir.Constant(ir.IntType(32), 0)
        values = (
            to_float(builder.extract_element(a, lane0)),
            to_float(builder.extract_element(b, lane0)),
            builder.sitofp(builder.extract_element(k, lane0), fty),
            check_value(builder.extract_element(c, lane0)),
        )
        for q, val in enumerate(values):
            builder.store(val, builder.gep(Oa.data, [ir.Constant(intp, q)]))
        return context.get_dummy_value()

    return sig, codegen


lanes_top2_64 = _make_lanes_top2(64)
lanes_top2_32 = _make_lanes_top2(32)
lanes_top2_16 = _make_lanes_top2(16)
