"""kcenter_greedy against a reference that recomputes every distance at every step (float64)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import reference as ref
from conftest import assert_exact, layouts_2d
from hypothesis import given
from hypothesis import strategies as st

import alamp_fast as af

DTYPES = [np.float16, np.float32, np.float64]


def make_labeled(rng, n, kind):
    if kind == "empty":
        return np.empty(0, dtype=np.int64)
    if kind == "one":
        return rng.choice(n, 1)
    if kind == "some":
        return rng.choice(n, max(1, n // 10), replace=False)
    if kind == "most":  # few candidates left: b = all candidates stays cheap for the reference
        return rng.choice(n, n - min(n, 12), replace=False)
    raise ValueError(kind)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", [(1, 3), (2, 1), (40, 7), (90, 2), (400, 16), (1000, 5), (200, 96)])
def test_kcenter_matches_reference(backend, rng, n, d, dtype):
    X = (rng.standard_normal((n, d)) * rng.uniform(0.5, 4, d)).astype(dtype)
    # the reference costs n * |labeled| * d per step: "most" only on the smaller pools
    for lab_kind in ["empty", "one", "some"] + (["most"] if n <= 100 else []):
        labeled = make_labeled(rng, n, lab_kind)
        n_cand = n - labeled.size
        # greedy picks are prefix-stable (b = 1 is the first pick of b = 25; the hypothesis
        # test checks small b): one run at b = all candidates or 25, and b = 0
        b = n_cand if n_cand <= 40 else 25
        assert_exact(backend(af.kcenter_greedy, X, labeled, 0), [], "b=0", dtype=np.int64)
        got = backend(af.kcenter_greedy, X, labeled, b)
        want = ref.kcenter_greedy(X, labeled, b)
        assert_exact(got, want, f"kcenter(b={b}, {lab_kind} labeled)", dtype=np.int64)
        # the quantity k-center minimises (equal selections must give equal radii)
        assert ref.covering_radius(X, np.r_[labeled, got]) == ref.covering_radius(
            X, np.r_[labeled, want]
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_kcenter_integer_features_with_ties(backend, rng, dtype):
    # small integers: every squared distance is exact in any summation order, so ties are
    # real ties and must go to the lowest index; duplicates give zero distances
    X = rng.integers(0, 3, (500, 3)).astype(dtype)
    for labeled in (np.empty(0, dtype=np.int64), rng.choice(500, 5, replace=False)):
        got = backend(af.kcenter_greedy, X, labeled, 40)
        assert_exact(got, ref.kcenter_greedy(X, labeled, 40), f"|labeled|={labeled.size}")


def test_kcenter_empty_labeled_starts_at_row_0(backend, rng):
    X = rng.standard_normal((200, 4))
    got = backend(af.kcenter_greedy, X, np.empty(0, dtype=np.int64), 5)
    assert got[0] == 0
    # then the farthest point from row 0, and so on
    assert got[1] == np.argmax(((X - X[0]) ** 2).sum(axis=1))
    assert_exact(got, ref.kcenter_greedy(X, [], 5), "empty labeled")
    assert_exact(backend(af.kcenter_greedy, X, [], 5), got, "labeled=[]")
    assert_exact(backend(af.kcenter_greedy, X, None, 5), got, "labeled=None")


def test_kcenter_identical_points_go_in_index_order(backend):
    X = np.ones((6, 3))
    assert_exact(backend(af.kcenter_greedy, X, np.array([2]), 5), [0, 1, 3, 4, 5], "all equal")


def test_kcenter_zero_features(backend):
    # no coordinates: every distance is 0, so the picks are the candidates in index order
    X = np.zeros((6, 0))
    assert_exact(backend(af.kcenter_greedy, X, np.array([1]), 4), [0, 2, 3, 4], "d=0")
    assert_exact(backend(af.kcenter_greedy, X, np.empty(0, dtype=np.int64), 2), [0, 1], "d=0")


def test_kcenter_docstring_example(backend):
    X = np.array([[0.0], [1.0], [5.0], [10.0]])
    assert_exact(backend(af.kcenter_greedy, X, np.array([0]), 2), [3, 2], "docstring")


def test_kcenter_mask_equals_indices(backend, rng):
    X = rng.standard_normal((300, 6)).astype(np.float32)
    idx = rng.choice(300, 30, replace=False)
    mask = np.zeros(300, dtype=bool)
    mask[idx] = True
    want = backend(af.kcenter_greedy, X, idx, 20)
    assert_exact(backend(af.kcenter_greedy, X, mask, 20), want, "mask")
    assert_exact(backend(af.kcenter_greedy, X, np.sort(idx), 20), want, "sorted labeled")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kcenter_layout_does_not_change_result(backend, rng, dtype):
    X = rng.standard_normal((257, 9)).astype(dtype)
    labeled = rng.choice(257, 20, replace=False)
    want = backend(af.kcenter_greedy, X, labeled, 30)
    for name, view in layouts_2d(X, rng):
        assert_exact(backend(af.kcenter_greedy, view, labeled, 30), want, f"kcenter on {name}")


def test_kcenter_greedy_radius_never_grows(rng):
    """Each pick is the current farthest point, so the pick distances are non-increasing and the
    last one bounds every remaining point's distance (the 2-approximation's certificate)."""
    X = rng.standard_normal((800, 8))
    labeled = rng.choice(800, 10, replace=False)
    got = af.kcenter_greedy(X, labeled, 60)
    centers = list(labeled)
    pick_d = []
    for i in got.tolist():
        pick_d.append(np.sqrt(((X[centers] - X[i]) ** 2).sum(axis=1)).min())
        centers.append(i)
    assert np.all(np.diff(pick_d) <= 0)
    assert ref.covering_radius(X, centers[:-1]) == pytest.approx(pick_d[-1], rel=1e-12)


def test_kcenter_real_caltech_features(data_dir, rng):
    path = data_dir / "caltech101" / "feats_mobilenetv1_train.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with np.load(path) as d:
        rows = np.sort(rng.choice(d["Xq"].shape[0], 600, replace=False))
        X = (d["Xq"][rows].astype(np.float32) - d["zero_point"]) * d["scale"]
    labeled = rng.choice(600, 20, replace=False)
    got = af.kcenter_greedy(X, labeled, 20)
    want = ref.kcenter_greedy(X, labeled, 20)
    assert_exact(got, want, "kcenter on Caltech-101 features")
    assert ref.covering_radius(X, np.r_[labeled, got]) == ref.covering_radius(
        X, np.r_[labeled, want]
    )


def test_kcenter_features_far_from_origin():
    rng = np.random.default_rng(0)
    X = (1000 + 0.01 * rng.standard_normal((40, 4))).astype(np.float32)
    labeled = np.arange(10)
    # the exact answer is [34]; a float32 GEMM on uncentred data gave [39]
    assert_exact(
        af.kcenter_greedy(X, labeled, 1),
        ref.kcenter_greedy(X, labeled, 1),
        "kcenter on offset features",
    )


@st.composite
def small_pools(draw):
    n = draw(st.integers(1, 25))
    d = draw(st.integers(1, 3))
    vals = draw(st.lists(st.integers(-2, 2), min_size=n * d, max_size=n * d))
    X = np.array(vals, dtype=np.float64).reshape(n, d)
    labeled = np.array(
        draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)), dtype=np.int64
    )
    b = draw(st.integers(0, n - labeled.size))
    dtype = draw(st.sampled_from(DTYPES))
    order = draw(st.sampled_from(["C", "F"]))
    return np.array(X, dtype=dtype, order=order), labeled, b


@given(pool=small_pools())
def test_kcenter_property_equals_reference(backend, pool):
    # integer coordinates in [-2, 2]: duplicates and equal distances everywhere, all exact
    X, labeled, b = pool
    assert_exact(
        backend(af.kcenter_greedy, X, labeled, b),
        ref.kcenter_greedy(X, labeled, b),
        "kcenter",
        dtype=np.int64,
    )


@given(pool=small_pools())
def test_kcenter_property_prefix_stable(pool):
    """The first k picks of a b-run are the k-run: each step depends only on earlier picks."""
    X, labeled, b = pool
    full = af.kcenter_greedy(X, labeled, b)
    assert len(set(full.tolist()) | set(labeled.tolist())) == b + labeled.size
    for k in range(b):
        assert_exact(af.kcenter_greedy(X, labeled, k), full[:k], f"prefix k={k}")


# ---------------------------------------------------------------------------------------------
# screened fast paths: the float32 screens must never change a pick


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e3, 1e6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kcenter_screen_exact_with_offsets(rng, offset, dtype):
    # near-duplicate rows (distances far below the float32 rounding of |x|^2) and an offset
    # that makes the uncentred float32 dot products useless: picks must stay exact
    base = rng.standard_normal((60, 24))
    X = np.concatenate([base, base + 1e-4 * rng.standard_normal(base.shape)])
    X = (X + offset).astype(dtype)
    labeled = rng.choice(X.shape[0], 7, replace=False)
    b = X.shape[0] - labeled.size
    assert_exact(af.kcenter_greedy(X, labeled, b), ref.kcenter_greedy(X, labeled, b), "screen")


# ---------------------------------------------------------------------------------------------
# the greedy loop's ways: lazy (default), eager, eager through the float16 screen, and the
# lazy loop handing over to the eager one part-way; every way must give the exact picks


GREEDY_WAYS = ["lazy", "eager", "eager-half", "handover"]


def set_greedy_way(monkeypatch, way):
    from alamp_fast import _parallel, coreset

    if way == "eager-half" and not coreset.HAS_F16C:
        pytest.skip("this CPU has no F16C: the float16 screen is never used here")
    if way in ("eager", "eager-half"):
        monkeypatch.setattr(coreset, "_LAZY_MAX_SHARE", 0.0)
    if way == "eager-half":  # on every pool, whatever its size
        monkeypatch.setattr(coreset, "_HALF_MIN_STEPS", 2)
        monkeypatch.setattr(coreset, "_HALF_MIN_D", 1)
        monkeypatch.setattr(coreset, "_HALF_MIN_ELEMS", 0)
        monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 1)  # both builds, with the probe
        monkeypatch.setattr(coreset, "_cores_free", lambda: True)
        monkeypatch.setattr(coreset, "_BUSY_SHARE", 0.0)
    if way == "handover":  # a tiny budget: the eager steps take over after a few picks
        monkeypatch.setattr(coreset, "_LAZY_MAX_SHARE", 1e-3)


def greedy_pools(rng):
    """(name, X, labeled, b): pools that stress the screens' bounds and the lazy loop's
    heap order (ties, duplicates, offsets, magnitudes, equidistant rows)."""
    base = rng.standard_normal((60, 24))
    near = np.concatenate([base, base + 1e-4 * rng.standard_normal(base.shape)])
    wide = rng.standard_normal((150, 20)) * np.logspace(-7, 3, 20)  # float16 subnormals
    clustered = (rng.standard_normal((8, 16)) * 10)[rng.integers(0, 8, 400)]
    clustered = clustered + rng.standard_normal((400, 16))
    yield "gauss", rng.standard_normal((500, 40)).astype(np.float32), rng.choice(500, 20), 60
    yield "ties", rng.integers(0, 3, (300, 4)).astype(np.float32), rng.choice(300, 5), 40
    yield "empty-labeled", rng.standard_normal((200, 8)), np.empty(0, np.int64), 30
    for offset in (0.0, 1e3):
        X = (near + offset).astype(np.float32)
        yield f"near-duplicates+{offset:g}", X, rng.choice(120, 7, replace=False), 113
    yield "wide-range", wide.astype(np.float32), rng.choice(150, 6, replace=False), 40
    yield "wide-range64", wide, rng.choice(150, 6, replace=False), 40
    yield "tiny", (rng.standard_normal((120, 6)) * 1e-30).astype(np.float32), [3, 9], 30
    yield "huge", (rng.standard_normal((120, 6)) * 1e30).astype(np.float32), [3, 9], 30
    yield "one-hot", np.eye(64, dtype=np.float32), [0, 1], 50  # every distance the same
    yield "clustered", clustered.astype(np.float32), rng.choice(400, 4, replace=False), 80
    yield "duplicates", np.repeat(rng.standard_normal((30, 5)), 4, axis=0), [0], 60


@pytest.mark.parametrize("way", GREEDY_WAYS)
def test_kcenter_every_greedy_way_is_exact(rng, monkeypatch, way):
    set_greedy_way(monkeypatch, way)
    for name, X, labeled, b in greedy_pools(rng):
        labeled = np.unique(np.asarray(labeled, dtype=np.int64))
        b = min(b, X.shape[0] - labeled.size)
        want = ref.kcenter_greedy(X, labeled, b)
        assert_exact(af.kcenter_greedy(X, labeled, b), want, f"{way}: {name}")


@pytest.mark.parametrize("kind", ["gauss", "offset", "wide-range", "near-duplicates"])
def test_half_screen_bound_holds(rng, kind):
    # the float16 screen's distance of any two rows is within its stated bound of the exact
    # float64 distance: the bound, not only the picks it led to on some pools
    from alamp_fast import coreset

    if not coreset.HAS_F16C:
        pytest.skip("this CPU has no F16C: the float16 screen is never used here")
    n, d = 300, 48
    X = rng.standard_normal((n, d))
    if kind == "offset":
        X += 1e3
    elif kind == "wide-range":
        X *= np.logspace(-8, 4, d)
    elif kind == "near-duplicates":
        X[n // 2 :] = X[: n // 2] + 1e-5 * rng.standard_normal((n // 2, d))
    X = X.astype(np.float32)
    S, _, a_s, tau = coreset._screen(X, coreset._scan_pool(X))
    H, A, a, s2, tau16, slack16 = coreset._half_screen(S, a_s, tau, coreset._slack(d))
    X64 = X.astype(np.float64)
    worst = 0.0
    for _ in range(2000):
        i, k = rng.integers(0, n, 2)
        screened = A[i] + A[k] - 2.0 * s2 * float(coreset._dot32(H, i, k))
        exact = coreset._row_sqdist(X, i, X64[k])
        bound = tau16 * (a[i] + a[k]) ** 2 + slack16
        worst = max(worst, abs(screened - exact) / bound)
    assert worst <= 1.0, worst
    assert worst > 1e-3, worst  # the bound is not vacuous: some pairs come near it


def test_kcenter_lazy_loop_skips_most_distances(rng):
    # well separated clusters: after the first picks the bounds leave most rows alone
    from alamp_fast import coreset

    centers = rng.standard_normal((20, 32)) * 20
    X = centers[rng.integers(0, 20, 4000)] + rng.standard_normal((4000, 32))
    labeled = rng.choice(4000, 10, replace=False)
    min_d2 = coreset._nearest_d2(X, X[labeled])
    min_d2[labeled] = -1.0
    b = 100
    chosen = np.empty(b, dtype=np.int64)
    chosen[0] = int(np.argmax(min_d2))
    n, d = X.shape
    scratch = (np.empty((b, d)), np.empty(n, np.int64), np.empty(n), np.empty(n, np.int64))
    done, measured = coreset._lazy_run(X, min_d2, chosen, *scratch, 0.25)
    assert done == b
    assert measured < 0.2 * n * b, measured  # the eager steps measure about n * b
    assert_exact(chosen, ref.kcenter_greedy(X, labeled, b), "lazy picks")


def test_kcenter_lazy_loop_hands_over_where_bounds_stay_tight(rng, monkeypatch):
    # a uniform-ish 2-d cloud: every pick lowers the distances of a large share of the rows,
    # so the lazy loop measures about half the pairs the eager steps would and must hand
    # over to them part-way, with the same picks
    from alamp_fast import coreset

    X = rng.standard_normal((2000, 2))
    calls = []
    real = coreset._eager

    def eager(*args):
        calls.append(args[4])  # b left
        return real(*args)

    monkeypatch.setattr(coreset, "_eager", eager)
    got = af.kcenter_greedy(X, [5], 100)
    assert_exact(got, ref.kcenter_greedy(X, [5], 100), "2-d cloud")
    assert calls and 0 < calls[0] < 100


def test_kcenter_parallel_and_probe_paths_equal_serial(rng, monkeypatch):
    from alamp_fast import _parallel

    X = rng.standard_normal((3000, 40)).astype(np.float32)
    labeled = rng.choice(3000, 30, replace=False)
    want = ref.kcenter_greedy(X, labeled, 40)
    for min_work in (1 << 40, 1, 0):  # serial; parallel with the timing probe; parallel only
        monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", min_work)
        assert_exact(af.kcenter_greedy(X, labeled, 40), want, f"min_work={min_work}")


def test_kcenter_segments_switch_builds_and_keep_picks(rng, monkeypatch):
    # a clock that makes either build look faster at random: the query switches between the
    # serial and parallel builds segment by segment, every step runs once, picks stay exact
    import types

    from alamp_fast import _parallel, coreset

    X = rng.standard_normal((3000, 40)).astype(np.float32)
    labeled = rng.choice(3000, 30, replace=False)
    want = ref.kcenter_greedy(X, labeled, 60)
    real = coreset._greedy_run
    ran = []

    def logged(name):
        def call(*args):
            ran.append((name, args[9], args[10]))  # (build, first step, steps)
            return getattr(real, name)(*args)

        return call

    fake = types.SimpleNamespace(serial=logged("serial"), parallel=logged("parallel"))
    fake.pick = lambda work: fake.serial if real.pick(work) is real.serial else fake.parallel
    clock = iter(np.cumsum(rng.exponential(1.0, 10_000)).tolist())
    monkeypatch.setattr(coreset, "_greedy_run", fake)
    monkeypatch.setattr(coreset, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(coreset, "_SEGMENT_STEPS", 3)
    monkeypatch.setattr(coreset, "_RECHECK_STEPS", 6)
    monkeypatch.setattr(coreset, "_LAZY_MAX_SHARE", 0.0)  # the eager steps only
    monkeypatch.setattr(coreset, "_cores_free", lambda: True)  # (this machine may be busy)
    monkeypatch.setattr(coreset, "_BUSY_SHARE", 0.0)
    assert_exact(af.kcenter_greedy(X, labeled, 60), want, "segments")
    assert [first for _, first, _ in ran] == np.cumsum([0] + [k for *_, k in ran])[:-1].tolist()
    assert sum(k for *_, k in ran) == 60
    assert {name for name, *_ in ran[2:]} == {"serial", "parallel"}
    assert ran[0][0] == "parallel"  # free cores: the parallel build is timed first

    # another process holds a core (the pool passes ran slow and other processes' tasks fill
    # the cores): the query starts serial and times the parallel build only on the recheck
    # schedule, and only while the cores look free
    monkeypatch.setattr(coreset, "_BUSY_SHARE", 2.0)  # every threaded pass looks slow
    for frees, first_build, parallel_at in (
        ([False] * 100, "serial", []),
        ([False] + [True] * 100, "serial", [8, 22, 48]),
        ([True] * 100, "parallel", None),  # slow passes alone (e.g. own BLAS threads)
    ):
        ran.clear()
        monkeypatch.setattr(coreset, "_cores_free", iter(frees).__next__)
        monkeypatch.setattr(
            coreset, "time", types.SimpleNamespace(perf_counter=iter(range(10**6)).__next__)
        )
        assert_exact(af.kcenter_greedy(X, labeled, 60), want, f"busy, cores free: {frees[:2]}")
        assert sum(k for *_, k in ran) == 60
        assert ran[0][0] == first_build
        # (a fake clock ticking once per read: every build takes 1/k per step, so the
        # 2-step parallel timing loses to the 3-step serial segments)
        if parallel_at is not None:
            assert [first for name, first, _ in ran if name == "parallel"] == parallel_at


def test_kcenter_busy_hint_from_pool_passes():
    from alamp_fast import coreset

    # the threaded passes report the share of their wall time that their workers ran
    coreset._share.acc = [0.0, 0.0]
    try:
        coreset._run_blocks(8, 1, 2, lambda lo, hi, _: sum(range(20_000)))
        cpu, wall = coreset._share.acc
    finally:
        coreset._share.acc = None
    assert wall > 0 and 0 <= cpu <= 1.5 * wall
    others = coreset._others_running()
    assert others is None or others >= 0
    assert isinstance(coreset._cores_free(), bool)


@pytest.mark.parametrize("scale", [1e19, 1e30, 3e37])
def test_kcenter_float32_huge_magnitudes_exact(rng, scale):
    # float32 GEMM/dot products overflow above ~1.8e19: fall back, same picks as float64
    X = (rng.standard_normal((120, 6)) * scale).astype(np.float32)
    labeled = rng.choice(120, 5, replace=False)
    got = af.kcenter_greedy(X, labeled, 30)
    assert_exact(got, ref.kcenter_greedy(X, labeled, 30), f"scale {scale}")


def test_kcenter_float32_tiny_magnitudes_exact(rng):
    X = (rng.standard_normal((120, 6)) * 1e-30).astype(np.float32)
    labeled = rng.choice(120, 5, replace=False)
    assert_exact(af.kcenter_greedy(X, labeled, 30), ref.kcenter_greedy(X, labeled, 30), "tiny")


def test_kcenter_float64_overflowing_magnitude_raises():
    X = np.array([[0.0], [1e200], [3.0]])
    with pytest.raises(ValueError, match="magnitude 1e\\+200"):
        af.kcenter_greedy(X, [0], 1)


def test_nearest_d2_is_exact_minimum(rng):
    from alamp_fast.coreset import _nearest_d2

    X = (rng.standard_normal((500, 33)) + 50).astype(np.float32)
    L = X[rng.choice(500, 40, replace=False)]
    X64, L64 = X.astype(np.float64), L.astype(np.float64)
    want = ((X64[:, None, :] - L64[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(_nearest_d2(X, L), want, rtol=1e-12, atol=0)
    # split labeled sets: the minimum of two searches is the search of both, bit for bit
    both = _nearest_d2(X, L)
    split = np.minimum(_nearest_d2(X, L[:13]), _nearest_d2(X, L[13:]))
    assert_exact(split, both, "split search")


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_blocks_equal_serial_bit_for_bit(rng, monkeypatch, offset, dtype):
    # the passes over the pool split into many row blocks on threads (BLAS on one thread
    # meanwhile): distances bit-identical to one serial block, same picks, BLAS restored
    from alamp_fast import _parallel, coreset

    X = (rng.standard_normal((1500, 37)) + offset).astype(dtype)
    labeled = rng.choice(1500, 45, replace=False)
    want_d2 = coreset._nearest_d2(X, X[labeled])
    want = af.kcenter_greedy(X, labeled, 30)
    blas = _blas_threads()
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(coreset, "_INIT_BLOCK_ELEMS", 37 * 64)  # ~24 blocks
    assert coreset._plan(1500, 64, 1)[1] == numba.get_num_threads()
    assert_exact(coreset._nearest_d2(X, X[labeled]), want_d2, "threaded search")
    scr = coreset._screen(X, coreset._scan_pool(X) if dtype == np.float32 else None)
    assert_exact(coreset._nearest_screened(X, scr, labeled), want_d2, "screened search")
    assert_exact(af.kcenter_greedy(X, labeled, 30), want, "threaded query")
    assert_exact(want, ref.kcenter_greedy(X, labeled, 30), "reference")
    assert _blas_threads() == blas


def test_threaded_blocks_error_propagates_and_restores_blas(monkeypatch):
    from alamp_fast import _parallel, coreset

    blas = _blas_threads()
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(coreset, "_INIT_BLOCK_ELEMS", 8 * 16)
    seen, during = [], []

    def fn(lo, hi, scratch):
        seen.append(lo)
        during.extend(t for _, t in _blas_threads())
        if lo == 320:
            raise RuntimeError("block 320 failed")

    rows, workers = coreset._plan(600, 16, 1)
    with pytest.raises(RuntimeError, match="block 320"):
        coreset._run_blocks(600, rows, workers, fn)
    assert _blas_threads() == blas
    assert 320 in seen
    if workers > 1:  # one thread pool at a time: BLAS on one thread while the blocks run
        assert set(during) == {1}


def test_concurrent_searches_share_the_blas_limit(rng, monkeypatch):
    # several threads searching at once (a threaded Dask scheduler does): same distances,
    # and the last one out restores BLAS's thread count, whatever order they finish in
    from concurrent.futures import ThreadPoolExecutor

    from alamp_fast import _parallel, coreset

    X = rng.standard_normal((800, 16)).astype(np.float32)
    Ls = [X[rng.choice(800, k, replace=False)] for k in (3, 17, 40, 90, 5, 61)]
    want = [coreset._nearest_d2(X, L) for L in Ls]
    blas = _blas_threads()
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(coreset, "_INIT_BLOCK_ELEMS", 16 * 32)
    for _ in range(3):
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda L: coreset._nearest_d2(X, L), Ls))
        for g, w in zip(got, want, strict=True):
            assert_exact(g, w, "concurrent search")
        assert _blas_threads() == blas


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_kcenter_non_finite_features_named(bad, dtype):
    X = np.ones((50, 6), dtype=dtype)
    X[31, 4] = bad
    X[40, 1] = bad
    with pytest.raises(ValueError, match=r"features\[31, 4\] = .* is not finite"):
        af.kcenter_greedy(X, [0], 3)


def test_kcenter_state_folds_in_new_rows_and_keeps_picks(rng):
    X = rng.standard_normal((900, 12)).astype(np.float32)
    labeled = list(rng.choice(900, 20, replace=False))
    state = af.KCenterState()
    for query in range(4):
        got = af.kcenter_greedy(X, labeled, 25, state=state)
        assert_exact(got, af.kcenter_greedy(X, labeled, 25), f"query {query}")
        assert_exact(got, ref.kcenter_greedy(X, labeled, 25), f"query {query} vs reference")
        assert state.rows_measured == (20 if query == 0 else 25)
        labeled += got.tolist()
    # a shrunk labeled set or other features start over
    got = af.kcenter_greedy(X, labeled[:30], 5, state=state)
    assert state.rows_measured == 30
    assert_exact(got, ref.kcenter_greedy(X, labeled[:30], 5), "shrunk")
    Y = X + 1
    got = af.kcenter_greedy(Y, labeled[:30], 5, state=state)
    assert state.rows_measured == 30
    assert_exact(got, ref.kcenter_greedy(Y, labeled[:30], 5), "new features")


def test_kcenter_state_type_checked():
    with pytest.raises(TypeError, match="KCenterState"):
        af.kcenter_greedy(np.zeros((3, 2)), [0], 1, state={})


@given(pool=small_pools(), offset=st.sampled_from([0.0, 0.5, 1e4]))
def test_kcenter_property_state_sequence_equals_reference(pool, offset):
    X, labeled, b = pool
    X = X + X.dtype.type(offset) if X.dtype != np.float16 else X
    state = af.KCenterState()
    lab = list(labeled.tolist())
    while True:
        k = min(b, 3, X.shape[0] - len(lab))
        got = af.kcenter_greedy(X, lab, k, state=state)
        assert_exact(got, ref.kcenter_greedy(X, lab, k), "state sequence", dtype=np.int64)
        lab += got.tolist()
        if k == 0 or len(lab) == X.shape[0]:
            break


# ---------------------------------------------------------------------------------------------
# optional FAISS backend


def test_faiss_backend_flat_and_hnsw(rng):
    pytest.importorskip("faiss")
    from alamp_fast.coreset_faiss import covering_radius, kcenter_greedy_faiss

    X = rng.standard_normal((2000, 16)).astype(np.float32)
    labeled = rng.choice(2000, 30, replace=False)
    exact = af.kcenter_greedy(X, labeled, 40)
    # well-separated random data: float32 rounding decides no pick
    assert_exact(kcenter_greedy_faiss(X, labeled, 40), exact, "faiss flat")
    approx = kcenter_greedy_faiss(X, labeled, 40, index="hnsw")
    assert len(set(approx.tolist()) | set(labeled.tolist())) == 70
    r_exact = covering_radius(X, np.r_[labeled, exact])
    r_approx = covering_radius(X, np.r_[labeled, approx])
    # greedy is a 2-approximation: an approximate run stays within a factor 2 of it
    assert r_approx <= 2 * r_exact
    assert_exact(kcenter_greedy_faiss(X, [], 3), af.kcenter_greedy(X, [], 3), "no labeled")
    assert kcenter_greedy_faiss(X, labeled, 0).size == 0
    with pytest.raises(ValueError, match="index must be"):
        kcenter_greedy_faiss(X, labeled, 1, index="ivf")
