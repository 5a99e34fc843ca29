"""The fine-tuning input path hands torch contiguous NCHW batches, and training on it does not
crash the process.

On some x86-64 CPUs, torch 2.13.0+cpu aborted ("double free or corruption", SIGABRT) in the
backward pass of ``tests/finetune/test_finetune.py::test_lr_divided_by_10_after_plateau`` when
the network's input was the permuted (channels-last strided) view of the NHWC images. The training
here runs in a child process, with the exact shapes of that test, so that an abort is a failed
test naming the signal instead of the end of the pytest run; the child also records the layout
of every tensor the network received, which fails the test on any CPU if a strided view comes
back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from alamp_fast.finetune.resnet import resnet18
    from alamp_fast.finetune.train import TrainConfig, fit, predict

    torch.set_num_threads(1)
    seen = []

    def record(module, args):
        x = args[0]
        seen.append({
            "shape": list(x.shape),
            "stride": list(x.stride()),
            "contiguous": x.is_contiguous(),
        })

    augment = sys.argv[1] == "augment"
    # the shapes of test_lr_divided_by_10_after_plateau: 8 images of 16 x 16, width-4
    # small-input ResNet-18, one batch of 8 per epoch, 8 epochs
    X = np.zeros((8, 16, 16, 3), np.uint8)
    if augment:
        X = np.random.default_rng(0).integers(0, 256, X.shape, dtype=np.uint8)
    model = resnet18(2, small_input=True, width=4)
    model.register_forward_pre_hook(record)
    cfg = TrainConfig(device="cpu", epochs=8, batch_size=8, plateau_patience=2, augment=augment)
    hist = fit(model, X, [0, 1] * 4, config=cfg)
    probs = predict(model, X, config=cfg.replace(eval_batch_size=3))
    print(json.dumps({
        "train_error": hist["train_error"],
        "lr": hist["lr"],
        "loss_finite": bool(np.isfinite(hist["loss"]).all()),
        "probs_shape": list(probs.shape),
        "inputs": seen,
    }))
    """
)


def _run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line, as JSON.

    A child killed by a signal (an abort in torch) fails the test naming the signal.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        pytest.fail(
            f"training on the fine-tuning input path killed the process with {sig}\n"
            f"stderr (tail):\n{proc.stderr[-3000:]}"
        )
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_child_killed_by_a_signal_is_a_failure_naming_it():
    with pytest.raises(pytest.fail.Exception, match="SIGABRT"):
        _run_child("import os; os.abort()")


@pytest.mark.parametrize("mode", ["plain", "augment"])
def test_training_on_the_input_path_survives_and_feeds_contiguous_nchw(mode):
    out = _run_child(CHILD, mode)
    assert out["loss_finite"]
    assert len(out["train_error"]) == 8
    if mode == "plain":  # the crashing test's own checks
        assert out["train_error"] == [0.5] * 8
        assert out["lr"] == pytest.approx([0.01] * 4 + [0.001] * 3 + [0.0001], rel=1e-12)
    assert out["probs_shape"] == [8, 2]
    # 8 training batches of 8, then 3 eval batches (3, 3, 2): every one C-contiguous NCHW
    shapes = [tuple(i["shape"]) for i in out["inputs"]]
    assert shapes == [(8, 3, 16, 16)] * 8 + [(3, 3, 16, 16)] * 2 + [(2, 3, 16, 16)]
    for i in out["inputs"]:
        n, c, h, w = i["shape"]
        assert i["contiguous"], f"network input {i['shape']} has strides {i['stride']}"
        assert i["stride"] == [c * h * w, h * w, w, 1], i
