"""The AL room's old flat paths (``alamp_fast.strategies`` ...): a warning, then the same module."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

MOVED = {
    "alamp_fast.strategies": "alamp_fast.al.strategies",
    "alamp_fast.protocol": "alamp_fast.al.protocol",
    "alamp_fast.datasets": "alamp_fast.al.datasets",
    "alamp_fast.imbalance": "alamp_fast.al.imbalance",
    "alamp_fast.report": "alamp_fast.al.report",
}


def _forget(monkeypatch, old: str) -> None:
    """As in a fresh process: the old path not imported yet (restored after the test)."""
    monkeypatch.delitem(sys.modules, old, raising=False)
    monkeypatch.delattr(sys.modules["alamp_fast"], old.rpartition(".")[2], raising=False)


def _import_old(old: str):
    """``import <old>`` as a user's own line writes it (the warning must point at that line)."""
    if old == "alamp_fast.strategies":
        import alamp_fast.strategies as mod
    elif old == "alamp_fast.protocol":
        import alamp_fast.protocol as mod
    elif old == "alamp_fast.datasets":
        import alamp_fast.datasets as mod
    elif old == "alamp_fast.imbalance":
        import alamp_fast.imbalance as mod
    else:
        import alamp_fast.report as mod
    return mod


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_is_the_new_module(old, monkeypatch):
    new = importlib.import_module(MOVED[old])
    _forget(monkeypatch, old)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {MOVED[old]}") as w:
        mod = _import_old(old)
    assert mod is new
    assert sys.modules[old] is new
    assert getattr(sys.modules["alamp_fast"], old.rpartition(".")[2]) is new
    # attributed to the importing line, not to the shim or to importlib
    assert [r.filename for r in w if r.category is DeprecationWarning] == [__file__]
    # a second import is the cached module: no second warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _import_old(old) is new


def test_monkeypatching_the_old_name_reaches_the_protocol(monkeypatch):
    from alamp_fast.al.protocol import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import alamp_fast.protocol as old
    made = []
    real = old.make_classifier

    def counted(*args, **kwargs):
        made.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(old, "make_classifier", counted)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6)).astype(np.float32)
    y = np.arange(80) % 3
    simulate(X[:60], y[:60], X[60:], y[60:], strategies=["margin"], init=9, step=6,
             iterations=2, runs=1)
    assert made == ["linear-svc"] * 3  # the initial fit and one per iteration


@pytest.mark.parametrize(
    "old, name",
    [
        ("alamp_fast.protocol", "SoftmaxLinearSVC"),
        ("alamp_fast.strategies", "Alamp"),
        ("alamp_fast.datasets", "Dataset"),
    ],
)
def test_a_pickle_naming_the_old_path_still_loads(old, name, monkeypatch):
    # the package's own files (checkpoints, project state) are .npz without pickles; a user's
    # pickle of a classifier, strategy or dataset names the class by its module path
    new = importlib.import_module(MOVED[old])
    cls = getattr(new, name)
    rng = np.random.default_rng(1)
    if name == "SoftmaxLinearSVC":
        X = rng.standard_normal((40, 5)).astype(np.float32)
        obj = cls(random_state=0).fit(X, np.arange(40) % 4)
    elif name == "Alamp":
        obj = cls()
        obj.query(rng.dirichlet(np.ones(4), 30), 5, labeled=np.arange(3))
    else:
        obj = cls(X_train=np.zeros((2, 3), np.float32), y_train=np.array([0, 1]),
                  X_test=np.zeros((1, 3), np.float32), y_test=np.array([1]),
                  classes=np.array(["a", "b"]), name="tiny")
    # the bytes an older version wrote: the class under its old module path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module(old)
    monkeypatch.setattr(cls, "__module__", old)
    blob = pickle.dumps(obj)
    monkeypatch.undo()
    assert old.encode() in blob and MOVED[old].encode() not in blob
    _forget(monkeypatch, old)  # loaded in a process that has not imported the old path
    with pytest.warns(DeprecationWarning, match=old):
        back = pickle.loads(blob)
    assert type(back) is cls
    if name == "SoftmaxLinearSVC":
        X = rng.standard_normal((10, 5)).astype(np.float32)
        np.testing.assert_array_equal(back.predict_proba(X), obj.predict_proba(X))
    elif name == "Alamp":
        state, got = obj.state_dict(), back.state_dict()
        assert state.keys() == got.keys()
        for k in state:
            np.testing.assert_array_equal(got[k], state[k])
    else:
        assert back.describe() == obj.describe()


def test_the_new_paths_import_without_a_deprecation_warning():
    # the package's own modules must not go through a shim (it would warn at import)
    mods = sorted(MOVED.values()) + ["alamp_fast.al.classifiers", "alamp_fast.al.loop"]
    code = "; ".join(f"import {m}" for m in mods)
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
