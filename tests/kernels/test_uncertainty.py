"""margin / top2_margin / entropy / least_confidence against the literal row-sorting reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import assert_close, assert_exact, layouts_2d
from kernel_routes import kernels_on_small_inputs  # noqa: F401 (autouse)

import alamp_fast as af

DTYPES = [np.float16, np.float32, np.float64]
OUT = {np.float16: np.float32, np.float32: np.float32, np.float64: np.float64}

# n from empty to a few thousand rows, C from 2 to beyond 1024; C around the SIMD widths
# (16 float32 / 8 float64 lanes per vector, scalar leftover columns after them)
SMALL_SHAPES = [
    (0, 2),
    (1, 2),
    (1, 7),
    (2, 2),
    (31, 3),
    (5, 8),
    (40, 16),
    (33, 17),
    (20, 32),
    (17, 33),
    (257, 10),
    (3000, 4),
]
SHAPES = SMALL_SHAPES + [(9, 64), (1000, 101), (48, 1025), (12, 3001)]


def make_probs(rng, shape, dtype, kind):
    n, c = shape
    if kind == "softmax":
        z = rng.standard_normal(shape) * 3
        p = np.exp(z - z.max(axis=1, keepdims=True)) if n else z
        p = p / p.sum(axis=1, keepdims=True) if n else p
    elif kind == "uniform":
        p = rng.random(shape)
    elif kind == "ties":  # one decimal: rows share their top value often
        p = np.round(rng.random(shape), 1)
    elif kind == "onehot":  # zeros everywhere else: 0 log 0, margin 1
        p = np.zeros(shape)
        if n:
            p[np.arange(n), rng.integers(0, c, n)] = 1.0
    elif kind == "decision":  # SVM decision values: negative, rows do not sum to 1
        p = rng.standard_normal(shape) * 2 - 1
    elif kind == "wide":  # magnitudes across the dtype's range, both signs, some subnormal
        fi = np.finfo(dtype)
        mag = np.exp(
            rng.uniform(np.log(float(fi.smallest_subnormal)), np.log(float(fi.max) / 4), shape)
        )
        p = mag * rng.choice([-1.0, 1.0], shape)
    else:
        raise ValueError(kind)
    return np.asarray(p).astype(dtype)


PROB_KINDS = ["softmax", "uniform", "ties", "onehot"]
ALL_KINDS = PROB_KINDS + ["decision", "wide"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_top2_margin_matches_reference(backend, rng, shape, dtype):
    for kind in ALL_KINDS:
        P = make_probs(rng, shape, dtype, kind)
        margin, top = backend(af.top2_margin, P)
        want_margin, want_top = ref.top2_margin(P)
        # bit-exact: float16 is widened to float32 exactly, then one subtraction in float32
        assert_exact(margin, want_margin, f"margin ({kind})", dtype=OUT[dtype])
        assert_exact(top, want_top, f"top_class ({kind})", dtype=np.int64)


@pytest.mark.parametrize("kind", ["ties", "decision"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_margin_equals_top2_margin(backend, rng, dtype, kind):
    P = make_probs(rng, (500, 13), dtype, kind)
    assert_exact(backend(af.margin, P), ref.margin(P), "margin", dtype=OUT[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_top2_ties_go_to_lowest_class(backend, dtype):
    P = np.array(
        [
            [0.3, 0.3, 0.4, 0.4],  # top value twice: margin 0, first of them
            [0.0, -0.0, -0.0, 0.0],  # signed zeros compare equal
            [-1.0, -2.0, -1.0, -3.0],  # all negative
            [0.25, 0.25, 0.25, 0.25],
            [0.1, 0.2, 0.3, 0.9],
        ],
        dtype=dtype,
    )
    margin, top = backend(af.top2_margin, P)
    assert_exact(top, [2, 0, 0, 0, 3], "top_class")
    want = np.array([0.0, 0.0, 0.0, 0.0, 0.6], dtype=OUT[dtype])
    want[4] = OUT[dtype](dtype(0.9)) - OUT[dtype](dtype(0.3))
    assert_exact(margin, want, "margin", dtype=OUT[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [2, 7, 8, 9, 16, 17, 31, 32, 33, 64])
def test_top2_every_position_pair(backend, rng, C, dtype):
    """Top-1 / top-2 at every pair of columns (j1, j2), equal or not: every SIMD lane, every
    lane pair in the merge tree and the scalar leftover columns meet both roles."""
    j1, j2 = np.meshgrid(np.arange(C), np.arange(C), indexing="ij")
    j1, j2 = j1.ravel(), j2.ravel()
    rows = np.arange(j1.size)
    P = rng.uniform(-1, 0.5, (j1.size, C))
    P[rows, j2] = np.where(rng.random(j1.size) < 0.5, 0.75, 1.0)  # below or equal to top1
    P[rows, j1] = 1.0
    P = P.astype(dtype)
    margin, top = backend(af.top2_margin, P)
    want_margin, want_top = ref.top2_margin(P)
    assert_exact(top, want_top, "top_class", dtype=np.int64)
    assert_exact(margin, want_margin, "margin", dtype=OUT[dtype])
    assert_exact(backend(af.least_confidence, P), ref.least_confidence(P), "least_confidence")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C,col", [(2**24 - 16, 2**24 - 17), (2**24 + 3, 2**24 + 1)])
def test_top2_argmax_index_beyond_float32_integers(C, col, dtype):
    # the SIMD path carries the argmax as a float in its lanes: exact only below 2**24
    P = np.zeros((1, C), dtype=dtype)
    P[0, col] = 1
    P[0, 5] = 0.5
    margin, top = af.top2_margin(P)
    assert_exact(top, [col], "top_class")
    assert_exact(margin, [0.5], "margin", dtype=OUT[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_pool_with_production_thresholds(rng, dtype):
    """Above the size where the parallel kernels are chosen (numpy backend, no forcing)."""
    P = make_probs(rng, (2700, 101), dtype, "ties")
    margin, top = af.top2_margin(P)
    want_margin, want_top = ref.top2_margin(P)
    assert_exact(margin, want_margin, "margin", dtype=OUT[dtype])
    assert_exact(top, want_top, "top_class")
    assert_exact(af.least_confidence(P), ref.least_confidence(P), "least_confidence")
    rtol = 1e-12 if dtype == np.float64 else 2.0**-22
    assert_close(af.entropy(P), ref.entropy(P), "entropy", rtol=rtol, atol=1e-300)


def test_float16_margin_is_float32_difference(backend, rng):
    # the documented rule: margin == np.float32(top1) - np.float32(top2), not a float16 result
    P = rng.random((4000, 6)).astype(np.float16)
    s = np.sort(P.astype(np.float32), axis=1)
    assert_exact(backend(af.margin, P), s[:, -1] - s[:, -2], "float16 margin", dtype=np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_entropy_matches_reference(backend, rng, shape, dtype):
    # accumulated in float64 by both; only log's last bit and summation order may differ,
    # plus the final rounding to float32
    rtol = 1e-12 if dtype == np.float64 else 2.0**-22
    for kind in PROB_KINDS:
        P = make_probs(rng, shape, dtype, kind)
        H = backend(af.entropy, P)
        assert H.dtype == OUT[dtype]
        assert_close(H, ref.entropy(P), f"entropy ({kind})", rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_known_values(backend, dtype):
    P = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.25], [0.0, 0.0]], dtype=dtype)
    H = backend(af.entropy, P)
    want = np.array([np.log(2), 0.0, 0.5 * np.log(4), 0.0])
    assert_close(H, want, "entropy", rtol=1e-6 if dtype != np.float64 else 1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_least_confidence_matches_reference(backend, rng, shape, dtype):
    for kind in ALL_KINDS:
        P = make_probs(rng, shape, dtype, kind)
        got = backend(af.least_confidence, P)
        assert_exact(got, ref.least_confidence(P), f"least_confidence ({kind})", dtype=OUT[dtype])


@pytest.mark.parametrize(
    "fn", [af.top2_margin, af.entropy, af.least_confidence], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layout_does_not_change_result(backend, rng, fn, dtype):
    P = make_probs(rng, (301, 11), dtype, "ties")
    want = backend(fn, P)
    for name, view in layouts_2d(P, rng):
        assert not view.flags.c_contiguous, name
        got = backend(fn, view)
        if isinstance(want, tuple):
            for g, w in zip(got, want, strict=True):
                assert_exact(g, w, f"{fn.__name__} on {name}", dtype=w.dtype)
        else:
            assert_exact(got, want, f"{fn.__name__} on {name}", dtype=want.dtype)


# ---------------------------------------------------------------------------------------------
# float16: the F16C path (conversion in the vector loads) against the software widening


def _run_top2_kernel(kernel, P, out_dtype):
    """(margin bits, top class, top1 bits, bad-row flags) from a build of the top-2 kernel."""
    n = P.shape[0]
    m = np.empty(n, out_dtype)
    t = np.empty(n, np.int64)
    t1 = np.empty(n, out_dtype)
    bad = np.empty(n, bool)
    kernel(P, m, t, t1, bad)
    return m.view(np.uint8), t, t1.view(np.uint8), bad


@pytest.mark.parametrize("C", [2, 3, 4, 5, 8, 10, 16, 17, 33, 100, 257])
def test_top2_f16c_bit_identical_to_software_widening(C):
    """The kernel on float16 bits (F16C) against the kernel on the float32 widening (the
    route without F16C), both builds."""
    from alamp_fast import uncertainty as unc
    from alamp_fast._simd import HAS_F16C

    if not HAS_F16C:
        pytest.skip("this CPU has no F16C: the software path is the only one")
    rng = np.random.default_rng(C)
    bits = rng.integers(0, 0x7C00, (700, C)).astype(np.uint16)  # every finite half, subnormals
    bits[::5] |= 0x8000  # negatives and -0.0
    bits[::7, 1 % C] = bits[::7, 0]  # ties
    bits[11] = 0x8000  # a row of -0.0 with a +0.0: the margin is +0.0
    bits[11, C - 1] = 0
    bits[3] = 0x7C00  # +Inf row, flagged as bad
    bits[4, C // 2] = 0x7E00  # NaN
    for Q in (bits.view(np.float16), rng.random((700, C)).astype(np.float16)):
        for build in ("serial", "parallel"):
            kernel = getattr(unc._top2_kernel, build)
            want = _run_top2_kernel(kernel, Q.astype(np.float32), np.float32)
            got = _run_top2_kernel(kernel, Q.view(np.uint16), np.float32)
            np.testing.assert_array_equal(got[3], want[3])  # the same rows flagged
            ok = ~want[3]  # the other results of flagged rows are not used (the call raises)
            for g, w in zip(got[:2], want[:2], strict=True):
                np.testing.assert_array_equal(g.reshape(len(ok), -1)[ok], w.reshape(len(ok), -1)[ok])
            # top1 (used as 1 - top1 only): the same value, a zero possibly of the other sign
            t1_got, t1_want = (t.view(np.float32) for t in (got[2], want[2]))
            np.testing.assert_array_equal(t1_got[ok], t1_want[ok])


def test_top2_float16_without_f16c_equals_f16c(monkeypatch):
    from alamp_fast import uncertainty as unc

    H = np.random.default_rng(2).random((3000, 37)).astype(np.float16)
    H[5, 3] = -0.0
    want = af.top2_margin(H), af.least_confidence(H)
    monkeypatch.setattr(unc, "HAS_F16C", False)
    got = af.top2_margin(H), af.least_confidence(H)
    for w, g in zip([*want[0], want[1]], [*got[0], got[1]], strict=True):
        assert w.dtype == g.dtype
        np.testing.assert_array_equal(w.view(np.uint8), g.view(np.uint8))


def test_float16_widening_kernel_is_exact_for_every_bit_pattern():
    from alamp_fast import uncertainty as unc

    bits = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)  # NaNs, Infs, subnormals
    want = bits.view(np.float16).astype(np.float32).view(np.uint32)
    for build in ("serial", "parallel"):
        out = np.empty((256, 256), np.float32)
        getattr(unc._widen_f16, build)(bits, out)
        np.testing.assert_array_equal(out.view(np.uint32), want)


def test_float16_entropy_of_a_large_pool_equals_float32_of_widened():
    H = np.random.default_rng(3).random((1500, 101)).astype(np.float16)  # blockwise widening
    np.testing.assert_array_equal(
        af.entropy(H).view(np.uint32), af.entropy(H.astype(np.float32)).view(np.uint32)
    )


# ---------------------------------------------------------------------------------------------
# small inputs: the numpy route (nothing compiled) against the kernels, bit for bit


def _route_inputs(rng, C, dtype):
    P = rng.random((97, C))
    P[::3] = np.round(P[::3] * 4) / 4  # tied maxima
    P[::7] *= -1  # negative rows, -0.0 where rounding gave 0
    P[::11] = -np.round(P[::11])
    P[5] = 0.0
    P[5, ::2] = -0.0  # tied zero maximum of both signs
    P[6] = -0.0
    P[6, C - 1] = 0.0
    return P.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [2, 3, 5, 8, 10, 16, 17, 33, 100])
def test_small_input_numpy_route_equals_kernels_bitwise(monkeypatch, C, dtype):
    from alamp_fast import _parallel

    P = _route_inputs(np.random.default_rng(C), C, dtype)
    Pp = np.abs(P)  # entropy wants non-negative values

    def results():
        return [*af.top2_margin(P), af.least_confidence(P), af.entropy(Pp)]

    want = results()
    monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", -1)
    got = results()
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype
        np.testing.assert_array_equal(w.view(np.uint8), g.view(np.uint8))
    margin = want[0]
    assert margin[5] == 0 and margin[6] == 0
    assert not np.signbit(margin[5]) and not np.signbit(margin[6])  # +0.0 on both routes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_small_input_numpy_route_errors_equal_kernels(monkeypatch, bad):
    from alamp_fast import _parallel

    P = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    P[31, 4] = bad
    P[40, 1] = np.nan
    errors = []
    for limit in (_parallel.NUMPY_MAX_WORK, -1):
        monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", limit)
        for fn in (af.top2_margin, af.least_confidence, af.entropy):
            with pytest.raises(ValueError) as e:
                fn(P)
            errors.append(str(e.value))
    assert "probs[31, 4]" in errors[0]
    assert errors[:3] == errors[3:]


def test_top2_float16_public_results_equal_float32_of_widened():
    rng = np.random.default_rng(1)
    H = rng.random((5000, 100)).astype(np.float16)
    m16, t16 = af.top2_margin(H)
    m32, t32 = af.top2_margin(H.astype(np.float32))
    np.testing.assert_array_equal(m16.view(np.uint32), m32.view(np.uint32))
    np.testing.assert_array_equal(t16, t32)
