"""imbalance_ratio and induce_imbalance."""

from __future__ import annotations

import numpy as np
import pytest

from alamp_fast.al.imbalance import imbalance_ratio, induce_imbalance


def test_imbalance_ratio_literal():
    assert imbalance_ratio([5, 5, 5, 5]) == 0.0
    assert imbalance_ratio([1, 3]) == pytest.approx(0.5)  # std 1, mean 2
    assert imbalance_ratio([0, 0, 6]) == pytest.approx(np.sqrt(8) / 2)  # std sqrt(8), mean 2
    assert imbalance_ratio(np.array([2, 4, 6], dtype=np.int16)) == pytest.approx(
        np.std([2, 4, 6]) / 4)


@pytest.mark.parametrize("bad", [[], [[1, 2]], [1, -1], [0, 0], [1, np.nan]])
def test_imbalance_ratio_rejects(bad):
    with pytest.raises(ValueError):
        imbalance_ratio(bad)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.3, 0.5, 0.74, 0.79, 1.0, 1.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_pool_reaches_target(target, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), 150))
    keep = induce_imbalance(y, target, seed)
    counts = np.bincount(y[keep], minlength=10)
    assert abs(imbalance_ratio(counts) - target) <= 0.01
    assert keep.dtype == np.int64
    assert np.array_equal(keep, np.unique(keep))  # sorted, no duplicates
    assert keep.min() >= 0 and keep.max() < y.size
    assert (counts >= 1).all()  # every class stays present


def test_imbalanced_pool_both_directions_and_string_labels():
    rng = np.random.default_rng(5)
    counts = rng.integers(20, 400, 30)
    names = np.array([f"c{i:02d}" for i in range(30)])
    y = rng.permutation(np.repeat(names, counts))
    pool_ir = imbalance_ratio(counts)
    for target in (pool_ir / 3, pool_ir + 0.4):
        keep = induce_imbalance(y, target, seed=2)
        _, kept = np.unique(y[keep], return_counts=True)
        assert kept.size == 30
        assert abs(imbalance_ratio(kept) - target) <= 0.01
        # a subset: never more of a class than the pool has
        assert (kept <= np.unique(y, return_counts=True)[1]).all()


def test_reproducible_and_seed_dependent():
    y = np.repeat(np.arange(8), 100)
    a = induce_imbalance(y, 0.6, seed=3)
    assert np.array_equal(a, induce_imbalance(y, 0.6, seed=3))
    assert not np.array_equal(a, induce_imbalance(y, 0.6, seed=4))


def test_unreachable_and_bad_targets():
    y = np.repeat(np.arange(3), 10)
    # 3 classes, one kept whole and two at min_count: ir at most ~1.05.
    with pytest.raises(ValueError, match="cannot be reached"):
        induce_imbalance(y, 5.0, seed=0)
    with pytest.raises(ValueError, match="target_ir"):
        induce_imbalance(y, -0.2)
    with pytest.raises(ValueError, match="target_ir"):
        induce_imbalance(y, float("nan"))
    with pytest.raises(ValueError, match="min_count"):
        induce_imbalance(y, 0.5, min_count=0)
    with pytest.raises(ValueError, match="1-D"):
        induce_imbalance(np.zeros((2, 2)), 0.5)
