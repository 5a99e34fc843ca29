"""benchmarks/reproduce_paper.py: loud failure without data, results under --out only, the
per-dataset outputs, skipping complete datasets, resuming from a checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reproduce_paper",
                                               ROOT / "benchmarks" / "reproduce_paper.py")
rp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rp)


def features(tmp_path, n_train=240, n_test=90, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((4, 8)) * 3
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 4
        np.savez(tmp_path / f"{split}.npz", X=(means[y] + rng.standard_normal((n, 8))), y=y)
    return tmp_path / "train.npz", tmp_path / "test.npz"


def test_missing_data_fails_loudly_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert rp.main(["--out", str(out), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "missing" in err and "caltech101/feats_mobilenetv1_train.npz" in err and "--data" in err
    assert not out.exists()
    assert rp.main(["--out", str(out), "--train", str(tmp_path / "x.npz")]) == 2
    assert "missing features file" in capsys.readouterr().err


def test_own_features_end_to_end_then_skipped_then_resumed(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    train, test = features(tmp_path)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--train", str(train), "--test", str(test), "--name", "mine",
            "--classifier", "linear-svc", "--init", "20", "--step", "10", "--iterations", "2",
            "--runs", "2", "--strategies", "random,margin,margin-div,alamp", "--quiet"]
    assert rp.main(argv) == 0
    printed = capsys.readouterr().out
    assert "load average at start: [" in printed and "load average at end: [" in printed
    d = out / "mine"
    for f in ("results.json", "results.csv", "accuracy.png", "imbalance.png",
              "diversification.png", "table.md"):
        assert (d / f).is_file(), f
    assert not (d / "checkpoint").exists()
    doc = json.loads((d / "results.json").read_text())
    assert doc["config"]["runs"] == 2 and set(doc["strategies"]) == {
        "random", "margin", "margin-div", "alamp"}
    rep = doc["reproduce"]
    for key in ("load_average_before", "load_average_after"):
        assert len(rep[key]) == 3 and all(x >= 0 for x in rep[key]), rep
    assert isinstance(rep["under_load"], bool)
    table = (d / "table.md").read_text()
    assert "gain vs random" in table and "n@0.9" in table and "s per iteration" in table
    assert f"load average {rep['load_average_before']} at start" in table
    summary = (out / "summary.md").read_text()
    assert "mine" in summary and "Load average (1, 5, 15 min): [" in summary

    assert rp.main(argv) == 0  # complete: skipped
    assert "complete" in capsys.readouterr().out

    # an interrupted run: keep 3 of the 8 (strategy, run) results as a checkpoint
    from alamp_fast.al.datasets import load_dataset
    from alamp_fast.al.protocol import simulate

    ds = load_dataset(train, test, name="mine")
    (d / "results.json").unlink()
    simulate(ds, strategies=["random", "margin", "margin-div", "alamp"], classifier="linear-svc",
             init=20, step=10, iterations=2, runs=2, targets=(0.7, 0.8, 0.9),
             checkpoint=d / "checkpoint")
    for f in sorted((d / "checkpoint").glob("S*-R*.npz"))[3:]:
        f.unlink()
    assert rp.main(argv) == 0
    assert "resuming, 3 finished" in capsys.readouterr().out
    again = json.loads((d / "results.json").read_text())
    for name, s in doc["strategies"].items():
        assert again["strategies"][name]["accuracy_mean"] == s["accuracy_mean"]


def test_bad_options_are_one_line(tmp_path, capsys):
    assert rp.main(["--out", str(tmp_path), "--datasets", "imagenet"]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    assert rp.main(["--out", str(tmp_path), "--classifier", "forest"]) == 2
    assert "unknown --classifier 'forest'" in capsys.readouterr().err


def test_estimate_runs_no_protocol_and_writes_an_estimate(tmp_path):
    train, test = features(tmp_path)
    out = tmp_path / "est"
    assert rp.main(["--out", str(out), "--train", str(train), "--test", str(test),
                    "--classifier", "linear-svc", "--init", "20", "--step", "10",
                    "--iterations", "4", "--runs", "3", "--strategies", "random,margin,entropy",
                    "--estimate", "--quiet"]) == 0
    doc = json.loads((out / "estimate.json").read_text())
    assert len(doc["load_average_before"]) == len(doc["load_average_after"]) == 3
    assert isinstance(doc["under_load"], bool)
    est = doc["datasets"]["train"]
    assert sorted(est["probed"], key=int) == ["20", "40", "60"]
    assert est["labeled_points"] == [20, 30, 40, 50, 60]
    assert est["estimated_total_s"] == pytest.approx(3 * sum(est["estimated_s_per_run"].values()))
    assert not (out / "train").exists()  # no protocol ran
