"""baal heuristics, run through baal's own ``ActiveLearningLoop``.

The model is replaced by a schedule of probability tables (one per step, over every sample),
so the reference can rank exactly what the loop's ``get_probabilities`` returned.
"""

import numpy as np
import pytest
import torch
from baal.active import ActiveLearningLoop, heuristics
from baal.active.dataset import ActiveLearningDataset
from reference import alamp_query as reference_query

import alamp_fast as af
from alamp_fast.integrations import baal as integ

# baal's own logging chatter, not ours
pytestmark = pytest.mark.filterwarnings(r"ignore:getName\(\) is deprecated")


class Indexed(torch.utils.data.Dataset):
    """Item i is (i, label): lets get_probabilities find each pool row's sample."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, 0


class Schedule:
    """get_probabilities for ActiveLearningLoop: step k's table, rows of the given pool."""

    def __init__(self, seed, n, n_classes=5, n_steps=6, mc=None):
        rng = np.random.default_rng(seed)
        shape = (n_steps, n, n_classes) if mc is None else (n_steps, n, n_classes, mc)
        raw = rng.dirichlet(np.ones(n_classes), size=shape[:2] + shape[3:])
        self.tables = raw if mc is None else np.moveaxis(raw, -1, 2)
        self.step = 0

    def sample_ids(self, pool):
        return np.array([pool[i][0] for i in range(len(pool))])

    def __call__(self, pool):
        return self.tables[self.step][self.sample_ids(pool)]


def run_loop(heuristic, schedule, n=120, query_size=6, n_steps=4):
    """Run baal's loop; yield (pool sample ids, probs, newly labelled ids in ranking order)."""
    active_set = ActiveLearningDataset(Indexed(n))
    active_set.label(list(range(0, n, 15)))  # a labelled seed
    if not isinstance(heuristic, heuristics.AbstractHeuristic):
        heuristic = heuristic(active_set)  # a factory that binds the dataset
    loop = ActiveLearningLoop(active_set, schedule, heuristic=heuristic, query_size=query_size)
    for _ in range(n_steps):
        pool_ids = np.flatnonzero(~active_set.labelled)
        probs = schedule.tables[schedule.step][pool_ids]
        before = active_set.labelled.copy()
        assert loop.step()
        new = np.flatnonzero(active_set.labelled & ~before)
        yield pool_ids, probs, new
        schedule.step += 1


@pytest.mark.parametrize("diverse", [False, True])
@pytest.mark.parametrize("bind_dataset", [False, True])
def test_alamp_in_the_baal_loop_matches_the_direct_api(diverse, bind_dataset):
    schedule = Schedule(seed=1 + diverse + 2 * bind_dataset, n=120)
    if bind_dataset:
        def heuristic(active_set):
            return integ.Alamp(diverse=diverse, dataset=active_set, query_size=6)
    else:
        heuristic = integ.Alamp(diverse=diverse)  # full ranking, positional rows
    memory = {}
    for pool_ids, probs, new in run_loop(heuristic, schedule):
        want = pool_ids[reference_query(memory, probs, pool_ids, 6, diverse=diverse)]
        assert np.array_equal(np.sort(new), np.sort(want)), (new, want)


def test_alamp_with_a_dataset_survives_labelling_outside_the_loop():
    n = 100
    schedule = Schedule(seed=7, n=n)
    active_set = ActiveLearningDataset(Indexed(n))
    active_set.label([0, 1, 2, 3])
    h = integ.Alamp(dataset=active_set, query_size=5)
    memory = {}
    for step in range(4):
        pool_ids = np.flatnonzero(~active_set.labelled)
        probs = schedule.tables[step][pool_ids]
        ranks, utility = h.get_ranks(probs)
        assert np.array_equal(ranks, reference_query(memory, probs, pool_ids, 5))
        assert utility.shape == (pool_ids.size,)
        active_set.label(ranks.tolist())
        active_set.label_randomly(3)  # labels the positional rule could not follow
    with pytest.raises(ValueError, match="max_sample"):
        h.get_ranks(schedule.tables[0][:10])


def test_positional_alamp_refuses_a_pool_it_cannot_follow():
    schedule = Schedule(seed=8, n=50)
    h = integ.Alamp(query_size=4)
    h.get_ranks(schedule.tables[0])
    with pytest.raises(ValueError, match="cannot be matched by position"):
        h.get_ranks(schedule.tables[1][:40])  # 10 rows gone, only 4 were returned


def test_margin_ranks_like_baal_margin_for_probs_logits_and_mc_samples():
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(6), size=200)
    logits = rng.normal(scale=3.0, size=(200, 6))
    mc = np.moveaxis(rng.dirichlet(np.ones(6), size=(200, 8)), -1, 1)  # [n, C, iterations]
    for predictions in (probs, logits, mc, torch.from_numpy(probs)):
        ranks, scores = integ.Margin().get_ranks(predictions)
        t_ranks, t_scores = heuristics.Margin().get_ranks(predictions)
        assert np.array_equal(ranks, t_ranks)
        np.testing.assert_allclose(scores, t_scores, rtol=1e-12)
        assert np.array_equal(integ.Margin(query_size=7)(predictions), t_ranks[:7])
    batches = (probs[i : i + 64] for i in range(0, 200, 64))
    assert np.array_equal(integ.Margin()(batches), heuristics.Margin()(probs))


def test_margin_in_the_baal_loop_labels_what_baal_margin_labels():
    ours = run_loop(integ.Margin(query_size=6), Schedule(seed=10, n=120, mc=4))
    theirs = run_loop(heuristics.Margin(), Schedule(seed=10, n=120, mc=4))
    for (_, _, new_ours), (_, _, new_theirs) in zip(ours, theirs, strict=True):
        assert np.array_equal(new_ours, new_theirs)


def test_compute_score_does_not_advance_the_state_and_bad_input_is_refused():
    rng = np.random.default_rng(11)
    h = integ.Alamp()
    p0, p1 = rng.dirichlet(np.ones(3), size=(2, 30))
    np.testing.assert_array_equal(h.compute_score(p0), -af.margin(p0))
    assert h.memory.iteration == 0
    h.get_ranks(p0)
    state = h.state_dict()
    h2 = integ.Alamp()
    h2.load_state_dict(state)
    np.testing.assert_array_equal(h2.compute_score(p1), h.compute_score(p1))
    with pytest.raises(ValueError, match="query_size"):
        integ.Alamp(query_size=0)
    with pytest.raises(ValueError, match="got shape"):
        h.get_ranks(np.ones((4, 3, 2, 2)))
    with pytest.raises(ValueError, match="one prediction array"):
        h.get_ranks([p0, p1])
