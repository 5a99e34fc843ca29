"""The alamp memory shared by the host adapters: row keys, the pool rule, state round trips.

Needs no host library. The reference is a dict from sample id to (margin, top class), rebuilt
from scratch at every query, with the selection done by alamp_fast's direct API.
"""

import subprocess
import sys

import numpy as np
import pytest
from reference import alamp_query as reference_query

import alamp_fast as af
from alamp_fast.integrations._state import AlampMemory, as_row_ids, row_fingerprints


def random_probs(rng, n, n_classes=5, dtype=np.float32):
    return rng.dirichlet(np.ones(n_classes), size=n).astype(dtype)


def assert_same_picks(got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.array_equal(got, want):
        diff = np.flatnonzero(got != want) if got.shape == want.shape else []
        raise AssertionError(
            f"picks differ at {len(diff)} positions (first {list(diff[:5])}):\n"
            f"got  {got[:20].tolist()}\nwant {want[:20].tolist()}"
        )


# -- row fingerprints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int8, np.int32, np.uint16, np.bool_]
)
@pytest.mark.parametrize("n_features", [1, 3, 8])
def test_fingerprints_equal_rows_share_a_key_distinct_rows_do_not(dtype, n_features):
    rng = np.random.default_rng(abs(hash((np.dtype(dtype).str, n_features))) % 2**32)
    n_distinct = 2 if dtype is np.bool_ and n_features == 1 else 50
    base = (rng.random((n_distinct, n_features)) * 100).astype(dtype)
    base = np.unique(base, axis=0)
    rows = rng.integers(0, base.shape[0], size=200)
    X = base[rows]
    k = row_fingerprints(X)
    assert k.dtype == np.int64 and k.shape == (200,)
    # equal rows <=> equal keys
    same_row = rows[:, None] == rows[None, :]
    assert np.array_equal(k[:, None] == k[None, :], same_row)


def test_fingerprints_see_sign_flips_and_column_swaps():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    variants = [x, -x, x[:, ::-1], x * np.array([1.0, -1.0]), x + 1e-12]
    keys = np.concatenate([row_fingerprints(v) for v in variants])
    assert np.unique(keys).size == keys.size


def test_fingerprints_ignore_memory_layout():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(64, 12)).astype(np.float32)
    want = row_fingerprints(X)
    assert np.array_equal(row_fingerprints(np.asfortranarray(X)), want)
    wide = np.zeros((64, 24), dtype=np.float32)
    wide[:, ::2] = X
    assert np.array_equal(row_fingerprints(wide[:, ::2]), want)
    assert np.array_equal(row_fingerprints(X.tolist()), row_fingerprints(X.astype(np.float64)))


def test_fingerprints_empty_pool_and_bad_inputs():
    assert row_fingerprints(np.empty((0, 3))).shape == (0,)
    with pytest.raises(TypeError, match="dtype object"):
        row_fingerprints(np.array([["a", 1]], dtype=object))
    import scipy.sparse as sparse

    with pytest.raises(TypeError, match="sparse"):
        row_fingerprints(sparse.random(5, 4, density=0.5, format="csr"))


def test_row_ids_are_checked():
    assert as_row_ids(np.array([5, 3, 9], dtype=np.uint8), 3).dtype == np.int64
    with pytest.raises(ValueError, match="duplicated id 3"):
        as_row_ids([5, 3, 3], 3)  # small ids: counted
    with pytest.raises(ValueError, match="duplicated id -7"):
        as_row_ids([10**12, -7, 4, -7], 4)  # large or negative ids: sorted
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        as_row_ids([1, 2, 3], 4)
    with pytest.raises(TypeError, match="float64"):
        as_row_ids([1.0, 2.0], 2)


# -- the pool rule: keys survive reordering, shrinking, growing -----------------------------


def _next_pool(rng, ids, picks, next_id, mode):
    """The pool after a query: labeled rows removed, then shuffled / subsampled / grown."""
    ids = np.delete(ids, picks)
    if mode == "shuffle":
        ids = rng.permutation(ids)
    elif mode == "subsample":
        ids = np.sort(rng.choice(ids, size=ids.size * 3 // 4, replace=False))
    elif mode == "grow":
        ids = np.concatenate([ids, np.arange(next_id, next_id + 7)])
        next_id += 7
    return ids, next_id


@pytest.mark.parametrize("diverse", [False, True])
@pytest.mark.parametrize("id_space", ["dense", "sparse"])
def test_memory_matches_reference_when_the_pool_changes(diverse, id_space):
    rng = np.random.default_rng(3 + diverse + 10 * (id_space == "sparse"))
    n_samples = 400
    # sample id -> key: row indices (dense table path) or random 63-bit ids (hash table path)
    names = (np.arange(n_samples + 100) if id_space == "dense"
             else rng.choice(2**62, size=n_samples + 100, replace=False) - 2**61)
    ids, next_id = np.arange(n_samples), n_samples
    memory, ref = AlampMemory(), {}
    for it, mode in enumerate(["delete", "shuffle", "subsample", "grow", "delete", "shuffle"]):
        probs = random_probs(rng, ids.size, dtype=np.float32 if it % 2 else np.float64)
        picks, utility = memory.query(probs, 9, names[ids], diverse=diverse)
        assert_same_picks(picks, reference_query(ref, probs, names[ids], 9, diverse=diverse))
        assert utility.shape == (ids.size,)
        ids, next_id = _next_pool(rng, ids, picks, next_id, mode)
    assert memory.iteration == 6


def test_first_query_is_margin_sampling_and_new_rows_use_the_fallback():
    rng = np.random.default_rng(4)
    probs = random_probs(rng, 50)
    memory = AlampMemory()
    picks, utility = memory.query(probs, 10, np.arange(50))
    assert_same_picks(picks, af.select_top(af.margin(probs), 10, largest=False))
    assert np.array_equal(utility, -af.margin(probs))
    # a new row (key 99) is scored as if its previous margin was 1.0
    probs2 = random_probs(rng, 51)
    keys2 = np.append(np.arange(50), 99)
    _, utility2 = memory.query(probs2, 1, keys2)
    m2 = af.margin(probs2)
    want_new = (np.float32(1.0) - m2[50]) / (np.float32(1.0) + m2[50])
    want_old = (af.margin(probs)[0] - m2[0]) / (af.margin(probs)[0] + m2[0])
    assert utility2[50] == want_new and utility2[0] == want_old


def test_exclude_rows_are_never_picked_but_remembered():
    rng = np.random.default_rng(5)
    probs = random_probs(rng, 30)
    memory = AlampMemory()
    labeled = rng.choice(30, size=10, replace=False)
    picks, _ = memory.query(probs, 20, np.arange(30), exclude=labeled)
    assert not np.isin(picks, labeled).any()
    assert np.array_equal(memory.recall(np.arange(30))[0], af.margin(probs).astype(np.float64))


def test_failed_query_leaves_the_state_untouched():
    rng = np.random.default_rng(6)
    memory = AlampMemory()
    memory.query(random_probs(rng, 20), 3, np.arange(20))
    before = memory.state_dict()
    with pytest.raises(ValueError, match="budget b=30 exceeds"):
        memory.query(random_probs(rng, 20), 30, np.arange(20))
    with pytest.raises(ValueError, match="keys has shape"):
        memory.query(random_probs(rng, 20), 3, np.arange(19))
    with pytest.raises(ValueError, match="finite"):
        memory.query(np.full((20, 3), np.nan), 3, np.arange(20))
    after = memory.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_positional_keys_follow_np_delete_of_the_returned_rows():
    rng = np.random.default_rng(7)
    memory, ref = AlampMemory(), {}
    sample_ids = np.arange(60)
    for _ in range(4):
        keys = memory.positional_keys(sample_ids.size)
        probs = random_probs(rng, sample_ids.size)
        # baal returns a ranking longer than what it labels: only its head is removed
        picks, _ = memory.query(probs, 12, keys)
        assert_same_picks(picks, reference_query(ref, probs, sample_ids, 12))
        sample_ids = np.delete(sample_ids, picks[:5])
    n_last = memory.keys.size
    # the same size means the same rows
    assert np.array_equal(memory.positional_keys(n_last), memory.keys)
    # more rows removed than were returned, or rows added: no positional match
    with pytest.raises(ValueError, match="cannot be matched by position"):
        memory.positional_keys(n_last - 13)
    with pytest.raises(ValueError, match="cannot be matched by position"):
        memory.positional_keys(n_last + 1)


def test_state_dict_round_trip_gives_the_same_next_query():
    rng = np.random.default_rng(8)
    a = AlampMemory()
    keys = rng.choice(10**12, size=100, replace=False)
    a.query(random_probs(rng, 100), 5, keys)
    b = AlampMemory()
    b.load_state_dict(a.state_dict())
    probs = random_probs(rng, 95)
    keys2 = np.delete(keys, a.last_order)
    assert_same_picks(b.query(probs, 7, keys2, diverse=True)[0],
                      a.query(probs, 7, keys2, diverse=True)[0])
    bad = a.state_dict()
    bad["prev_margin"] = -bad["prev_margin"]
    with pytest.raises(ValueError, match="non-negative"):
        AlampMemory().load_state_dict(bad)
    with pytest.raises(ValueError, match="missing keys"):
        AlampMemory().load_state_dict({"keys": keys})


def test_agrees_with_the_strategies_module_when_rows_stay_in_place():
    import alamp_fast.al.strategies as strategies

    rng = np.random.default_rng(9)
    for diverse in (False, True):
        strategy, memory = strategies.Alamp(diverse=diverse), AlampMemory()
        labeled = np.empty(0, dtype=np.int64)
        for _ in range(4):
            probs = random_probs(rng, 200)
            want = strategy.query(probs, 8, labeled=labeled)
            got, _ = memory.query(probs, 8, np.arange(200), exclude=labeled, diverse=diverse)
            assert_same_picks(got, want)
            labeled = np.concatenate([labeled, got])


def test_importing_integrations_imports_no_host():
    code = (
        "import sys, alamp_fast.integrations as i; "
        "hosts = {'modAL', 'skactiveml', 'baal', 'small_text', 'torch'}; "
        "print(sorted(hosts & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import alamp_fast.integrations as integrations

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        integrations.nope  # noqa: B018
