"""``simulate`` survives Ctrl-C and SIGTERM: finished (strategy, run) results are kept, written
atomically, and ``--resume`` ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alamp_fast.al.loop import Checkpoint
from alamp_fast.al.protocol import simulate
from alamp_fast.cli import main

ROOT = Path(__file__).resolve().parents[2]

# A classifier slow enough (20 ms a fit) that a signal lands in the middle of the run.
SLOW = '''
import time
from sklearn.linear_model import LogisticRegression

class SlowLogReg(LogisticRegression):
    def fit(self, X, y):
        time.sleep(0.02)
        return super().fit(X, y)
'''

ARGS = ["simulate", "--init", "20", "--step", "10", "--iterations", "3", "--runs", "3",
        "--strategies", "random,margin,alamp-div,entropy", "--classifier", "slowclf:SlowLogReg",
        "--no-plots", "--save-order", "--quiet"]


def _env(tmp_path):
    (tmp_path / "slowclf.py").write_text(SLOW)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _strip_timings(doc):
    out = {}
    for name, s in doc["strategies"].items():
        keep = {k: v for k, v in s.items() if not k.endswith("_s_mean") and k != "runs"}
        keep["runs"] = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in s["runs"]]
        out[name] = keep
    return out


@pytest.fixture(scope="module")
def slow_env(tmp_path_factory):
    path = tmp_path_factory.mktemp("slowclf")
    env = _env(path)
    sys.path.insert(0, str(path))
    yield env
    sys.path.remove(str(path))


@pytest.fixture(scope="module")
def uninterrupted(slow_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert main([*ARGS, "--out", str(out)]) == 0
    assert not (out / "checkpoint").exists()  # removed once the results are written
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_subprocess_resumes_to_the_uninterrupted_numbers(
    tmp_path, slow_env, uninterrupted, sig, capsys
):
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "alamp_fast", *ARGS, "--out", str(cut)],
                            env=slow_env, stderr=subprocess.PIPE, text=True)
    ckpt = cut / "checkpoint"
    deadline = time.monotonic() + 120
    while not list(ckpt.glob("S*-R*.npz")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    kept = sorted(ckpt.glob("S*-R*.npz"))
    assert 1 <= len(kept) < 12, "the signal should land mid-run"
    assert "--resume" in err and err.strip().count("\n") == 0, err
    assert not (cut / "results.json").exists()
    assert not list(ckpt.glob("*.tmp"))

    # without --resume the kept runs are not overwritten
    assert main([*ARGS, "--out", str(cut)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(ckpt.glob("S*")) == kept

    assert main([*ARGS, "--out", str(cut), "--resume"]) == 0
    resumed = json.loads((cut / "results.json").read_text())
    assert _strip_timings(resumed) == _strip_timings(uninterrupted)
    assert not ckpt.exists()


def test_resume_refuses_another_configuration(tmp_path, capsys):
    out = tmp_path / "o"
    base = ["simulate", "--init", "20", "--step", "10", "--iterations", "1", "--runs", "1",
            "--strategies", "random,margin", "--no-plots", "--quiet", "--out", str(out)]
    assert main([*base, "--resume"]) == 2
    assert "no interrupted run to continue" in capsys.readouterr().err
    # a checkpoint of another configuration (seed 1) is left behind
    from alamp_fast.al.datasets import load_digits

    simulate(load_digits(), strategies=["random", "margin"], init=20, step=10, iterations=1,
             runs=1, seed=1, checkpoint=out / "checkpoint")
    assert main([*base, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint of another simulation" in err and "config" in err


def test_api_checkpoint_skips_finished_runs(tmp_path):
    from alamp_fast.al.datasets import load_digits

    ds = load_digits()
    kw = dict(strategies=["random", "margin", "alamp"], init=20, step=10, iterations=2, runs=2,
              seed=4)
    ref = simulate(ds, **kw)
    ckpt = tmp_path / "ck"
    simulate(ds, checkpoint=ckpt, **kw)
    files = sorted(ckpt.glob("S*-R*.npz"))
    assert len(files) == 6
    # keep 2 of 6 as an interrupted run would; those are loaded, not rerun (not rewritten)
    kept = {f: f.read_bytes() for f in files[:2]}
    for f in files[2:]:
        f.unlink()
    with pytest.raises(ValueError, match="resume"):
        simulate(ds, checkpoint=ckpt, **kw)
    again = simulate(ds, checkpoint=ckpt, resume=True, **kw)
    for name in kw["strategies"]:
        for r0, r1 in zip(ref.records[name], again.records[name], strict=True):
            np.testing.assert_array_equal(r0.order, r1.order)
            np.testing.assert_array_equal(r0.accuracy, r1.accuracy)
            np.testing.assert_array_equal(r0.class_counts, r1.class_counts)
    assert ref.summary()["alamp"]["accuracy_mean"] == again.summary()["alamp"]["accuracy_mean"]
    assert all(f.read_bytes() == data for f, data in kept.items())
    assert len(list(ckpt.glob("S*-R*.npz"))) == 6


def test_damaged_checkpoint_file_is_one_clear_error(tmp_path):
    ck = Checkpoint(tmp_path / "ck", {"a": 1})
    assert not (tmp_path / "ck").exists()  # nothing before the first record
    ck._ensure()
    (tmp_path / "ck" / "S000-R000.npz").write_bytes(b"not a zip")
    again = Checkpoint(tmp_path / "ck", {"a": 1}, resume=True)
    with pytest.raises(ValueError, match="S000-R000.npz is damaged"):
        again.load(["random"])
    assert ck.path == again.path
