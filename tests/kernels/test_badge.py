"""BADGE against a literal reference that builds the (n, C*d) gradient embeddings."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
from conftest import assert_exact, layouts_2d
from reference import badge as literal_badge

from alamp_fast.badge import badge

# the module, whatever ``alamp_fast.badge`` is bound to (the function, once exported)
badge_mod = importlib.import_module("alamp_fast.badge")

DTYPES = [np.float16, np.float32, np.float64]


def make_inputs(rng, n, C, d, dtype):
    logits = rng.standard_normal((n, C)) * rng.uniform(0.5, 3.0)
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    H = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, d) + rng.uniform(-1, 1, d)
    return P.astype(dtype), H.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,C,d", [(1, 2, 1), (9, 3, 2), (60, 4, 5), (300, 10, 16), (150, 2, 33)])
def test_badge_matches_literal_reference(backend, rng, n, C, d, dtype):
    P, H = make_inputs(rng, n, C, d, dtype)
    for ex_kind in ("none", "some"):
        exclude = (
            np.empty(0, dtype=np.int64)
            if ex_kind == "none"
            else rng.choice(n, n // 3, replace=False)
        )
        n_cand = n - exclude.size
        b = n_cand if n_cand <= 40 else 30
        for seed in (0, int(rng.integers(1 << 31))):
            got = backend(badge, P, H, b, seed, exclude=exclude)
            want = literal_badge(P, H, b, seed, exclude)
            assert_exact(
                got, want, f"badge(b={b}, seed={seed}, {ex_kind} excluded)", dtype=np.int64
            )


def test_badge_mixed_dtypes_and_layouts(rng):
    P, H = make_inputs(rng, 120, 6, 9, np.float32)
    want = literal_badge(P, H, 25, 3)
    assert_exact(badge(P.astype(np.float64), H, 25, 3), want, "f64 probs, f32 embeddings")
    assert_exact(
        badge(P.astype(np.float16), H, 25, 3), literal_badge(P.astype(np.float16), H, 25, 3)
    )
    for name, view in layouts_2d(H, rng):
        assert_exact(badge(P, view, 25, 3), want, f"embeddings {name}")
    for name, view in layouts_2d(P, rng):
        assert_exact(badge(view, H, 25, 3), want, f"probs {name}")


def test_badge_is_a_prefix_of_a_longer_run_and_seeded(rng):
    # the uniforms are drawn up front from one stream: b=10 is the start of b=40
    P, H = make_inputs(rng, 400, 8, 12, np.float32)
    long = badge(P, H, 40, seed=7)
    assert_exact(badge(P, H, 10, seed=7), long[:10], "prefix")
    assert_exact(badge(P, H, 40, seed=np.random.default_rng(7)), long, "Generator seed")
    other = badge(P, H, 40, seed=8)
    assert other[0] == long[0]  # the first center does not depend on the seed
    assert not np.array_equal(other, long)
    assert np.unique(long).size == 40


def test_first_pick_is_largest_gradient_norm(rng):
    P, H = make_inputs(rng, 50, 5, 4, np.float64)
    G = ((np.eye(5)[P.argmax(axis=1)] - P)[:, :, None] * H[:, None, :]).reshape(50, -1)
    norms = np.linalg.norm(G, axis=1)
    assert_exact(badge(P, H, 1), [np.argmax(norms)])
    top3 = np.argsort(-norms)[:3]
    assert_exact(badge(P, H, 1, exclude=top3[:2]), [top3[2]], "largest norm among candidates")


def test_d2_sampling_frequencies(rng):
    # the second pick is drawn with probability proportional to ||g_j - g_c||^2: check the
    # frequencies over many seeds against the literal probabilities (4-sigma band)
    P, H = make_inputs(rng, 6, 3, 2, np.float64)
    G = ((np.eye(3)[P.argmax(axis=1)] - P)[:, :, None] * H[:, None, :]).reshape(6, -1)
    first = int(np.argmax(np.sum(G * G, axis=1)))
    d2 = np.sum((G - G[first]) ** 2, axis=1)
    expect = d2 / d2.sum()
    trials = 4000
    second = np.array([badge(P, H, 2, seed=s)[1] for s in range(trials)])
    freq = np.bincount(second, minlength=6) / trials
    assert freq[first] == 0
    band = 4 * np.sqrt(expect * (1 - expect) / trials) + 1e-12
    assert np.all(np.abs(freq - expect) <= band), (freq, expect)


def test_exclude_forms_b0_and_all_candidates(rng):
    P, H = make_inputs(rng, 30, 4, 3, np.float32)
    idx = rng.choice(30, 12, replace=False)
    mask = np.zeros(30, dtype=bool)
    mask[idx] = True
    by_idx = badge(P, H, 18, seed=1, exclude=idx)
    assert_exact(badge(P, H, 18, seed=1, exclude=mask), by_idx, "mask vs indices")
    assert_exact(badge(P, H, 18, seed=1, exclude=list(idx)), by_idx, "list")
    assert_exact(np.sort(by_idx), np.flatnonzero(~mask), "every candidate once")
    assert_exact(badge(P, H, 0, seed=1), np.empty(0, dtype=np.int64), "b=0", dtype=np.int64)
    assert_exact(badge(P, H, 0, exclude=np.arange(30)), [], "b=0, nothing left", dtype=np.int64)


def test_all_distances_zero_falls_back_to_lowest_index(rng):
    # one-hot probabilities: every q_i = 0 exactly, so every gradient embedding is 0
    C = 4
    P = np.eye(C)[rng.integers(0, C, 20)]
    H = rng.standard_normal((20, 3))
    exclude = [0, 3, 4]
    want = [i for i in range(20) if i not in exclude][:6]
    assert_exact(badge(P, H, 6, seed=0, exclude=exclude), want)
    assert_exact(literal_badge(P, H, 6, 0, exclude), want, "reference")
    # two non-zero rows: one of them is the first center; the zero rows are then at
    # distance |g_c| > 0 and compete in the draws like any row
    P2 = P.copy()
    P2[[5, 11]] = [[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]]
    got = badge(P2, H, 5, seed=0)
    assert got[0] in (5, 11)
    assert_exact(got, literal_badge(P2, H, 5, 0), "reference")


@pytest.mark.parametrize("ops_name", ["numpy-as-cupy", "torch-cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_loop_on_the_host_matches_reference(rng, ops_name, dtype, monkeypatch):
    """The GPU loop (torch or CuPy array operations) run on the host: same picks."""
    monkeypatch.setattr(badge_mod, "_GPU_NORM_BLOCK", 64)  # 8 norm blocks, the last partial
    P, H = make_inputs(rng, 500, 7, 11, dtype)
    exclude = rng.choice(500, 40, replace=False)
    if ops_name == "torch-cpu":
        import torch

        ops = badge_mod._TorchOps("cpu")
        P_d, H_d = torch.from_numpy(P), torch.from_numpy(H)
    else:
        ops = badge_mod._CupyOps(np)
        P_d, H_d = P, H
    for b in (1, 35):
        got = badge_mod._run_device(ops, P_d, H_d, b, np.random.default_rng(5), exclude)
        assert_exact(ops.to_host(got), literal_badge(P, H, b, 5, exclude), f"{ops_name} b={b}")
    # the zero-distance fallback stays on the device too
    P1 = np.eye(7, dtype=dtype)[rng.integers(0, 7, 500)]
    P1_d = torch.from_numpy(P1) if ops_name == "torch-cpu" else P1
    got = badge_mod._run_device(ops, P1_d, H_d, 5, np.random.default_rng(0), [0, 2])
    assert_exact(ops.to_host(got), [1, 3, 4, 5, 6], "fallback")


def test_errors(rng):
    P, H = make_inputs(rng, 10, 3, 4, np.float32)
    with pytest.raises(ValueError, match="probs must be 2-D"):
        badge(P[0], H, 1)
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        badge(P, H[:, 0], 1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        badge(P[:, :1], H, 1)
    with pytest.raises(ValueError, match="10 rows but embeddings has 9"):
        badge(P, H[:9], 1)
    with pytest.raises(TypeError, match="probs must be float16/32/64"):
        badge(P.astype(np.int64), H, 1)
    bad = H.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"embeddings\[4, 2\] = nan"):
        badge(P, bad, 1)
    badp = P.copy()
    badp[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"probs\[7, 0\] = inf"):
        badge(badp, H, 1)
    with pytest.raises(ValueError, match="b=8 exceeds the 7 candidates"):
        badge(P, H, 8, exclude=[0, 1, 2])
    with pytest.raises(ValueError, match="b=-1"):
        badge(P, H, -1)
    with pytest.raises(TypeError, match="budget b must be an integer"):
        badge(P, H, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        badge(P, H, 1, exclude=[10])
    with pytest.raises(ValueError, match="duplicated index 3"):
        badge(P, H, 1, exclude=[3, 3])
    for seed in ("abc", True, 1.5):
        with pytest.raises(TypeError, match="seed must be"):
            badge(P, H, 2, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        badge(P, H, 2, seed=-1)
    with pytest.raises(ValueError, match="device must be"):
        badge(P, H, 1, device="tpu")


def test_torch_mixed_with_other_library_is_rejected():
    import torch

    class FakeCupy:  # array_library recognises CuPy by module name
        __module__ = "cupy"

    with pytest.raises(TypeError, match="mix array libraries"):
        badge(torch.zeros((3, 2)), FakeCupy(), 1)


# ---------------------------------------------------------------------------------------------
# GPU


def _torch_cuda_reason():
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    return None if torch.cuda.is_available() else "torch reports no CUDA device"


@pytest.mark.gpu
@pytest.mark.skipif(_torch_cuda_reason() is not None, reason=str(_torch_cuda_reason()))
def test_badge_torch_cuda_matches_reference(rng):
    import torch

    P, H = make_inputs(rng, 3000, 10, 64, np.float64)
    exclude = rng.choice(3000, 300, replace=False)
    want = literal_badge(P, H, 60, 11, exclude)
    got = badge(torch.from_numpy(P).cuda(), torch.from_numpy(H).cuda(), 60, 11, exclude=exclude)
    assert isinstance(got, torch.Tensor) and got.device.type == "cuda" and got.dtype == torch.int64
    assert_exact(got.cpu().numpy(), want, "torch-cuda float64")
    host = badge(P, H, 60, 11, exclude=exclude, device="cuda")
    assert isinstance(host, np.ndarray)
    assert_exact(host, want, "numpy with device='cuda'")
    # the device rule counts exclude as an input: a torch CUDA exclude gives torch CUDA picks
    mixed = badge(P, H, 60, 11, exclude=torch.from_numpy(exclude).cuda())
    assert isinstance(mixed, torch.Tensor) and mixed.device.type == "cuda"
    assert_exact(mixed.cpu().numpy(), want, "numpy data, torch CUDA exclude")
    # float32: the GEMVs round differently from the CPU; the picks are valid and start alike
    got32 = badge(
        torch.from_numpy(P.astype(np.float32)).cuda(),
        torch.from_numpy(H.astype(np.float32)).cuda(),
        60,
        11,
    ).cpu()
    assert got32[0] == badge(P.astype(np.float32), H.astype(np.float32), 1)[0]
    assert torch.unique(got32).numel() == 60


@pytest.mark.gpu
def test_badge_cupy_matches_reference(rng):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except Exception as exc:  # CUDARuntimeError and friends
        pytest.skip(f"CUDA unavailable to cupy: {exc}")
    P, H = make_inputs(rng, 2000, 6, 40, np.float64)
    got = badge(cupy.asarray(P), cupy.asarray(H), 50, 2, exclude=[1, 2, 3])
    assert isinstance(got, cupy.ndarray)
    assert_exact(got.get(), literal_badge(P, H, 50, 2, [1, 2, 3]), "cupy float64")


# ---------------------------------------------------------------------------------------------
# kernel inputs: duplicates, negative probabilities


def _dup_pool(rng, dtype):
    P = rng.dirichlet(np.ones(5), 4).astype(dtype)
    H = rng.standard_normal((4, 6)).astype(dtype)
    rows = np.repeat(np.arange(4), 6)  # 4 distinct rows, 6 copies each
    return np.ascontiguousarray(P[rows]), np.ascontiguousarray(H[rows])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_badge_copies_of_a_center_have_distance_exactly_zero(rng, dtype):
    # 4 distinct rows: after they are all chosen, every candidate is a copy of a center,
    # so the rest go in index order whatever the seed (no rounding residue weight)
    P, H = _dup_pool(rng, dtype)
    results = {tuple(badge(P, H, 10, seed=s).tolist()) for s in range(25)}
    for got in results:
        assert sorted({r // 6 for r in got[:4]}) == [0, 1, 2, 3], got
        chosen = set(got[:4])
        assert list(got[4:]) == [i for i in range(24) if i not in chosen][:6], got


@pytest.mark.parametrize("ops_name", ["numpy-as-cupy", "torch-cpu"])
def test_badge_device_loop_copies_are_zero(rng, ops_name):
    P, H = _dup_pool(rng, np.float64)
    if ops_name == "torch-cpu":
        import torch

        ops, P_d, H_d = badge_mod._TorchOps("cpu"), torch.from_numpy(P), torch.from_numpy(H)
    else:
        ops, P_d, H_d = badge_mod._CupyOps(np), P, H
    for s in range(10):
        got = ops.to_host(badge_mod._run_device(ops, P_d, H_d, 10, np.random.default_rng(s), None))
        assert_exact(got, badge(P, H, 10, seed=np.random.default_rng(s)), f"seed {s}")


def test_badge_rejects_negative_probabilities(rng):
    P, H = make_inputs(rng, 10, 3, 4, np.float64)
    P[7, 2] = -0.25
    with pytest.raises(ValueError, match=r"probs\[7, 2\] = -0.25 is negative"):
        badge(P, H, 2)
    ops = badge_mod._CupyOps(np)
    with pytest.raises(ValueError, match=r"probs\[7, 2\] = -0.25 is negative"):
        badge_mod._run_device(ops, P, H, 2, np.random.default_rng(0), None)


def test_badge_rejects_sparse_input(rng):
    sp = pytest.importorskip("scipy.sparse")
    P, H = make_inputs(rng, 10, 3, 4, np.float64)
    with pytest.raises(TypeError, match=r"sparse input is not supported.*toarray\(\)"):
        badge(P, sp.csr_matrix(H), 2)


def test_device_path_checks_shape_and_dtype_like_the_cpu(rng):
    """The GPU loop's checks are _validate's, read from the arrays' attributes."""
    P, H = make_inputs(rng, 10, 3, 4, np.float64)
    ops = badge_mod._CupyOps(np)
    for bad_P, bad_H, exc, pattern in (
        (P.astype(np.int64), H, TypeError, "probs must be float16/32/64, got dtype int64"),
        (P, H.astype(bool), TypeError, "embeddings must be float16/32/64, got dtype bool"),
        (P[:, :1], H, ValueError, r"probs must have at least 2 classes"),
    ):
        with pytest.raises(exc, match=pattern):
            badge(bad_P, bad_H, 2)
        with pytest.raises(exc, match=pattern):
            badge_mod._run_device(ops, bad_P, bad_H, 2, np.random.default_rng(0), None)
