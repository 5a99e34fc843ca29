"""modAL adapters, run through modAL's own ``ActiveLearner`` loop.

Each query's picks are compared with alamp_fast's direct API applied to the probabilities the
learner gives for the same pool just before the query.
"""

import inspect

import modAL.models.learners
import numpy as np
import pytest
import reference as ref
import sklearn.utils
from modAL.models import ActiveLearner
from modAL.uncertainty import margin_sampling as modal_margin_sampling
from reference import alamp_query as reference_query
from sklearn.linear_model import LogisticRegression

from alamp_fast.integrations import modal


def _teach_breaks_on_this_sklearn() -> bool:
    """modAL 0.4.2's ``teach``/``fit`` pass ``force_all_finite`` to ``check_X_y`` (0.4.1 calls no
    ``check_X_y``), and scikit-learn 1.8 removed that argument (modAL issue #196, open)."""
    return hasattr(modAL.models.learners, "check_X_y") and (
        "force_all_finite" not in inspect.signature(sklearn.utils.check_X_y).parameters
    )


@pytest.fixture(autouse=True)
def modal_teach_on_new_sklearn(monkeypatch):
    """Where modAL's ``teach`` breaks, forward ``force_all_finite`` as ``ensure_all_finite``, so
    these tests run modAL's usual loop on every version (the docs' loop needs no patch)."""
    if not _teach_breaks_on_this_sklearn():
        return

    def check_X_y(*args, force_all_finite=True, **kwargs):
        return sklearn.utils.check_X_y(*args, ensure_all_finite=force_all_finite, **kwargs)

    monkeypatch.setattr(modAL.models.learners, "check_X_y", check_X_y)


def make_data(seed, n=300, n_classes=4, n_features=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    X = centres[y] + rng.normal(size=(n, n_features))
    return rng, X, y


def start_learner(X, y, strategy, n_initial=12):
    # one of each class first, so every model predicts every class
    initial = np.concatenate([np.flatnonzero(y == c)[:3] for c in np.unique(y)])[:n_initial]
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=500),
        query_strategy=strategy,
        X_training=X[initial],
        y_training=y[initial],
    )
    return learner, np.setdiff1d(np.arange(len(y)), initial)


@pytest.mark.parametrize("diverse", [False, True])
@pytest.mark.parametrize("with_ids", [False, True])
def test_alamp_in_the_modal_loop_matches_the_direct_api(diverse, with_ids):
    rng, X, y = make_data(10 + diverse + 2 * with_ids)
    strategy = modal.Alamp(diverse=diverse)
    learner, pool_ids = start_learner(X, y, strategy)
    memory = {}
    for _ in range(5):
        X_pool = X[pool_ids]
        probs = learner.predict_proba(X_pool)
        want = reference_query(memory, probs, pool_ids, 7, diverse=diverse)
        kwargs = {"pool_ids": pool_ids} if with_ids else {}
        idx, instances, utilities = learner.query(
            X_pool, n_instances=7, return_metrics=True, **kwargs
        )
        assert np.array_equal(idx, want), (idx, want)
        assert np.array_equal(instances, X_pool[want])
        assert utilities.shape == (7,)
        if not diverse:  # alamp-div's order is Algorithm 1's passes, not the utility order
            assert np.all(np.diff(utilities) <= 0)
        learner.teach(X_pool[idx], y[pool_ids[idx]])
        pool_ids = np.delete(pool_ids, idx)  # modAL's usual loop
        if with_ids:
            pool_ids = rng.permutation(pool_ids)  # ids make any reordering safe
    assert strategy.memory.iteration == 5


def test_alamp_matches_rows_by_content_when_the_pool_is_subsampled():
    rng, X, y = make_data(20)
    strategy = modal.Alamp()
    learner, pool_ids = start_learner(X, y, strategy)
    memory = {}
    for _ in range(4):
        # a random subset of the pool in random order: positions mean nothing here
        subset = rng.permutation(pool_ids)[: pool_ids.size * 2 // 3]
        probs = learner.predict_proba(X[subset])
        want = reference_query(memory, probs, subset, 5)
        idx, _ = learner.query(X[subset], n_instances=5)
        assert np.array_equal(idx, want)
        learner.teach(X[subset[idx]], y[subset[idx]])
        pool_ids = np.setdiff1d(pool_ids, subset[idx])


def test_margin_sampling_picks_what_modal_picks():
    _, X, y = make_data(30)
    learner, pool_ids = start_learner(X, y, modal.margin_sampling)
    for _ in range(3):
        X_pool = X[pool_ids]
        ours, _, margins = learner.query(X_pool, n_instances=9, return_metrics=True)
        theirs, their_margins = modal_margin_sampling(learner, X_pool, n_instances=9)
        # modAL's argpartition leaves its picks unordered; ours are smallest margin first
        assert np.array_equal(np.sort(ours), np.sort(theirs))
        assert np.all(np.diff(margins) >= 0)
        np.testing.assert_allclose(np.sort(margins), np.sort(their_margins), rtol=1e-12)
        learner.teach(X_pool[ours], y[pool_ids[ours]])
        pool_ids = np.delete(pool_ids, ours)


def _slow_kcenter(X, labeled_X, b):
    """Literal k-center greedy (tests/reference.py) with the labeled rows as first centres."""
    both = np.vstack([np.asarray(labeled_X, dtype=np.float64), np.asarray(X, dtype=np.float64)])
    k = len(labeled_X)
    return ref.kcenter_greedy(both, np.arange(k), b) - k


def test_coreset_sampling_uses_the_training_set_as_centres():
    _, X, y = make_data(40, n=120)
    learner, pool_ids = start_learner(X, y, modal.coreset_sampling)
    for _ in range(2):
        X_pool = X[pool_ids]
        idx, _ = learner.query(X_pool, n_instances=4)
        assert modal.coreset_sampling(learner, X_pool, 4)[1] is None
        assert np.array_equal(idx, _slow_kcenter(X_pool, learner.X_training, 4))
        learner.teach(X_pool[idx], y[pool_ids[idx]])
        pool_ids = np.delete(pool_ids, idx)
    with pytest.raises(ValueError, match="features must match"):
        modal.coreset_sampling(learner, X[:5], 1, X_labeled=X[:3, :2])


def test_a_failing_query_raises_and_keeps_the_state():
    # modAL retries a strategy that raised (bare except): the retry must fail the same way
    _, X, y = make_data(50, n=60)
    strategy = modal.Alamp()
    learner, pool_ids = start_learner(X, y, strategy)
    learner.query(X[pool_ids], n_instances=3)
    before = strategy.state_dict()
    with pytest.raises(ValueError, match="budget b=500 exceeds"):
        learner.query(X[pool_ids], n_instances=500)
    with pytest.raises(ValueError, match="duplicated id"):
        learner.query(X[pool_ids], n_instances=3, pool_ids=np.zeros(pool_ids.size, dtype=int))
    after = strategy.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_state_dict_resumes_a_run():
    rng, X, y = make_data(60)
    a = modal.Alamp(diverse=True)
    learner, pool_ids = start_learner(X, y, a)
    idx, _ = learner.query(X[pool_ids], n_instances=5)
    pool_ids = np.delete(pool_ids, idx)
    b = modal.Alamp(diverse=True)
    b.load_state_dict(a.state_dict())
    X_pool = X[pool_ids]
    assert np.array_equal(b(learner, X_pool, 6)[0], a(learner, X_pool, 6)[0])
    a.reset()
    assert a.memory.iteration == 0 and repr(a) == "Alamp(diverse=True, iteration=0)"


def test_modal_teach_fails_on_the_scikit_learn_versions_the_docs_say(monkeypatch):
    # docs/integrations.md: modAL 0.4.2.1's teach raises on scikit-learn >= 1.8, hence the
    # docs' learner-per-round loop; if a modAL release fixes it, this test says the docs are stale
    breaks = _teach_breaks_on_this_sklearn()
    if hasattr(modAL.models.learners, "check_X_y"):  # undo the fixture's patch
        monkeypatch.setattr(modAL.models.learners, "check_X_y", sklearn.utils.check_X_y)
    _, X, y = make_data(70, n=60)
    learner, pool_ids = start_learner(X, y, modal.margin_sampling)
    idx, _ = learner.query(X[pool_ids], n_instances=2)
    if breaks:
        with pytest.raises(TypeError, match="force_all_finite"):
            learner.teach(X[pool_ids[idx]], y[pool_ids[idx]])
    else:
        learner.teach(X[pool_ids[idx]], y[pool_ids[idx]])
        assert len(learner.X_training) == 14
