"""Strategies against literal references: hand-computed picks and slow transcriptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref

import alamp_fast as af
from alamp_fast.al.strategies import (
    NEW_ROW_PREV_CERTAINTY,
    STRATEGIES,
    Alamp,
    CoreSet,
    MarginSampling,
    RandomSampling,
    get_strategy,
)

# ---------------------------------------------------------------- slow literal references


# the literal references of tests/reference.py, with list results where tests compare lists


def ref_margin_top(probs):
    return ref.top2_margin(np.asarray(probs))


def ref_rank(scores, exclude=(), largest=True):
    return ref.ranked(scores, list(exclude), largest)


def ref_diversify(scores, pseudo, b, exclude=(), largest=True):
    return ref.diversify(scores, pseudo, b, list(exclude), largest).tolist()


def ref_alamp(prev, cur):
    return ref.alamp_score(np.asarray(prev), np.asarray(cur))


def random_probs(rng, n, c, dtype=np.float64):
    p = rng.random((n, c)) ** 3
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(dtype)


# ---------------------------------------------------------------- literal hand-computed cases

# Pool of 5 rows, 3 classes; margins and top classes written beside each row.
P0 = np.array([
    [0.8, 0.1, 0.1],    # margin 0.7, top 0
    [0.3, 0.6, 0.1],    # margin 0.3, top 1
    [0.2, 0.2, 0.6],    # margin 0.4, top 2
    [0.5, 0.4, 0.1],    # margin 0.1, top 0
    [0.1, 0.45, 0.45],  # margin 0.0, top 1 (tie: lowest class)
])
P1 = np.array([
    [0.3, 0.55, 0.15],  # margin 0.25, top 1; alamp (0.7-0.25)/0.95 = 0.4737
    [0.2, 0.5, 0.3],    # margin 0.2,  top 1; alamp (0.3-0.2)/0.5   = 0.2
    [0.15, 0.4, 0.45],  # margin 0.05, top 2; alamp (0.4-0.05)/0.45 = 0.7778
    [0.5, 0.45, 0.05],  # margin 0.05, top 0; alamp (0.1-0.05)/0.15 = 0.3333
    [0.2, 0.3, 0.5],    # margin 0.2,  top 2 (labeled at iteration 1)
])


def test_alamp_literal_two_iterations():
    s = Alamp()
    assert s.query(P0, 1).tolist() == [4]  # first iteration: smallest margin
    st = s.state_dict()
    np.testing.assert_allclose(st["prev_margin"], [0.7, 0.3, 0.4, 0.1, 0.0], atol=1e-12)
    assert st["prev_top_class"].tolist() == [0, 1, 2, 0, 1]
    assert int(st["iteration"]) == 1

    assert s.query(P1, 2, labeled=[4]).tolist() == [2, 0]  # largest relative margin drops
    st = s.state_dict()
    np.testing.assert_allclose(st["prev_margin"], [0.25, 0.2, 0.05, 0.05, 0.2], atol=1e-12)
    assert st["prev_top_class"].tolist() == [1, 1, 2, 0, 2]
    assert int(st["iteration"]) == 2
    # Margin sampling on the same probabilities picks differently: the test can fail.
    assert MarginSampling().query(P1, 2, labeled=[4]).tolist() == [2, 3]


def test_alamp_div_uses_previous_top_class():
    s = Alamp(diverse=True)
    s.query(P0, 1)
    # ranking 2 (0.78), 0 (0.47), 3 (0.33), 1 (0.2); previous top classes 2, 0, 0, 1:
    # row 3 repeats class 0, so the first pass is 2, 0, 1.
    assert s.query(P1, 3, labeled=[4]).tolist() == [2, 0, 1]
    # With the *current* top classes (row 0 moved to class 1) it would have been 2, 0, 3.
    _, cur_top = af.top2_margin(P1)
    assert ref_diversify(ref_alamp([0.7, 0.3, 0.4, 0.1, 0.0], ref_margin_top(P1)[0]),
                         cur_top.tolist(), 3, exclude=[4]) == [2, 0, 3]


def test_margin_div_uses_current_prediction():
    q = np.array([
        [0.5, 0.45, 0.05],  # margin 0.05, top 0
        [0.48, 0.42, 0.1],  # margin 0.06, top 0
        [0.1, 0.5, 0.4],    # margin 0.1,  top 1
        [0.3, 0.1, 0.6],    # margin 0.3,  top 2
    ])
    assert MarginSampling().query(q, 3).tolist() == [0, 1, 2]
    assert MarginSampling(diverse=True).query(q, 3).tolist() == [0, 2, 3]
    assert MarginSampling(diverse=True).query(q, 4).tolist() == [0, 2, 3, 1]


def test_random_div_covers_current_predicted_classes():
    rng = np.random.default_rng(11)
    probs = random_probs(rng, 200, 6)
    _, top = ref_margin_top(probs)
    labeled = rng.choice(200, 30, replace=False)
    n_avail = len(set(top[np.setdiff1d(np.arange(200), labeled)].tolist()))
    picks = get_strategy("random-div", seed=5).query(probs, n_avail, labeled=labeled)
    assert len(set(top[picks].tolist())) == n_avail  # one per predicted class in pass one
    assert not np.isin(picks, labeled).any()


def test_literal_single_measure_strategies():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1]])
    assert get_strategy("margin").query(probs, 2).tolist() == [2, 1]
    assert get_strategy("entropy").query(probs, 2).tolist() == [1, 3]  # H: 1.09, 0.80, 0.69
    assert get_strategy("least_confidence").query(probs, 2).tolist() == [1, 2]
    assert get_strategy("least_confidence").query(probs, 2, labeled=[1]).tolist() == [2, 3]


def test_coreset_literal():
    X = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    # farthest from {0}: 10; then from {0, 10}: 4 and 6 both at distance 4 -> lower index 3.
    assert CoreSet().query(None, 2, labeled=[0], features=X).tolist() == [2, 3]
    with pytest.raises(ValueError, match="features"):
        CoreSet().query(None, 1, labeled=[0])


# ---------------------------------------------------------------- against the references


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uncertainty_strategies_match_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(20, 80)), int(rng.integers(2, 7))
    probs = np.round(random_probs(rng, n, c, dtype), 2)  # rounding makes ties
    labeled = rng.choice(n, int(rng.integers(0, n // 2)), replace=False)
    b = int(rng.integers(0, n - labeled.size + 1))
    p64 = probs.astype(np.float64)
    margin, top = ref_margin_top(p64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p64 > 0, p64 * np.log(p64), 0).sum(axis=1)
    lc = 1 - p64.max(axis=1)
    # Compare ranks computed on the kernels' own (float32) outputs, so rounding cannot
    # reorder near-ties; the kernels themselves are checked against these in the core tests.
    m_k, _ = af.top2_margin(probs)
    np.testing.assert_allclose(m_k, margin, atol=1e-6)
    np.testing.assert_allclose(af.entropy(probs), ent, atol=1e-5)
    cases = {
        "margin": ref_rank(m_k, labeled, largest=False)[:b],
        "entropy": ref_rank(af.entropy(probs), labeled)[:b],
        "least_confidence": ref_rank(af.least_confidence(probs), labeled)[:b],
        "margin-div": ref_diversify(m_k, top, b, labeled, largest=False),
    }
    np.testing.assert_allclose(af.least_confidence(probs), lc, atol=1e-6)
    for name, expected in cases.items():
        got = get_strategy(name).query(probs, b, labeled=labeled)
        assert got.dtype == np.int64
        assert got.tolist() == expected, name


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("diverse", [False, True])
def test_alamp_three_iterations_match_reference(seed, diverse):
    rng = np.random.default_rng(100 + seed)
    n, c, b = 60, 5, 7
    s = Alamp(diverse=diverse)
    labeled: list[int] = []
    prev_m = prev_top = None
    for _ in range(3):
        probs = random_probs(rng, n, c)
        m, top = ref_margin_top(probs)
        if prev_m is None:  # margin fallback at the first iteration
            expected = (ref_diversify(m, top, b, labeled, largest=False) if diverse
                        else ref_rank(m, labeled, largest=False)[:b])
        else:
            score = ref_alamp(prev_m, m)
            expected = (ref_diversify(score, prev_top, b, labeled) if diverse
                        else ref_rank(score, labeled)[:b])
        got = s.query(probs, b, labeled=labeled)
        assert got.tolist() == expected
        labeled += got.tolist()
        prev_m, prev_top = m, top
    np.testing.assert_allclose(s.state_dict()["prev_margin"], prev_m, atol=1e-12)
    assert s.state_dict()["prev_top_class"].tolist() == prev_top.tolist()


@pytest.mark.parametrize("seed", range(6))
def test_alamp_first_iteration_equals_margin(seed):
    rng = np.random.default_rng(seed)
    probs = np.round(random_probs(rng, 300, 4, np.float32), 3)
    labeled = rng.choice(300, 40, replace=False)
    assert np.array_equal(Alamp().query(probs, 50, labeled=labeled),
                          MarginSampling().query(probs, 50, labeled=labeled))
    assert np.array_equal(Alamp(diverse=True).query(probs, 50, labeled=labeled),
                          MarginSampling(diverse=True).query(probs, 50, labeled=labeled))


def test_alamp_certainty_measures():
    rng = np.random.default_rng(3)
    p0, p1 = random_probs(rng, 40, 4), random_probs(rng, 40, 4)
    conf = Alamp(certainty="confidence")
    conf.query(p0, 2)
    expected = ref_rank(ref_alamp(p0.max(axis=1), p1.max(axis=1)), [])[:5]
    assert conf.query(p1, 5).tolist() == expected

    def neg_ent(p):
        return np.log(p.shape[1]) + (p * np.log(p)).sum(axis=1)

    ent = Alamp(certainty="neg_entropy")
    ent.query(p0, 2)
    expected = ref_rank(ref_alamp(neg_ent(p0), neg_ent(p1)), [])[:5]
    assert ent.query(p1, 5).tolist() == expected

    calls = []
    custom = Alamp(certainty=lambda p: (calls.append(1), p[:, 0].copy())[1])
    custom.query(p0, 1)
    assert custom.query(p1, 3).tolist() == ref_rank(ref_alamp(p0[:, 0], p1[:, 0]), [])[:3]
    assert len(calls) == 2
    with pytest.raises(ValueError, match="certainty"):
        Alamp(certainty="bogus")


# ---------------------------------------------------------------- state: rows, fallback, I/O


def test_appended_rows_use_margin_fallback():
    rng = np.random.default_rng(21)
    n_old, n_new = 50, 20
    s = Alamp()
    p0 = random_probs(rng, n_old, 4)
    s.query(p0, 5)
    p1 = random_probs(rng, n_old + n_new, 4)
    m1, _ = ref_margin_top(p1)
    m0, _ = ref_margin_top(p0)
    prev = np.concatenate([m0, np.full(n_new, NEW_ROW_PREV_CERTAINTY)])
    expected_scores = ref_alamp(prev, m1)
    scores, largest, _ = s.scores(p1)
    assert largest
    np.testing.assert_allclose(scores, expected_scores, atol=1e-12)
    # Among the appended rows alone the order is margin sampling's.
    only_new = s.query(p1, n_new, labeled=np.arange(n_old))
    assert only_new.tolist() == ref_rank(m1, range(n_old), largest=False)
    st = s.state_dict()
    assert st["prev_margin"].shape == (n_old + n_new,) and not np.isnan(st["prev_margin"]).any()


def test_alamp_div_new_rows_take_current_top_class():
    rng = np.random.default_rng(8)
    s = Alamp(diverse=True)
    p0 = random_probs(rng, 30, 3)
    s.query(p0, 1)
    p1 = random_probs(rng, 40, 3)
    _, prev_top = ref_margin_top(p0)
    _, cur_top = ref_margin_top(p1)
    _, _, pseudo = s.scores(p1)
    assert pseudo.tolist() == prev_top.tolist() + cur_top[30:].tolist()


def test_shrunk_pool_needs_remap_and_remap_matches_reference():
    rng = np.random.default_rng(4)
    s = Alamp()
    p0 = random_probs(rng, 10, 3)
    s.query(p0, 2)
    p1 = random_probs(rng, 6, 3)
    before = s.state_dict()
    with pytest.raises(ValueError, match="remap"):
        s.query(p1, 2)
    after = s.state_dict()  # a failed query leaves the state untouched
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)
    old_rows = np.array([9, 3, -1, 0, 5, -1])
    s.remap(old_rows)
    m0, t0 = ref_margin_top(p0)
    st = s.state_dict()
    np.testing.assert_allclose(st["prev_margin"], [m0[9], m0[3], np.nan, m0[0], m0[5], np.nan])
    assert st["prev_top_class"].tolist() == [t0[9], t0[3], -1, t0[0], t0[5], -1]
    m1, _ = ref_margin_top(p1)
    prev = np.where(old_rows >= 0, m0[np.maximum(old_rows, 0)], NEW_ROW_PREV_CERTAINTY)
    assert s.query(p1, 3).tolist() == ref_rank(ref_alamp(prev, m1))[:3]
    with pytest.raises(ValueError, match="outside"):
        s.remap([0, 6])
    with pytest.raises(ValueError, match="same old row"):
        s.remap([1, 1, -1])


@pytest.mark.parametrize("name", STRATEGIES)
def test_state_dict_round_trip_resumes_identically(name):
    rng = np.random.default_rng(31)
    n = 80
    X = rng.standard_normal((n, 3))
    probs = [random_probs(rng, n, 4) for _ in range(3)]
    a = get_strategy(name, seed=9)
    labeled = list(range(5))
    picks_a = []
    for it in range(3):
        if it == 2:
            state = {k: v.copy() for k, v in a.state_dict().items()}
        p = a.query(probs[it], 4, labeled=labeled, features=X)
        labeled += p.tolist()
        picks_a.append(p.tolist())
    for v in state.values():
        assert isinstance(v, np.ndarray)
    b = get_strategy(name, seed=1234)  # a different seed: the state must carry it
    b.load_state_dict(state)
    assert b.query(probs[2], 4, labeled=labeled[:-4], features=X).tolist() == picks_a[2]


def test_state_before_first_query_and_bad_states():
    s = Alamp()
    st = s.state_dict()
    assert st["prev_margin"].shape == (0,) and int(st["iteration"]) == 0
    s.load_state_dict(st)
    with pytest.raises(ValueError, match="missing"):
        s.load_state_dict({"iteration": np.array(0)})
    bad = {"iteration": np.array(1), "prev_margin": np.array([0.5, np.nan]),
           "prev_top_class": np.array([0, 1])}
    with pytest.raises(ValueError, match="NaN exactly where"):
        s.load_state_dict(bad)
    bad["prev_margin"] = np.array([-0.5, np.nan])
    bad["prev_top_class"] = np.array([0, -1])
    with pytest.raises(ValueError, match="non-negative"):
        s.load_state_dict(bad)


def test_reset_forgets():
    rng = np.random.default_rng(2)
    s = Alamp()
    s.query(random_probs(rng, 20, 3), 2)
    s.reset()
    assert s.iteration == 0 and s.state_dict()["prev_margin"].size == 0


# ---------------------------------------------------------------- random, factory, errors


def test_random_reproducible_and_excludes_labeled():
    X = np.zeros((100, 2))
    labeled = np.arange(0, 100, 3)
    a = RandomSampling(seed=7).query(None, 20, labeled=labeled, features=X)
    b = RandomSampling(seed=7).query(None, 20, labeled=labeled, features=X)
    c = RandomSampling(seed=8).query(None, 20, labeled=labeled, features=X)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.unique(a).size == 20 and not np.isin(a, labeled).any()
    s = RandomSampling(seed=7)
    s.query(None, 5, features=X)
    assert not np.array_equal(s.query(None, 5, features=X), RandomSampling(seed=7).query(
        None, 5, features=X))  # draws depend on the iteration
    with pytest.raises(ValueError, match="pool size"):
        RandomSampling(seed=1).query(None, 1)
    with pytest.raises(ValueError, match="seed"):
        RandomSampling(seed=-1)


def test_random_is_uniform_enough():
    # 2,000 draws of 1 out of 4 rows: each row ~500 times; a biased sampler fails.
    X = np.zeros((4, 1))
    counts = np.zeros(4)
    s = RandomSampling(seed=0)
    for _ in range(2000):
        counts[s.query(None, 1, features=X)[0]] += 1
    assert np.all(np.abs(counts - 500) < 5 * math.sqrt(2000 * 0.25 * 0.75))


def test_get_strategy_names_and_aliases():
    for name in STRATEGIES:
        assert get_strategy(name, seed=0).name == name
    assert get_strategy("rand-div", seed=0).name == "random-div"
    assert get_strategy("marg-div").name == "margin-div"
    assert get_strategy("Least-Confidence").name == "least_confidence"
    with pytest.raises(ValueError, match="unknown strategy 'badge'"):
        get_strategy("badge")
    with pytest.raises(TypeError):
        get_strategy("margin", certainty="margin")


def test_bad_inputs_raise():
    probs = np.full((5, 3), 1 / 3)
    with pytest.raises(ValueError, match="probs"):
        get_strategy("margin").query(None, 1)
    with pytest.raises(ValueError, match="2-D"):
        get_strategy("margin").query(probs[0], 1)
    with pytest.raises(ValueError):
        get_strategy("margin").query(probs, 6)
    with pytest.raises(ValueError):
        get_strategy("margin").query(probs, 1, labeled=[7])
    with pytest.raises(TypeError, match="integer"):
        get_strategy("margin").query(probs, 1, labeled=[0.5])
    with pytest.raises(ValueError):
        get_strategy("alamp").query(np.full((5, 3), np.nan), 1)
