"""``alamp-fast simulate``: a tiny run writes valid JSON/CSV/PNG; bad options fail in one line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alamp_fast.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--init", "20", "--step", "10", "--iterations", "2", "--runs", "2", "--quiet"]


def check_outputs(out: Path, strategies: list[str], runs: int, points: int) -> dict:
    doc = json.loads((out / "results.json").read_text())
    assert doc["format"] == "alamp_fast.simulate/1"
    assert set(doc["strategies"]) == set(strategies)
    for s in doc["strategies"].values():
        for key in ("labeled", "accuracy_mean", "accuracy_std", "ir_mean"):
            assert len(s[key]) == points
        assert 0.0 <= s["mean_accuracy"] <= 1.0
        assert s["mean_accuracy"] == pytest.approx(np.mean(s["accuracy_mean"]))
        assert len(s["runs"]) == runs
    assert {"config", "versions", "machine", "dataset", "timing"} <= set(doc)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(strategies) * runs * points
    assert {r["strategy"] for r in rows} == set(strategies)
    for png in ("accuracy.png", "imbalance.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    return doc


def test_tiny_digits_run(tmp_path, capsys):
    rc = main(["simulate", *TINY, "--strategies", "random,margin,alamp-div",
               "--targets", "0.5,0.99", "--out", str(tmp_path)])
    assert rc == 0
    doc = check_outputs(tmp_path, ["random", "margin", "alamp-div"], runs=2, points=3)
    assert doc["strategies"]["margin"]["labeled"] == [20, 30, 40]
    assert set(doc["strategies"]["margin"]["samples_to_target"]) == {"0.5", "0.99"}
    out = capsys.readouterr().out
    assert "mean acc" in out and "alamp-div" in out and "n@0.99" in out


def test_default_run_is_quick(tmp_path):
    # The README's "main job": every strategy on digits, under a minute (a few seconds here).
    t0 = time.perf_counter()
    assert main(["simulate", "--quiet", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - t0 < 60
    doc = json.loads((tmp_path / "results.json").read_text())
    assert len(doc["strategies"]) == 9
    assert doc["config"]["init"] == 20 and doc["config"]["iterations"] == 10


def test_files_imbalance_and_drop_class(tmp_path):
    rng = np.random.default_rng(0)
    classes = np.array(["BACKGROUND_Google", "a", "b", "c"])
    means = rng.standard_normal((4, 8)) * 3
    for split, n in (("train", 400), ("test", 120)):
        y = (np.arange(n) % 4).astype(np.int16)
        X = means[y] + rng.standard_normal((n, 8))
        lo, hi = X.min(), X.max()
        scale = (hi - lo) / 255
        Xq = np.round((X - lo) / scale).astype(np.uint8)
        np.savez(tmp_path / f"{split}.npz", Xq=Xq, scale=np.float32(scale),
                 zero_point=np.int32(round(-lo / scale)), y=y, classes=classes)
    out = tmp_path / "out"
    rc = main(["simulate", "--train", str(tmp_path / "train.npz"), "--test",
               str(tmp_path / "test.npz"), "--drop-class", "BACKGROUND_Google",
               "--imbalance", "0.5", "--strategies", "random,coreset", *TINY,
               "--out", str(out), "--no-plots"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["dataset"]["n_classes"] == 3
    assert abs(doc["dataset"]["pool_ir"] - 0.5) <= 0.01
    assert doc["config"]["cost_sensitive"] is True
    assert not (out / "accuracy.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--strategies", "random,badge"], "unknown strategy 'badge'"),
    (["--init", "abc"], "--init must be an integer"),
    (["--runs", "0"], "--runs must be >= 1"),
    (["--imbalance", "-1"], "--imbalance must be in"),
    (["--classifier", "forest"], "unknown --classifier 'forest'"),
    (["--targets", "0.5,95"], "--targets must be in"),
    (["--cost-sensitive", "maybe"], "--cost-sensitive"),
    (["--init", "1000", "--iterations", "10", "--step", "100"], "exceeds the 1347 pool"),
    (["--train", "/nonexistent/x.npz"], "no such features file"),
    (["--drop-class", "7"], None),  # digits class names are 0..9: dropping one is fine
])
def test_bad_options_one_line_nonzero(tmp_path, capsys, argv, message):
    rc = main(["simulate", "--quiet", "--init", "20", "--step", "10", "--iterations", "1",
               "--runs", "1", "--out", str(tmp_path), "--no-plots", *argv])
    err = capsys.readouterr().err.strip()
    if message is None:
        assert rc == 0
        return
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err, err


def test_subprocess_module_entry(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-m", "alamp_fast", "simulate", *TINY, "--strategies", "margin,alamp",
         "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    check_outputs(tmp_path, ["margin", "alamp"], runs=2, points=3)
    bad = subprocess.run(
        [sys.executable, "-m", "alamp_fast", "simulate", "--strategies", "nope", "--out",
         str(tmp_path)], capture_output=True, text=True, env=env, timeout=300,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_own_parquet_pool_with_name_key_and_custom_classifier(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(3)
    means = rng.standard_normal((3, 6)) * 3
    for split, n in (("train", 150), ("test", 60)):
        y = np.arange(n) % 3
        X = (means[y] + rng.standard_normal((n, 6))).astype(np.float32)
        pq.write_table(pa.table({"emb": list(X), "other": list(X[:, :2]),
                                 "label": np.array(["a", "b", "c"])[y]}),
                       tmp_path / f"{split}.parquet")
    out = tmp_path / "out"
    rc = main(["simulate", "--train", str(tmp_path / "train.parquet"), "--test",
               str(tmp_path / "test.parquet"), "--key", "emb", "--name", "my features",
               "--classifier", "sklearn.linear_model:LogisticRegression",
               "--strategies", "random,margin", *TINY, "--out", str(out), "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert doc["dataset"]["name"] == "my features" and doc["dataset"]["n_features"] == 6
    assert "LogisticRegression" in doc["config"]["classifier"]
    assert "LogisticRegression" in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [
    ("nosuchmodule_xyz:Thing", "cannot import 'nosuchmodule_xyz'"),
    ("sklearn.linear_model:Nope", "has no 'Nope'"),
    ("sklearn.preprocessing:StandardScaler", "is not a classifier with fit and predict_proba"),
])
def test_custom_classifier_errors_are_one_line(tmp_path, capsys, spec, message):
    rc = main(["simulate", "--quiet", "--init", "20", "--step", "10", "--iterations", "1",
               "--runs", "1", "--out", str(tmp_path), "--no-plots", "--classifier", spec])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_without_matplotlib_plots_are_skipped_with_one_line(tmp_path, capsys, monkeypatch):
    from alamp_fast.cli import simulate

    monkeypatch.setattr(simulate, "plots_available", lambda: False)
    rc = main(["simulate", *TINY, "--strategies", "margin", "--out", str(tmp_path)])
    assert rc == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'alamp_fast[plot]'" in err
    assert (tmp_path / "results.json").exists() and not (tmp_path / "accuracy.png").exists()


def test_no_progress_output_when_piped(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-m", "alamp_fast", "simulate", "--init", "20", "--step", "10",
         "--iterations", "1", "--runs", "1", "--strategies", "margin", "--no-plots",
         "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "wall" in proc.stdout and "simulation" in proc.stdout


def test_progress_bar_with_eta_when_asked(capsys):
    from alamp_fast._progress import LineProgress, make_progress

    assert make_progress(False, 10, "x") is None
    bar = LineProgress(4, "simulate", sys.stderr)
    for _ in range(4):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "simulate: 4/4" in err and "ETA" in err


class _Terminal(io.StringIO):
    """A fake standard error that says it is a terminal."""

    def isatty(self):
        return True


def test_progress_on_a_terminal_and_quiet_when_piped(tmp_path, monkeypatch, capsys):
    """simulate's bar goes to standard error only when it is a terminal (the same rule and
    helper as bench's: alamp_fast._progress)."""
    argv = ["simulate", "--init", "20", "--step", "10", "--iterations", "2", "--runs", "1",
            "--strategies", "margin", "--no-plots"]
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    shown = tty.getvalue()
    assert "simulate" in shown and "ETA" in shown and "3/3" in shown, shown  # init + 2
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([*argv, "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert quiet.getvalue() == ""
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    assert piped.getvalue() == ""


def test_diversification_figure_and_captions(tmp_path):
    from alamp_fast.al import report

    rc = main(["simulate", *TINY, "--strategies", "random,margin,margin-div", "--out",
               str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "diversification.png").read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((tmp_path / "results.json").read_text())
    captions = []
    real = report._caption
    try:
        report._caption = lambda fig, text: captions.append(text)
        report.plot_accuracy(doc, tmp_path / "a.png")
        report.plot_diversification(doc, tmp_path / "d.png")
    finally:
        report._caption = real
    assert all("+/- one standard deviation over runs" in c for c in captions), captions
    with pytest.raises(ValueError, match="-div variant"):
        report.plot_diversification({"strategies": {"margin": {}}}, tmp_path / "x.png")
