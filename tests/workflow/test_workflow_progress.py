"""``select``'s progress: the ``progress`` callback of :meth:`Project.select` (reading, fitting,
scoring, chunk by chunk), and ``alamp-fast select`` drawing it with an ETA on a terminal only."""

from __future__ import annotations

import io
import os
import shutil
import sys

import pytest
from conftest import assert_exact
from test_workflow import NAMES, make_pool, truth_by_id, write_pool

import alamp_fast.workflow.pool as wf_pool
from alamp_fast.cli import main
from alamp_fast.workflow import Project


class FakeTerminal(io.StringIO):
    """Standard error as a terminal: what a user at a shell has."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def labeled_project(tmp_path, rng):
    """A project whose next round is a strategy round (one labeled round, all classes)."""
    X, y, _ = make_pool(rng, n=300, d=8)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="alamp", budget=10,
                        init=40, seed=3)
    truth = truth_by_id(y)
    proj.label({i: truth[i] for i in proj.select().ids})
    return tmp_path / "p", X


def _stages(calls, stage):
    return [(done, total) for s, done, total in calls if s == stage]


@pytest.mark.parametrize("strategy", ["alamp", "entropy"])  # the fused path; the probabilities
def test_progress_is_reported_chunk_by_chunk_and_changes_no_pick(
    tmp_path, rng, monkeypatch, strategy
):
    X, y, _ = make_pool(rng, n=300, d=8)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "a", pool, classes=NAMES, strategy=strategy, budget=10,
                        init=40, seed=3)
    truth = truth_by_id(y)
    proj.label({i: truth[i] for i in proj.select().ids})
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    whole = Project.open(tmp_path / "a").select()  # no progress: the classifier's own call

    monkeypatch.setattr(wf_pool, "_POOL_BLOCK_BYTES", 8 * 4 * 64)  # 64-row blocks and chunks
    calls = []
    blocked = Project.open(tmp_path / "b").select(progress=lambda *a: calls.append(a))
    n = X.shape[0]
    read, fit, score = _stages(calls, "read"), _stages(calls, "fit"), _stages(calls, "score")
    assert read == [(k, n) for k in (64, 128, 192, 256, 300)], read
    assert fit == [(0, 40), (40, 40)], fit
    assert score == [(k, n) for k in (64, 128, 192, 256, 300)], score
    assert [c[0] for c in calls] == ["read"] * 5 + ["fit"] * 2 + ["score"] * 5
    # scoring chunk by chunk with progress gives the values of the call without, bit for bit
    assert_exact(blocked.rows, whole.rows, "picks")
    assert_exact(blocked.scores, whole.scores, "scores")
    assert_exact(blocked.margins, whole.margins, "margins")
    assert blocked.predicted == whole.predicted


@pytest.mark.parametrize("strategy", ["alamp", "entropy"])
def test_with_progress_the_classifier_still_scores_the_pool_in_one_call(
    labeled_project, monkeypatch, strategy
):
    import alamp_fast.al.protocol as protocol

    proj_dir, X = labeled_project  # alamp's project; entropy's is a copy with its labels
    if strategy != "alamp":
        proj_dir = _with_strategy(proj_dir, strategy)
    monkeypatch.setattr(wf_pool, "_POOL_BLOCK_BYTES", 8 * 4 * 64)  # many chunks
    calls, depth = [], [0]
    make = protocol.make_classifier

    def wrap(f, name):
        def outermost(Xs, *a, **k):
            depth[0] += 1
            try:
                out = f(Xs, *a, **k)
                if name == "_proba_chunks":
                    out = list(out)  # a generator: consumed inside the count
                return out
            finally:
                depth[0] -= 1
                if depth[0] == 0 and Xs.shape[0] > 40:  # scoring the pool, not the fit
                    calls.append((name, Xs.shape[0]))
        return outermost

    def make_counted(*a, **k):
        clf = make(*a, **k)
        for name in ("predict_proba", "decision_function", "predict_top2_margin",
                     "_proba_chunks"):
            setattr(clf, name, wrap(getattr(clf, name), name))
        return clf

    monkeypatch.setattr(protocol, "make_classifier", make_counted)
    seen = []
    Project.open(proj_dir).select(progress=lambda *a: seen.append(a))
    assert len([s for s in seen if s[0] == "score"]) > 1  # reported chunk by chunk
    assert calls == [("_proba_chunks", X.shape[0])], calls  # and scored in one call


def _with_strategy(proj_dir, strategy):
    """A copy of the project at ``proj_dir`` made with another strategy, same labels."""
    src = Project.open(proj_dir)
    pool = src.status(cv=0)["pool"]["path"]
    dst = Project.init(proj_dir.parent / f"p-{strategy}", pool, classes=src.classes,
                       strategy=strategy, budget=10, init=40, seed=3)
    dst.select()
    dst.label({row["id"]: row["label"] for row in src.labels()})
    return dst.path


def test_a_random_round_reports_no_progress(tmp_path, rng):
    X, _, _ = make_pool(rng, n=100)
    pool = write_pool(tmp_path / "pool.npy", X)
    old = 1_000_000_000
    os.utime(pool, (old, old))  # signature trusted: the random round reads no features
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, budget=10)
    calls = []
    proj.select(progress=lambda *a: calls.append(a))
    assert calls == []


def test_cli_select_shows_progress_with_an_eta_on_a_terminal(labeled_project, monkeypatch,
                                                              capsys):
    proj_dir, X = labeled_project
    monkeypatch.setattr(wf_pool, "_POOL_BLOCK_BYTES", 8 * 4 * 100)
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["select", "-p", str(proj_dir)]) == 0
    err = term.getvalue()
    for stage in ("reading the pool", "fitting the classifier", "scoring the pool"):
        assert f"select: {stage}" in err, err
    assert "ETA" in err, err
    assert f"{X.shape[0]}/{X.shape[0]}" in err, err  # each bar ends complete
    assert "round 2: 10 samples" in capsys.readouterr().out


def test_cli_select_is_quiet_when_piped_or_asked(labeled_project, monkeypatch, capsys):
    proj_dir, _ = labeled_project
    shutil.copytree(proj_dir, proj_dir.parent / "q")
    monkeypatch.setattr(wf_pool, "_POOL_BLOCK_BYTES", 8 * 4 * 100)
    piped = io.StringIO()  # not a terminal: a pipe or a log file
    monkeypatch.setattr(sys, "stderr", piped)
    assert main(["select", "-p", str(proj_dir)]) == 0
    assert piped.getvalue() == ""
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["select", "-p", str(proj_dir.parent / "q"), "--quiet"]) == 0
    assert term.getvalue() == ""
    out = capsys.readouterr().out
    assert out.count("round 2: 10 samples") == 2


def test_the_progress_display_closes_its_bar_when_select_fails(labeled_project, monkeypatch):
    from alamp_fast.cli.workflow import SelectProgress

    proj_dir, _ = labeled_project
    term = FakeTerminal()
    shown = SelectProgress(term)
    shown("read", 10, 100)
    assert shown.bar is not None
    shown.close()
    assert shown.bar is None
    # a failing round (a budget larger than the pool) leaves no bar open and one error line
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["select", "-p", str(proj_dir), "--budget", "100000"]) == 1
    assert "budget b=100000 exceeds" in term.getvalue()
