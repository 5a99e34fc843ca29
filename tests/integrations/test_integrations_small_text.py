"""small-text adapters, run through small-text's ``PoolBasedActiveLearner``.

Before each query the reference reads the learner's current classifier's probabilities for the
whole dataset and ranks them with alamp_fast's direct API.
"""

import numpy as np
import pytest
from reference import alamp_query as reference_query
from sklearn.linear_model import LogisticRegression
from small_text import (
    BreakingTies,
    GreedyCoreset,
    PoolBasedActiveLearner,
    SklearnClassifierFactory,
    SklearnDataset,
)

from alamp_fast.integrations import small_text as integ

# small-text's own warnings, not ours
pytestmark = [
    pytest.mark.filterwarnings("ignore:The function get_flattened_unique_labels"),
    pytest.mark.filterwarnings("ignore:Default distance metric has changed"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in arccos"),
]


def make_learner(seed, strategy, n=240, n_classes=4, n_features=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    x = centres[y] + rng.normal(size=(n, n_features))
    dataset = SklearnDataset(x, y, target_labels=np.arange(n_classes))
    factory = SklearnClassifierFactory(LogisticRegression(max_iter=500), n_classes)
    learner = PoolBasedActiveLearner(factory, strategy, dataset)
    initial = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(n_classes)])
    learner.initialize_data(initial, y[initial])
    return rng, learner, x, y


@pytest.mark.parametrize("diverse", [False, True])
def test_alamp_in_the_small_text_loop_matches_the_direct_api(diverse):
    _, learner, _, y = make_learner(1 + diverse, integ.Alamp(diverse=diverse))
    memory = {}
    n = y.shape[0]
    for _ in range(5):
        probs = learner.classifier.predict_proba(learner.dataset)
        labeled = np.zeros(n, dtype=bool)
        labeled[learner.indices_labeled] = True
        want = reference_query(memory, probs, np.arange(n), 6, exclude=labeled, diverse=diverse)
        queried = learner.query(num_samples=6)
        assert np.array_equal(queried, want), (queried, want)
        learner.update(y[queried])


def test_margin_sampling_queries_what_breaking_ties_queries():
    _, ours, _, y = make_learner(3, integ.MarginSampling())
    _, theirs, _, _ = make_learner(3, BreakingTies())
    for _ in range(3):
        q_ours, q_theirs = ours.query(num_samples=7), theirs.query(num_samples=7)
        # small-text's argpartition leaves its picks unordered; ours are smallest margin first
        assert np.array_equal(np.sort(q_ours), np.sort(q_theirs))
        np.testing.assert_allclose(ours.query_strategy.scores_, theirs.query_strategy.scores_,
                                   rtol=1e-12)
        assert np.all(np.diff(ours.query_strategy.scores_[q_ours]) >= 0)
        ours.update(y[q_ours])
        theirs.update(y[q_theirs])


@pytest.mark.parametrize(
    "metric, normalize", [("euclidean", True), ("euclidean", False), ("cosine", True)]
)
def test_coreset_queries_what_greedy_coreset_queries(metric, normalize):
    _, ours, x, y = make_learner(4, integ.CoreSet(metric, normalize=normalize), n=160)
    _, theirs, _, _ = make_learner(4, GreedyCoreset(metric, normalize=normalize), n=160)
    for _ in range(3):
        # small-text's layout: embeddings of the unlabeled rows, then of the labeled rows
        rows = np.concatenate([np.setdiff1d(np.arange(len(y)), ours.indices_labeled),
                               ours.indices_labeled])
        kwargs = {"query_strategy_kwargs": {"embeddings": x[rows]}}
        q_ours = ours.query(num_samples=5, **kwargs)
        q_theirs = theirs.query(num_samples=5, **kwargs)
        assert np.array_equal(q_ours, q_theirs)
        ours.update(y[q_ours])
        theirs.update(y[q_theirs])


def test_alamp_refuses_a_smaller_dataset_and_resumes_from_its_state():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=(3, 50))

    class Fixed:
        def __init__(self, p):
            self.p = p

        def predict_proba(self, dataset):
            return self.p

    qs = integ.Alamp()
    unlabeled, labeled = np.arange(5, 50), np.arange(5)
    qs.query(Fixed(probs[0]), None, unlabeled, labeled, None, n=4)
    with pytest.raises(ValueError, match="may only grow"):
        qs.query(Fixed(probs[1][:40]), None, np.arange(5, 40), labeled, None, n=4)
    other = integ.Alamp()
    other.load_state_dict(qs.state_dict())
    assert np.array_equal(other.query(Fixed(probs[1]), None, unlabeled, labeled, None, n=4),
                          qs.query(Fixed(probs[1]), None, unlabeled, labeled, None, n=4))
    # rows appended to the dataset have no previous margin: margin fallback, no error
    grown = np.concatenate([probs[2], rng.dirichlet(np.ones(3), size=10)])
    picks = qs.query(Fixed(grown), None, np.arange(5, 60), labeled, None, n=4)
    assert picks.shape == (4,) and np.isin(picks, np.arange(5, 60)).all()
    with pytest.raises(ValueError, match="distance_metric='manhattan'"):
        integ.CoreSet("manhattan")
