"""select_top and diversify (Algorithm 1) against full sorts and the printed algorithm.

Selections must be identical to the reference, not merely close: the order rule
(score, then lower index) is total, so there is exactly one right answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import assert_exact, layouts_1d
from hypothesis import given
from hypothesis import strategies as st
from kernel_routes import kernels_on_small_inputs  # noqa: F401 (autouse)

import alamp_fast as af

SCORE_DTYPES = [np.float16, np.float32, np.float64, np.int64]


def make_scores(rng, n, dtype, kind):
    if kind == "continuous":
        s = rng.standard_normal(n)
    elif kind == "ties":  # heavy ties: one decimal
        s = np.round(rng.random(n), 1)
    elif kind == "few-values":  # only 3 distinct values, negative ones included, signed zeros
        s = rng.choice([-1.5, -0.0, 0.0, 2.0], n)
    elif kind == "constant-ish":  # almost all equal: the order is the index order
        s = np.where(rng.random(n) < 0.02, 1.0, 0.5)
    else:
        raise ValueError(kind)
    if np.dtype(dtype).kind == "i":
        s = np.round(s * 10)
    return s.astype(dtype)


def make_exclude(rng, n, kind):
    if kind == "none" or n == 0:
        return None
    k = rng.integers(0, n + 1) if kind != "all-but-few" else max(0, n - rng.integers(1, 4))
    idx = rng.choice(n, size=k, replace=False)
    if kind == "mask":
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        return mask
    return idx  # unsorted on purpose


def n_candidates(n, exclude):
    if exclude is None:
        return n
    return n - int(np.count_nonzero(exclude) if exclude.dtype == bool else exclude.size)


def budgets(n_cand):
    """b = 0, 1, a middle value and all candidates."""
    return sorted({0, min(1, n_cand), n_cand // 3, n_cand})


# ---------------------------------------------------------------------------------------------
# select_top


@pytest.mark.parametrize("kind", ["continuous", "ties", "few-values", "constant-ish"])
@pytest.mark.parametrize("dtype", SCORE_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [0, 1, 2, 37, 1000, 3001])
def test_select_top_matches_full_sort(backend, rng, n, dtype, kind):
    scores = make_scores(rng, n, dtype, kind)
    for ex_kind in ["none", "indices", "mask", "all-but-few"]:
        exclude = make_exclude(rng, n, ex_kind)
        for largest in (True, False):
            for b in budgets(n_candidates(n, exclude)):
                got = backend(af.select_top, scores, b, exclude=exclude, largest=largest)
                want = ref.select_top(scores, b, exclude, largest)
                assert_exact(
                    got, want, f"select_top(b={b}, {ex_kind=}, {largest=})", dtype=np.int64
                )


def test_select_top_tie_at_the_boundary_takes_lowest_indices(backend):
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5, 0.9, 0.5])
    assert_exact(backend(af.select_top, scores, 4), [1, 5, 0, 2], "b=4")
    assert_exact(backend(af.select_top, scores, 4, exclude=[0, 5]), [1, 2, 4, 6], "excluded")
    assert_exact(backend(af.select_top, scores, 3, largest=False), [3, 0, 2], "smallest")


@pytest.mark.parametrize("dtype", SCORE_DTYPES, ids=lambda d: np.dtype(d).name)
def test_select_top_layout_does_not_change_result(backend, rng, dtype):
    scores = make_scores(rng, 2001, dtype, "ties")
    exclude = rng.choice(2001, 300, replace=False)
    want = backend(af.select_top, scores, 500, exclude=exclude)
    for name, view in layouts_1d(scores, rng):
        ex_views = dict(layouts_1d(exclude, rng))
        got = backend(af.select_top, view, 500, exclude=ex_views["stride-3"])
        assert_exact(got, want, f"select_top on {name}")


def test_select_top_large_int64_scores_keep_their_order():
    scores = np.array([2**53, 2**53 + 1, 2**53 + 3], dtype=np.int64)
    assert_exact(af.select_top(scores, 3), [2, 1, 0], "select_top on int64 > 2**53")


# hypothesis: small pools drawn from few values so ties, signed zeros and negatives dominate

VALUES = [-2.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 3.0]


@st.composite
def pools(draw, max_n=40):
    n = draw(st.integers(0, max_n))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int32]))
    if draw(st.booleans()):
        vals = draw(st.lists(st.sampled_from(VALUES), min_size=n, max_size=n))
    else:
        vals = draw(st.lists(st.floats(-1e4, 1e4, width=16), min_size=n, max_size=n))
    scores = np.array(vals, dtype=np.float64)
    scores = (np.round(scores) if np.dtype(dtype).kind == "i" else scores).astype(dtype)
    ex = draw(st.lists(st.integers(0, max(n - 1, 0)), unique=True, max_size=n)) if n else []
    exclude = np.array(ex, dtype=np.int64) if draw(st.booleans()) else None
    n_cand = n - (0 if exclude is None else exclude.size)
    b = draw(st.integers(0, n_cand))
    largest = draw(st.booleans())
    return scores, exclude, b, largest


@given(pool=pools())
def test_select_top_property_equals_reference(backend, pool):
    scores, exclude, b, largest = pool
    got = backend(af.select_top, scores, b, exclude=exclude, largest=largest)
    assert_exact(got, ref.select_top(scores, b, exclude, largest), "select_top", dtype=np.int64)


@given(pool=pools())
def test_select_top_property_prefix_and_order(pool):
    """The b-selection is the prefix of the (b+1)-selection, ordered by (score, index)."""
    scores, exclude, b, largest = pool
    full = af.select_top(scores, b, exclude=exclude, largest=largest)
    for k in range(b + 1):
        assert_exact(
            af.select_top(scores, k, exclude=exclude, largest=largest), full[:k], f"prefix k={k}"
        )
    s = scores.astype(np.float64)[full] * (1 if largest else -1)
    assert np.all(s[:-1] >= s[1:]), "scores not best-first"
    tie = s[:-1] == s[1:]
    assert np.all(full[:-1][tie] < full[1:][tie]), "equal scores not in index order"
    assert len(set(full.tolist())) == b
    if exclude is not None:
        assert not set(full.tolist()) & set(exclude.tolist())


@given(pool=pools(), data=st.data())
def test_select_top_property_exclude_and_negation(pool, data):
    """exclude = selecting from the remaining rows; largest=False = largest on -scores."""
    scores, exclude, b, largest = pool
    got = af.select_top(scores, b, exclude=exclude, largest=largest)
    keep = np.setdiff1d(np.arange(scores.size), [] if exclude is None else exclude)
    sub = af.select_top(scores[keep], b, largest=largest)
    assert_exact(got, keep[sub], "exclude vs subset")
    neg = af.select_top(-scores, b, exclude=exclude, largest=not largest)
    assert_exact(got, neg, "negated scores")
    if exclude is not None:  # the same set as a boolean mask, or listed in another order
        mask = np.zeros(scores.size, dtype=bool)
        mask[exclude] = True
        assert_exact(af.select_top(scores, b, exclude=mask, largest=largest), got, "mask")
        shuffled = data.draw(st.permutations(exclude.tolist()))
        assert_exact(
            af.select_top(scores, b, exclude=np.array(shuffled, dtype=np.int64), largest=largest),
            got,
            "exclude order",
        )


@given(pool=pools(), data=st.data())
def test_select_top_property_permutation(pool, data):
    """Permuting the pool permutes the answer's scores into the same multiset; with distinct
    scores the selection maps through the permutation exactly."""
    scores, _, b, largest = pool
    perm = np.array(data.draw(st.permutations(range(scores.size))), dtype=np.int64)
    got = af.select_top(scores, b, largest=largest)
    got_p = af.select_top(scores[perm], b, largest=largest)
    assert_exact(scores[perm][got_p], scores[got], "selected scores after permutation")
    if np.unique(scores).size == scores.size:
        assert_exact(perm[got_p], got, "selection through the permutation")


# ---------------------------------------------------------------------------------------------
# diversify


def make_pseudo(rng, n, kind):
    if kind == "one-class":
        return np.full(n, 3, dtype=np.int64)
    if kind == "few":
        return rng.integers(0, 3, n)
    if kind == "imbalanced":  # geometric class sizes, like the paper's imbalanced pools
        return np.minimum(rng.geometric(0.3, n) - 1, 20)
    if kind == "many":
        return rng.integers(0, max(1, n // 2), n)
    if kind == "distinct":
        return rng.permutation(n)
    if kind == "negative-sparse":  # exercises the relabelling path (not usable as bucket ids)
        return rng.choice([-7, 10**12, 5, -(2**40)], n)
    raise ValueError(kind)


PSEUDO_KINDS = ["one-class", "few", "imbalanced", "many", "distinct", "negative-sparse"]


@pytest.mark.parametrize("pc_kind", PSEUDO_KINDS)
@pytest.mark.parametrize("dtype", SCORE_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [0, 1, 2, 37, 600])
def test_diversify_matches_algorithm_1(backend, rng, n, dtype, pc_kind):
    pc = make_pseudo(rng, n, pc_kind)
    for kind in ["continuous", "ties", "few-values"]:
        scores = make_scores(rng, n, dtype, kind)
        for ex_kind, largest in [("none", True), ("indices", False), ("mask", True)]:
            exclude = make_exclude(rng, n, ex_kind)
            for b in budgets(n_candidates(n, exclude)):
                got = backend(af.diversify, scores, pc, b, exclude=exclude, largest=largest)
                want = ref.diversify(scores, pc, b, exclude, largest)
                assert_exact(
                    got, want, f"diversify(b={b}, {kind=}, {ex_kind=}, {largest=})", dtype=np.int64
                )


@pytest.mark.parametrize("pc_dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint64])
def test_diversify_integer_label_dtypes(backend, rng, pc_dtype):
    scores = make_scores(rng, 3000, np.float32, "ties")
    pc = rng.integers(0, 100, 3000).astype(pc_dtype)
    for b in (1, 150, 2999):
        assert_exact(
            backend(af.diversify, scores, pc, b),
            ref.diversify(scores, pc, b),
            f"diversify(b={b}, {np.dtype(pc_dtype).name} labels)",
        )


def test_diversify_docstring_example(backend):
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert_exact(backend(af.diversify, scores, np.array([0, 0, 1, 1, 0]), 4), [0, 2, 1, 3], "")


def test_diversify_layout_does_not_change_result(backend, rng):
    scores = make_scores(rng, 1501, np.float64, "ties")
    pc = rng.integers(0, 40, 1501)
    want = backend(af.diversify, scores, pc, 400)
    for (name_s, vs), (name_p, vp) in zip(
        layouts_1d(scores, rng), layouts_1d(pc, rng), strict=True
    ):
        assert_exact(backend(af.diversify, vs, vp, 400), want, f"diversify on {name_s}/{name_p}")


@st.composite
def div_pools(draw, max_n=40):
    scores, exclude, b, largest = draw(pools(max_n))
    n_cls = draw(st.integers(1, 6))
    pc = np.array(
        draw(st.lists(st.integers(0, n_cls - 1), min_size=scores.size, max_size=scores.size)),
        dtype=np.int64,
    )
    return scores, pc, exclude, b, largest


@given(pool=div_pools())
def test_diversify_property_equals_algorithm_1(backend, pool):
    scores, pc, exclude, b, largest = pool
    got = backend(af.diversify, scores, pc, b, exclude=exclude, largest=largest)
    assert_exact(got, ref.diversify(scores, pc, b, exclude, largest), "diversify", dtype=np.int64)


@given(pool=div_pools())
def test_diversify_property_passes(pool):
    """Pass 1 holds the best candidate of every pseudo-class, in select_top order; every pass
    holds at most one sample per class; the result is a prefix-stable set of candidates."""
    scores, pc, exclude, b, largest = pool
    got = af.diversify(scores, pc, b, exclude=exclude, largest=largest)
    order = af.select_top(
        scores,
        scores.size - (0 if exclude is None else exclude.size),
        exclude=exclude,
        largest=largest,
    )
    best_of_class = {}
    for i in order.tolist():
        best_of_class.setdefault(int(pc[i]), i)
    first_pass = [i for i in order.tolist() if best_of_class[int(pc[i])] == i]
    k = min(b, len(first_pass))
    assert_exact(got[:k], first_pass[:k], "first pass")
    # rank within class (0 = best) never decreases along the output: pass r before pass r+1
    rank_in_class = {
        i: sum(1 for j in order.tolist()[: order.tolist().index(i)] if pc[j] == pc[i])
        for i in got.tolist()
    }
    ranks = [rank_in_class[i] for i in got.tolist()]
    assert ranks == sorted(ranks), "passes out of order"
    for r in set(ranks):  # one sample per class per pass
        cls = [int(pc[i]) for i, rk in zip(got.tolist(), ranks, strict=True) if rk == r]
        assert len(cls) == len(set(cls)), f"pass {r} takes a class twice"
    for k2 in range(b + 1):
        assert_exact(
            af.diversify(scores, pc, k2, exclude=exclude, largest=largest), got[:k2], f"prefix {k2}"
        )


@given(pool=div_pools(), data=st.data())
def test_diversify_property_label_values_do_not_matter(pool, data):
    """Only which samples share a pseudo-class matters: any injective relabelling (negative,
    huge, sparse) gives the same selection; one class or all-distinct classes = select_top."""
    scores, pc, exclude, b, largest = pool
    got = af.diversify(scores, pc, b, exclude=exclude, largest=largest)
    codes = data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=6, max_size=6, unique=True))
    relabelled = np.array(codes, dtype=np.int64)[pc]
    assert_exact(
        af.diversify(scores, relabelled, b, exclude=exclude, largest=largest), got, "relabelled"
    )
    top = af.select_top(scores, b, exclude=exclude, largest=largest)
    one = np.zeros(scores.size, dtype=np.int64)
    assert_exact(af.diversify(scores, one, b, exclude=exclude, largest=largest), top, "one class")
    distinct = np.arange(scores.size, dtype=np.int64)[::-1].copy()
    assert_exact(
        af.diversify(scores, distinct, b, exclude=exclude, largest=largest), top, "distinct classes"
    )


@given(pool=div_pools(), step=st.integers(1, 3), reverse=st.booleans())
def test_selection_property_layout_independent(pool, step, reverse):
    """Strided and reversed views of scores / pseudo_class / exclude give the same answers."""
    scores, pc, exclude, b, largest = pool

    def view(a):
        big = np.zeros(a.shape[0] * step, dtype=a.dtype)
        big[::step] = a
        v = big[::step]
        return np.ascontiguousarray(v[::-1])[::-1] if reverse else v

    ex_v = None if exclude is None else view(exclude)
    assert_exact(
        af.select_top(view(scores), b, exclude=ex_v, largest=largest),
        af.select_top(scores, b, exclude=exclude, largest=largest),
        "select_top",
    )
    assert_exact(
        af.diversify(view(scores), view(pc), b, exclude=ex_v, largest=largest),
        af.diversify(scores, pc, b, exclude=exclude, largest=largest),
        "diversify",
    )


def test_diversify_large_int64_scores_keep_their_order():
    scores = np.array([2**53, 2**53 + 1, 2**53 + 3, -(2**63)], dtype=np.int64)
    assert_exact(af.diversify(scores, np.zeros(4, np.int64), 4), [2, 1, 0, 3], "int64 > 2**53")
    assert_exact(
        af.select_top(scores, 4, largest=False), [3, 0, 1, 2], "int64 ascending incl. int64 min"
    )


@pytest.mark.parametrize("pc_kind", PSEUDO_KINDS)
def test_diversify_small_input_numpy_route_equals_heap(monkeypatch, rng, pc_kind):
    from alamp_fast import _parallel

    pc = make_pseudo(rng, 5000, pc_kind)
    scores = make_scores(rng, 5000, np.float32, "ties")
    exclude = make_exclude(rng, 5000, "indices")
    args = [(b, largest) for b in (1, 17, 400, 4000) for largest in (True, False)]
    args = [(b, lg) for b, lg in args if b <= n_candidates(5000, exclude)]
    want = [af.diversify(scores, pc, b, exclude=exclude, largest=lg) for b, lg in args]
    monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", -1)
    got = [af.diversify(scores, pc, b, exclude=exclude, largest=lg) for b, lg in args]
    for w, g, (b, lg) in zip(want, got, args, strict=True):
        assert_exact(g, w, f"diversify(b={b}, largest={lg}): heap vs numpy route", dtype=np.int64)
