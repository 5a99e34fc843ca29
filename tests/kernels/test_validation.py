"""Input checking at the public boundary: every bad input raises ValueError/TypeError naming it.

Each case is a (call, exception, message pattern) triple run on numpy input; the patterns
require the bad value (or shape / index / budget) to appear in the message.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import alamp_fast as af

PROB_FUNCS = [af.margin, af.top2_margin, af.entropy, af.least_confidence]


def _probs(dtype=np.float64, n=6, c=4):
    return np.random.default_rng(0).random((n, c)).astype(dtype)


def names(*parts: str) -> str:
    """A regex matching a message that contains every part, in any order (format-agnostic)."""
    return "(?s)^" + "".join(f"(?=.*{p})" for p in parts)


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


# ---------------------------------------------------------------------------------------------
# probs


@pytest.mark.parametrize("fn", PROB_FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad,pattern", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_probs_non_finite(fn, dtype, bad, pattern):
    P = _with(_probs(dtype), (3, 2), bad)
    with pytest.raises(ValueError, match=names("probs", "3, 2", pattern)):
        fn(P)


@pytest.mark.parametrize("fn", PROB_FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_probs_wrong_ndim(fn, shape):
    with pytest.raises(ValueError, match=rf"probs must be 2-D, got shape {re_shape(shape)}"):
        fn(np.zeros(shape))


@pytest.mark.parametrize("fn", PROB_FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(5, 1), (3, 0), (0, 1)])
def test_probs_fewer_than_two_classes(fn, shape):
    with pytest.raises(ValueError, match=rf"at least 2 classes.*{re_shape(shape)}"):
        fn(np.zeros(shape))


@pytest.mark.parametrize("fn", PROB_FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex128, object])
def test_probs_wrong_dtype(fn, dtype):
    with pytest.raises(
        TypeError,
        match=rf"probs must be float16/32/64, got dtype "
        rf"{np.dtype(dtype).name}",
    ):
        fn(np.zeros((3, 3), dtype=dtype))


def test_entropy_negative_probability_named():
    P = _with(_probs(), (4, 1), -0.25)
    with pytest.raises(ValueError, match=r"non-negative.*probs\[4, 1\].*-0\.25"):
        af.entropy(P)


# ---------------------------------------------------------------------------------------------
# alamp_score


@pytest.mark.parametrize("which", ["prev_margin", "margin"])
@pytest.mark.parametrize("bad,pattern", [(np.nan, "nan"), (np.inf, "inf")])
def test_alamp_non_finite(which, bad, pattern):
    prev, cur = np.full(8, 0.5), np.full(8, 0.25)
    if which == "prev_margin":
        prev = _with(prev, 5, bad)
    else:
        cur = _with(cur, 5, bad)
    with pytest.raises(ValueError, match=names(rf"^{which}\b", r"(\[|index )5\b", pattern)):
        af.alamp_score(prev, cur)


@pytest.mark.parametrize("which", ["prev_margin", "margin"])
def test_alamp_negative_margin(which):
    prev, cur = np.full(8, 0.5), np.full(8, 0.25)
    if which == "prev_margin":
        prev = _with(prev, 6, -0.125)
    else:
        cur = _with(cur, 6, -0.125)
    with pytest.raises(ValueError, match=rf"^{which}\[6\] = .*-0\.125.* is negative"):
        af.alamp_score(prev, cur)


def test_alamp_mismatched_lengths():
    with pytest.raises(ValueError, match=r"prev_margin has 5 samples but margin has 4"):
        af.alamp_score(np.ones(5), np.ones(4))


@pytest.mark.parametrize("which", ["prev_margin", "margin"])
def test_alamp_wrong_ndim(which):
    args = {"prev_margin": np.ones(4), "margin": np.ones(4)}
    args[which] = np.ones((4, 1))
    with pytest.raises(ValueError, match=rf"{which} must be 1-D, got shape \(4, 1\)"):
        af.alamp_score(args["prev_margin"], args["margin"])


def test_alamp_integer_margins_rejected():
    with pytest.raises(TypeError, match=r"prev_margin must be float16/32/64, got dtype int64"):
        af.alamp_score(np.ones(3, dtype=np.int64), np.ones(3))


# ---------------------------------------------------------------------------------------------
# select_top / diversify


def _select(scores, b, **kw):
    return af.select_top(scores, b, **kw)


def _diversify(scores, b, **kw):
    return af.diversify(scores, np.arange(len(scores)) % 3, b, **kw)


SELECTORS = [_select, _diversify]


@pytest.mark.parametrize("fn", SELECTORS, ids=["select_top", "diversify"])
@pytest.mark.parametrize("bad,pattern", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_scores_non_finite(fn, bad, pattern):
    s = _with(np.linspace(0, 1, 10), 7, bad)
    with pytest.raises(ValueError, match=names("scores", r"(\[|index )7\b", pattern)):
        fn(s, 2)


@pytest.mark.parametrize("fn", SELECTORS, ids=["select_top", "diversify"])
def test_scores_wrong_ndim(fn):
    with pytest.raises(ValueError, match=r"scores must be 1-D, got shape \(5, 2\)"):
        fn(np.zeros((5, 2)), 1)


@pytest.mark.parametrize("fn", SELECTORS, ids=["select_top", "diversify"])
@pytest.mark.parametrize(
    "b,exclude,pattern",
    [
        (-1, None, r"b=-1 must be >= 0"),
        (11, None, r"b=11 exceeds the 10 candidates"),
        (8, [0, 1, 2], r"b=8 exceeds the 7 candidates left after exclude"),
        (1, np.ones(10, dtype=bool), r"b=1 exceeds the 0 candidates"),
    ],
)
def test_budget_out_of_range(fn, b, exclude, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(np.linspace(0, 1, 10), b, exclude=exclude)


@pytest.mark.parametrize("fn", SELECTORS, ids=["select_top", "diversify"])
@pytest.mark.parametrize("b", [2.0, 2.5, "2", True, None])
def test_budget_not_an_integer(fn, b):
    with pytest.raises(TypeError, match=rf"budget b must be an integer, got {b!r}"):
        fn(np.linspace(0, 1, 10), b)


@pytest.mark.parametrize("fn", SELECTORS, ids=["select_top", "diversify"])
@pytest.mark.parametrize(
    "exclude,exc,pattern",
    [
        ([3, 10], ValueError, r"exclude holds index 10, out of range for 10 samples"),
        ([-1, 3], ValueError, r"exclude holds index -1, out of range for 10 samples"),
        ([4, 2, 4], ValueError, r"exclude holds duplicated index 4"),
        ([1.0, 2.0], TypeError, r"exclude must hold integer indices, got dtype float64"),
        (np.zeros((2, 2), dtype=np.int64), ValueError, r"exclude must be 1-D, got shape \(2, 2\)"),
        (np.zeros(9, dtype=bool), ValueError, r"exclude as a boolean mask must have shape \(10,\)"),
    ],
)
def test_exclude_bad(fn, exclude, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn(np.linspace(0, 1, 10), 1, exclude=exclude)


@pytest.mark.parametrize(
    "pc,exc,pattern",
    [
        (
            np.arange(10) * 1.0,
            TypeError,
            r"pseudo_class must be an integer array, got dtype float64",
        ),
        (np.full(10, 0.5), TypeError, r"pseudo_class must be an integer array, got dtype float64"),
        (np.array(list("abcdefghij")), TypeError, r"pseudo_class must be an integer array.*<U1"),
        (np.zeros(10, dtype=bool), TypeError, r"pseudo_class must be an integer array.*bool"),
        (np.zeros(9, dtype=np.int64), ValueError, r"pseudo_class has 9 entries but scores have 10"),
        (np.zeros((10, 1), dtype=np.int64), ValueError, r"pseudo_class must be 1-D.*\(10, 1\)"),
    ],
)
def test_pseudo_class_bad(pc, exc, pattern):
    with pytest.raises(exc, match=pattern):
        af.diversify(np.linspace(0, 1, 10), pc, 2)


def test_integral_float_pseudo_class_hints_the_cast():
    with pytest.raises(TypeError, match=r"astype\(np\.int64\)"):
        af.diversify(np.linspace(0, 1, 4), np.array([0.0, 1.0, 1.0, 2.0]), 2)


# ---------------------------------------------------------------------------------------------
# kcenter_greedy


def _feats(n=10, d=3):
    return np.random.default_rng(1).standard_normal((n, d))


@pytest.mark.parametrize("bad,pattern", [(np.nan, "nan"), (np.inf, "inf")])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_features_non_finite(bad, pattern, dtype):
    X = _with(_feats().astype(dtype), (6, 2), bad)
    with pytest.raises(ValueError, match=names("features", "6, 2", pattern)):
        af.kcenter_greedy(X, [0], 2)


@pytest.mark.parametrize("shape", [(10,), (2, 5, 1)])
def test_features_wrong_ndim(shape):
    with pytest.raises(ValueError, match=rf"features must be 2-D, got shape {re_shape(shape)}"):
        af.kcenter_greedy(np.zeros(shape), [0], 1)


@pytest.mark.parametrize(
    "labeled,b,exc,pattern",
    [
        ([0, 10], 1, ValueError, r"labeled holds index 10, out of range for 10 samples"),
        ([-3], 1, ValueError, r"labeled holds index -3, out of range"),
        ([2, 5, 2], 1, ValueError, r"labeled holds duplicated index 2"),
        ([0.0], 1, TypeError, r"labeled must hold integer indices, got dtype float64"),
        ([0, 1], 9, ValueError, r"b=9 exceeds the 8 unlabeled candidates"),
        ([], 11, ValueError, r"b=11 exceeds the 10 unlabeled candidates"),
        ([0], -2, ValueError, r"b=-2 must be >= 0"),
        ([0], 1.5, TypeError, r"budget b must be an integer, got 1\.5"),
    ],
)
def test_kcenter_bad_labeled_or_budget(labeled, b, exc, pattern):
    with pytest.raises(exc, match=pattern):
        af.kcenter_greedy(_feats(), labeled, b)


def test_errors_do_not_depend_on_python_optimisation(tmp_path):
    """Checks are real exceptions, not asserts: they still fire under ``python -O``."""
    import subprocess
    import sys

    code = (
        "import numpy as np, alamp_fast as af\n"
        "try:\n    af.select_top(np.ones(3), 5)\nexcept ValueError:\n    print('raised')\n"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.stdout.strip() == "raised", out.stderr


def re_shape(shape) -> str:
    """The regex for ``str(shape)`` (parentheses escaped)."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# ---------------------------------------------------------------------------------------------
# kernel inputs (reliability issue): sparse / object input, bool flags, uint64 indices, overflow


def _kernel_calls(arg):
    """(name, call) for every public kernel with ``arg`` in the array position."""
    rng = np.random.default_rng(0)
    P = rng.random((6, 3))
    s = rng.random(6)
    return [
        ("top2_margin", lambda: af.top2_margin(arg)),
        ("margin", lambda: af.margin(arg)),
        ("entropy", lambda: af.entropy(arg)),
        ("least_confidence", lambda: af.least_confidence(arg)),
        ("alamp_score", lambda: af.alamp_score(arg, s)),
        ("select_top", lambda: af.select_top(arg, 1)),
        ("diversify scores", lambda: af.diversify(arg, np.zeros(6, np.int64), 1)),
        ("diversify classes", lambda: af.diversify(s, arg, 1)),
        ("kcenter_greedy", lambda: af.kcenter_greedy(arg, [0], 1)),
        ("kcenter labeled", lambda: af.kcenter_greedy(P, arg, 1)),
        ("badge probs", lambda: af.badge(arg, P, 1)),
        ("badge embeddings", lambda: af.badge(P, arg, 1)),
        ("badge exclude", lambda: af.badge(P, P, 1, exclude=arg)),
        ("select_top exclude", lambda: af.select_top(s, 1, exclude=arg)),
    ]


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_is_rejected_with_a_conversion_hint(fmt):
    sp = pytest.importorskip("scipy.sparse")
    M = sp.random(6, 3, density=0.5, format=fmt, random_state=0)
    for _name, call in _kernel_calls(M):
        with pytest.raises(TypeError, match=r"sparse input is not supported.*\.toarray\(\)"):
            call()


def test_zero_d_object_arrays_are_rejected_clearly():
    class Opaque:  # np.asarray makes a 0-d object array of it
        pass

    for name, call in _kernel_calls(Opaque()):
        with pytest.raises(TypeError, match="0-d object array") as info:
            call()
        assert "Opaque" in str(info.value), name


@pytest.mark.parametrize("bad", ["no", "yes", 1, 0, None, np.int64(1)])
def test_largest_accepts_only_bool(bad):
    s = np.array([0.3, 0.1, 0.2])
    with pytest.raises(TypeError, match="largest must be True or False"):
        af.select_top(s, 1, largest=bad)
    with pytest.raises(TypeError, match="largest must be True or False"):
        af.diversify(s, np.array([0, 1, 0]), 1, largest=bad)
    assert af.select_top(s, 1, largest=np.bool_(False)).tolist() == [1]


def test_uint64_index_beyond_int64_is_reported_exactly():
    s = np.array([0.3, 0.1, 0.2])
    with pytest.raises(ValueError, match="holds index 9223372036854775808, out of range"):
        af.select_top(s, 1, exclude=np.array([2**63], dtype=np.uint64))
    with pytest.raises(ValueError, match="holds index 18446744073709551615, out of range"):
        af.kcenter_greedy(np.zeros((3, 2)), np.array([2**64 - 1], dtype=np.uint64), 1)
    assert af.select_top(s, 1, exclude=np.array([0], dtype=np.uint64)).tolist() == [2]


@pytest.mark.parametrize("fn", [af.top2_margin, af.margin])
def test_float32_margin_overflow_raises(fn):
    P = np.array([[0.2, 0.7], [3e38, -3e38]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"probs\[1\]: the top-2 margin .* overflows float32"):
        fn(P)
    # float16 widened to float32 cannot overflow; float64 holds the float32 extremes
    m, _ = af.top2_margin(P.astype(np.float64))
    assert np.isfinite(m).all()


# ---------------------------------------------------------------------------------------------
# one set of checks for every array library (alamp_fast._validate)

_BAD_CALLS = [
    ("select_top", lambda rng: (rng.random(50), 3), {"exclude": np.array([7, 2, 7])}),
    ("select_top", lambda rng: (rng.random(50), 3), {"exclude": np.array([50])}),
    ("select_top", lambda rng: (rng.random(50), 3), {"exclude": np.array([[1, 2]])}),
    ("select_top", lambda rng: (rng.random(50), 3), {"exclude": np.array([0.0, 1.0])}),
    ("select_top", lambda rng: (rng.random(50), 3), {"exclude": np.zeros(49, dtype=bool)}),
    ("select_top", lambda rng: (rng.random((5, 10)), 3), {}),
    ("diversify", lambda rng: (rng.random(50), np.arange(50.0), 3), {}),
    ("diversify", lambda rng: (rng.random(50), np.arange(49), 3), {}),
    ("top2_margin", lambda rng: (rng.random((10, 1)),), {}),
    ("top2_margin", lambda rng: (rng.random(10),), {}),
    ("top2_margin", lambda rng: (rng.integers(0, 3, (10, 3)),), {}),
    ("kcenter_greedy", lambda rng: (rng.random((20, 3)), np.array([1, 1]), 2), {}),
    ("kcenter_greedy", lambda rng: (rng.random(20), np.array([1]), 2), {}),
]


@pytest.mark.parametrize("name, make, kwargs", _BAD_CALLS)
def test_every_backend_raises_the_numpy_error(backend, rng, name, make, kwargs):
    """The GPU checks read shape and dtype from the array itself (no host stand-in) and compute
    ranges and duplicates on the device: the same error, word for word, on every backend."""
    args = make(rng)
    with pytest.raises((TypeError, ValueError)) as want:
        getattr(af, name)(*args, **kwargs)
    with pytest.raises(type(want.value)) as got:
        backend(getattr(af, name), *args, **kwargs)
    assert str(got.value) == str(want.value)


def test_check_int():
    from alamp_fast._validate import IntegerError, check_int

    assert check_int(np.int32(4), "step", low=1) == 4 and type(check_int(3, "x")) is int
    assert check_int(np.array(5), "x") == 5  # 0-d integer arrays, through operator.index
    for bad in (True, np.bool_(False), 2.0, "3", None, np.float64(1.0)):
        with pytest.raises(IntegerError, match=re.escape(f"step must be an integer, got {bad!r}")):
            check_int(bad, "step")
    # IntegerError is both: callers written against either kind keep working
    assert issubclass(IntegerError, TypeError) and issubclass(IntegerError, ValueError)
    with pytest.raises(ValueError, match="init must be >= 2, got 1"):
        check_int(1, "init", low=2)
    with pytest.raises(ValueError, match="k must be <= 9, got 10"):
        check_int(10, "k", high=9)


def test_as_rng():
    from alamp_fast._validate import as_rng

    g = np.random.default_rng(3)
    assert as_rng(g) is g
    assert as_rng(7).random() == np.random.default_rng(7).random()
    for bad in ("abc", True, 1.5):
        with pytest.raises(TypeError, match=rf"seed must be None, .*got {bad!r}"):
            as_rng(bad)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        as_rng(-1)


def test_shape_and_dtype_checks_read_only_attributes():
    """Any object with shape and dtype is checked without touching its memory (torch dtypes
    included, bfloat16 by its name)."""
    torch = pytest.importorskip("torch")
    from alamp_fast import _validate

    class Meta:  # an "array" with no data at all
        def __init__(self, shape, dtype):
            self.shape, self.dtype = shape, dtype

    _validate.check_float(Meta((10**12, 3), np.float32), "probs", 2)
    with pytest.raises(TypeError, match="probs must be float16/32/64, got dtype bfloat16"):
        _validate.check_float(torch.zeros((2, 2), dtype=torch.bfloat16), "probs", 2)
    with pytest.raises(ValueError, match=r"probs must be 2-D, got shape \(4,\)"):
        _validate.check_float(torch.zeros(4), "probs", 2)
    assert _validate.check_index_meta(Meta((0,), np.float32), "exclude", 5) == "empty"
    assert _validate.check_index_meta(torch.zeros(5, dtype=torch.bool), "exclude", 5) == "mask"
    with pytest.raises(TypeError, match="exclude must hold integer indices, got dtype float32"):
        _validate.check_index_meta(torch.zeros(3), "exclude", 5)
    with pytest.raises(ValueError, match=r"labels has 4 entries but scores have 5"):
        _validate.check_labels_meta(Meta((4,), np.int64), "labels", 5)
