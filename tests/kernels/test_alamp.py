"""alamp_score against the literal equation (prev - cur) / (prev + cur) with the 0/0 rule."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import assert_exact, layouts_1d
from kernel_routes import kernels_on_small_inputs  # noqa: F401 (autouse)

import alamp_fast as af

DTYPES = [np.float16, np.float32, np.float64]


def make_margins(rng, n, dtype, kind):
    if kind == "continuous":
        prev, cur = rng.random(n), rng.random(n)
    elif kind == "zeros":  # both 0 (the 0/0 rule), one of them 0, ties prev == cur
        prev = rng.choice([0.0, 0.0, 0.5, 1.0], n)
        cur = rng.choice([0.0, 0.0, 0.5, 1.0], n)
    elif kind == "tiny":  # subnormal and near-subnormal margins: the sum must not flush to 0
        prev = rng.choice([0.0, 1.0], n) * np.exp(rng.uniform(-100, 0, n))
        cur = rng.choice([0.0, 1.0], n) * np.exp(rng.uniform(-100, 0, n))
    elif kind == "signed-zero":
        prev = rng.choice([0.0, -0.0, 0.25], n)
        cur = rng.choice([0.0, -0.0, 0.75], n)
    else:
        raise ValueError(kind)
    return prev.astype(dtype), cur.astype(dtype)


@pytest.mark.parametrize("cur_dtype", DTYPES)
@pytest.mark.parametrize("prev_dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 1000, 4099])
def test_alamp_matches_reference(backend, rng, n, prev_dtype, cur_dtype):
    want_dtype = np.float64 if np.float64 in (prev_dtype, cur_dtype) else np.float32
    for kind in ["continuous", "zeros", "tiny", "signed-zero"]:
        prev, _ = make_margins(rng, n, prev_dtype, kind)
        _, cur = make_margins(rng, n, cur_dtype, kind)
        got = backend(af.alamp_score, prev, cur)
        # computed in the output dtype, so bit-exact with the same expression evaluated by numpy
        assert_exact(got, ref.alamp_score(prev, cur), f"alamp ({kind})", dtype=want_dtype)


def test_zero_over_zero_is_zero_and_range(backend, rng):
    prev, cur = make_margins(rng, 5000, np.float64, "zeros")
    s = backend(af.alamp_score, prev, cur)
    both_zero = (prev == 0) & (cur == 0)
    assert both_zero.any() and (~both_zero).any()
    assert_exact(s[both_zero], np.zeros(both_zero.sum()), "0/0 entries")
    assert np.all((s >= -1) & (s <= 1))
    # prev > 0 = cur is the largest shift (+1), prev = 0 < cur the smallest (-1)
    assert_exact(s[(prev > 0) & (cur == 0)], 1.0, "sure -> unsure")
    assert_exact(s[(prev == 0) & (cur > 0)], -1.0, "unsure -> sure")


def test_known_values(backend):
    got = backend(af.alamp_score, np.array([0.9, 0.5, 0.0, 0.2]), np.array([0.1, 0.5, 0.0, 0.6]))
    assert_exact(got, [(0.9 - 0.1) / 1.0, 0.0, 0.0, (0.2 - 0.6) / (0.2 + 0.6)], "alamp")


def test_any_certainty_measure(backend, rng):
    # e.g. the top-1 probability instead of the margin: same equation, values in [0, 1]
    P_prev = rng.dirichlet(np.ones(5), 700).astype(np.float32)
    P_cur = rng.dirichlet(np.ones(5), 700).astype(np.float32)
    prev, cur = P_prev.max(axis=1), P_cur.max(axis=1)
    assert_exact(
        backend(af.alamp_score, prev, cur),
        ref.alamp_score(prev, cur),
        "alamp(top1)",
        dtype=np.float32,
    )


def test_pipeline_from_probs(backend, rng):
    # the documented AL step: margins of two models -> alamp -> the same as the reference chain
    P0 = rng.random((2000, 10)).astype(np.float32)
    P1 = np.round(rng.random((2000, 10)), 2).astype(np.float32)
    got = backend(af.alamp_score, backend(af.margin, P0), backend(af.margin, P1))
    assert_exact(got, ref.alamp_score(ref.margin(P0), ref.margin(P1)), "alamp(margins)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layout_does_not_change_result(backend, rng, dtype):
    prev, cur = make_margins(rng, 777, dtype, "zeros")
    want = backend(af.alamp_score, prev, cur)
    for (name_p, vp), (name_c, vc) in zip(layouts_1d(prev, rng), layouts_1d(cur, rng), strict=True):
        assert not vp.flags.c_contiguous, name_p
        assert_exact(
            backend(af.alamp_score, vp, vc), want, f"alamp on {name_p}/{name_c}", dtype=want.dtype
        )


@pytest.mark.parametrize("kind", ["continuous", "zeros", "tiny", "signed-zero"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_small_input_numpy_route_equals_kernel_bitwise(monkeypatch, rng, dtype, kind):
    from alamp_fast import _parallel

    prev, cur = make_margins(rng, 999, dtype, kind)
    want = af.alamp_score(prev, cur)
    monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", -1)
    got = af.alamp_score(prev, cur)
    assert want.dtype == got.dtype
    np.testing.assert_array_equal(want.view(np.uint8), got.view(np.uint8))


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_small_input_numpy_route_errors_equal_kernel(monkeypatch, bad):
    from alamp_fast import _parallel

    prev, cur = np.full(40, 0.5), np.full(40, 0.25)
    cur[17] = bad
    errors = []
    for limit in (_parallel.NUMPY_MAX_WORK, -1):
        monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", limit)
        with pytest.raises(ValueError) as e:
            af.alamp_score(prev, cur)
        errors.append(str(e.value))
    assert "margin[17]" in errors[0] and errors[0] == errors[1]
