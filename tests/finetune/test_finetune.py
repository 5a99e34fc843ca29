"""The fine-tuning scheme: ResNet-18 layout and weights, training loop, thresholding, the FT
protocol and the source-model recipe, on tiny images on the CPU."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import torch
from conftest import assert_exact

from alamp_fast.al.strategies import Strategy
from alamp_fast.cli import finetune as cli_finetune
from alamp_fast.finetune import data as ft_data
from alamp_fast.finetune import pretrain
from alamp_fast.finetune.resnet import (
    load_backbone,
    load_state_dict_file,
    resnet18,
)
from alamp_fast.finetune.scheme import (
    FT_STRATEGIES,
    FineTuneClassifier,
    simulate_ft,
)
from alamp_fast.finetune.train import (
    TrainConfig,
    class_priors,
    fit,
    predict,
    threshold_probs,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread (two shared cores), set after numba has started its thread pool.

    numba's OpenMP threading layer and torch share the process's libgomp: starting numba's
    pool (any ``numba.get_num_threads()``, e.g. inside ``kcenter_greedy``) sets the OpenMP
    thread count, and torch then runs on numba's count instead of 1. Starting the pool first
    makes ``set_num_threads(1)`` stick: 25 s against 4 s for the FT protocol test here.
    """
    import numba

    numba.get_num_threads()
    torch.set_num_threads(1)


CPU = TrainConfig(device="cpu")


def torchvision_resnet18_layout(num_classes=1000) -> dict[str, tuple]:
    """Key -> shape of ``torchvision.models.resnet18().state_dict()``, written out from its
    definition (conv1 7x7, bn1, 4 stages of 2 BasicBlocks, downsample in stages 2-4, fc)."""
    layout = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, c):
        layout.update(
            {
                f"{prefix}.weight": (c,),
                f"{prefix}.bias": (c,),
                f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,),
                f"{prefix}.num_batches_tracked": (),
            }
        )

    bn("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            layout[f"{p}.conv1.weight"] = (planes, inplanes if block == 0 else planes, 3, 3)
            bn(f"{p}.bn1", planes)
            layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if block == 0 and stage > 1:
                layout[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    layout["fc.weight"] = (num_classes, 512)
    layout["fc.bias"] = (num_classes,)
    return layout


def random_state_dict(layout, gen) -> dict:
    out = {}
    for k, shape in layout.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[k] = torch.randn(shape, generator=gen) * 0.05
    return out


def blobs(rng, n, n_classes, size=16):
    """Images whose class sets the mean colour: learnable in a couple of epochs."""
    y = np.arange(n) % n_classes  # balanced prefixes: X[:k] is a balanced pool for k % C == 0
    palette = rng.integers(40, 216, (n_classes, 3))
    X = palette[y][:, None, None, :] + rng.normal(0, 25, (n, size, size, 3))
    return np.clip(X, 0, 255).astype(np.uint8), y


# ---------------------------------------------------------------------------------------------
# network and weights


def test_forward_shapes():
    with torch.no_grad():
        m = resnet18(num_classes=7).eval()
        assert m(torch.rand(2, 3, 64, 64)).shape == (2, 7)
        assert m.features(torch.rand(2, 3, 64, 64)).shape == (2, 512)
        small = resnet18(num_classes=10, small_input=True, width=16).eval()
        assert small(torch.rand(3, 3, 32, 32)).shape == (3, 10)
        assert small.features(torch.rand(3, 3, 32, 32)).shape == (3, 128)
        assert small.conv1.weight.shape == (16, 3, 3, 3)
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(num_classes=0)


def test_state_dict_has_torchvision_names_and_shapes():
    want = torchvision_resnet18_layout(1000)
    got = {k: tuple(v.shape) for k, v in resnet18().state_dict().items()}
    assert list(got) == list(want)  # same names, in torchvision's order
    assert got == want
    small = {k: tuple(v.shape) for k, v in resnet18(small_input=True).state_dict().items()}
    assert small["conv1.weight"] == (64, 3, 3, 3)
    assert {k: v for k, v in small.items() if k != "conv1.weight"} == {
        k: v for k, v in want.items() if k != "conv1.weight"
    }


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module-prefix"])
def test_torchvision_style_file_loads(tmp_path, wrap):
    gen = torch.Generator().manual_seed(1)
    state = random_state_dict(torchvision_resnet18_layout(1000), gen)
    obj = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "module-prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "resnet18.pth"
    torch.save(obj, path)
    loaded = load_state_dict_file(path)
    model = resnet18()
    model.load_state_dict(loaded, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    a = resnet18(num_classes=5, small_input=True, width=8)
    # non-default BN statistics, so the buffers are part of what must survive
    a.train()
    with torch.no_grad():
        a(torch.rand(4, 3, 16, 16))
    path = tmp_path / "m.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(1)
    b = resnet18(num_classes=5, small_input=True, width=8)
    b.load_state_dict(load_state_dict_file(path))
    x = torch.rand(3, 3, 16, 16)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert int(b.bn1.num_batches_tracked) == 1


def test_load_backbone_keeps_new_head_and_names_mismatches(tmp_path):
    gen = torch.Generator().manual_seed(2)
    state = random_state_dict(torchvision_resnet18_layout(1000), gen)
    torch.manual_seed(0)
    model = resnet18(num_classes=10)
    fc_before = model.fc.weight.detach().clone()
    loaded = load_backbone(model, state)
    assert len(loaded) == 120 and "fc.weight" not in loaded
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.fc.weight, fc_before)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    load_backbone(resnet18(num_classes=3), path)  # a path works too
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(64, 3, 7, 7\)"):
        load_backbone(resnet18(num_classes=10, small_input=True), state)
    del state["layer4.1.bn2.running_var"]
    with pytest.raises(ValueError, match="missing.*layer4.1.bn2.running_var"):
        load_backbone(resnet18(num_classes=10), state)


def test_load_state_dict_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_state_dict_file(tmp_path / "absent.pt")
    torch.save({"lr": 0.1, "epochs": 3}, tmp_path / "cfg.pt")
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        load_state_dict_file(tmp_path / "cfg.pt")
    torch.save(resnet18(num_classes=2, width=4), tmp_path / "module.pt")  # a pickled module
    with pytest.raises(ValueError, match="not a torch state-dict file"):
        load_state_dict_file(tmp_path / "module.pt")


# ---------------------------------------------------------------------------------------------
# training


def test_paper_defaults_and_optimizer(monkeypatch):
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (
        80,
        0.01,
        0.9,
        True,
        0.001,
    )
    assert (cfg.plateau_patience, cfg.lr_factor) == (10, 0.1)
    seen = {}
    real_sgd = torch.optim.SGD

    def spy(params, **kw):
        seen.update(kw)
        return real_sgd(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    X = np.zeros((4, 16, 16, 3), np.uint8)
    fit(resnet18(2, small_input=True, width=4), X, [0, 1, 0, 1], config=CPU.replace(epochs=1))
    assert seen == {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001}
    with pytest.raises(ValueError, match="lr_factor"):
        TrainConfig(lr_factor=1.5)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)


def test_lr_divided_by_10_after_plateau():
    # identical images with alternating labels: every prediction of a batch is the same class,
    # so the training error is exactly 0.5 at every epoch (a plateau from the start)
    X = np.zeros((8, 16, 16, 3), np.uint8)
    cfg = CPU.replace(epochs=8, batch_size=8, plateau_patience=2, augment=False)
    hist = fit(resnet18(2, small_input=True, width=4), X, [0, 1] * 4, config=cfg)
    assert hist["train_error"] == [0.5] * 8
    np.testing.assert_allclose(hist["lr"], [0.01] * 4 + [0.001] * 3 + [0.0001], rtol=1e-12)


def test_training_steps_lower_the_loss_and_change_the_weights(rng):
    X, y = blobs(rng, 24, 3)
    torch.manual_seed(0)
    model = resnet18(3, small_input=True, width=8)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hist = fit(model, X, y, config=CPU.replace(epochs=6, batch_size=12), seed=3)
    assert len(hist["loss"]) == 6
    assert hist["loss"][-1] < 0.7 * hist["loss"][0], hist["loss"]
    after = model.state_dict()
    for k in ("conv1.weight", "layer2.0.conv1.weight", "fc.weight", "bn1.running_mean"):
        assert not torch.equal(before[k], after[k]), f"{k} did not change"
    assert int(after["bn1.num_batches_tracked"]) == 12
    # the same seed and initialisation give the same model (CPU)
    torch.manual_seed(0)
    again = resnet18(3, small_input=True, width=8)
    fit(again, X, y, config=CPU.replace(epochs=6, batch_size=12), seed=3)
    for k, v in again.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_fit_input_errors():
    m = resnet18(2, small_input=True, width=4)
    with pytest.raises(ValueError, match=r"shape \(n, height, width, 3\)"):
        fit(m, np.zeros((4, 16, 16), np.uint8), [0, 1, 0, 1], config=CPU)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        fit(m, np.zeros((4, 16, 16, 3), np.uint8), [0, 1, 2, 1], config=CPU)
    with pytest.raises(ValueError, match="within"):
        fit(m, np.full((4, 16, 16, 3), 2.0), [0, 1, 0, 1], config=CPU)


# ---------------------------------------------------------------------------------------------
# thresholding


class FixedLogits(torch.nn.Module):
    """features(x) = mean pixel per channel; fc = a fixed linear map: known logits."""

    def __init__(self, weight, bias):
        super().__init__()
        self.fc = torch.nn.Linear(3, len(bias))
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.fc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        self.num_features = 3

    def features(self, x):
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


def test_thresholding_divides_by_priors():
    P = np.array([[0.6, 0.3, 0.1], [0.5, 0.45, 0.05], [0.2, 0.2, 0.6]], dtype=np.float32)
    priors = np.array([0.7, 0.2, 0.1])
    want = (P / priors) / (P / priors).sum(axis=1, keepdims=True)
    got = threshold_probs(P, priors)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert_exact(P.argmax(1), [0, 0, 2])
    assert_exact(got.argmax(1), [1, 1, 2], "thresholded predictions")
    assert_exact(class_priors([0, 0, 0, 2], 3), [0.75, 0.25, 0.25])
    with pytest.raises(ValueError, match="one value per class"):
        threshold_probs(P, priors[:2])
    with pytest.raises(ValueError, match="> 0"):
        threshold_probs(P, [0.5, 0.5, 0.0])


def test_predict_applies_thresholding_to_the_model_outputs(rng):
    model = FixedLogits(rng.normal(size=(3, 3)), [1.5, 0.0, -1.0])
    X = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    priors = class_priors(np.r_[np.zeros(30, int), np.ones(8, int), 2 * np.ones(2, int)], 3)
    raw, feats = predict(model, X, config=CPU, features=True)
    thr = predict(model, X, config=CPU, priors=priors)
    np.testing.assert_allclose(thr, threshold_probs(raw, priors), rtol=1e-6)
    # the logits by hand: mean of the normalised image, then the linear map
    x = (X / 255.0 - np.array(CPU.mean)) / np.array(CPU.std)
    np.testing.assert_allclose(feats, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    logits = feats @ model.fc.weight.detach().numpy().T + model.fc.bias.detach().numpy()
    np.testing.assert_allclose(raw, torch.softmax(torch.tensor(logits), 1).numpy(), rtol=1e-5)
    changed = raw.argmax(1) != thr.argmax(1)
    assert changed.any(), "the priors should move some predictions away from class 0"
    assert (thr.argmax(1)[changed] != 0).all()


def test_classifier_threshold_option(rng):
    # a heavily imbalanced training set; the thresholded classifier predicts argmax(p / prior)
    X, _ = blobs(rng, 20, 2)
    y = np.r_[np.zeros(17, int), np.ones(3, int)]
    cfg = CPU.replace(epochs=2, batch_size=10)
    plain = FineTuneClassifier(2, width=4, config=cfg, random_state=0).fit(X, y)
    thr = FineTuneClassifier(2, width=4, config=cfg, threshold=True, random_state=0).fit(X, y)
    np.testing.assert_allclose(thr.priors_, [0.85, 0.15])
    p = plain.predict_proba(X)
    np.testing.assert_allclose(thr.predict_proba(X), threshold_probs(p, [0.85, 0.15]), rtol=1e-5)
    assert_exact(thr.predict(X), (p / [0.85, 0.15]).argmax(1))
    assert plain.priors_ is None


# ---------------------------------------------------------------------------------------------
# the FT protocol


class Recorder(Strategy):
    """Checks what the loop hands a strategy: the current model's probabilities and features."""

    name = "recorder"
    needs_features = True

    def __init__(self, n_features):
        super().__init__()
        self.n_features = n_features
        self.seen = []

    def _select(self, probs, budget, labeled, features):
        assert probs.shape[0] == features.shape[0]
        assert features.shape[1] == self.n_features
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
        self.seen.append(features.copy())
        free = np.setdiff1d(np.arange(probs.shape[0]), labeled)
        return free[:budget]


def test_simulate_ft_end_to_end(rng, tmp_path):
    X, y = blobs(rng, 75, 3)
    cfg = CPU.replace(epochs=2, batch_size=8)
    rec = Recorder(n_features=8 * 4)
    kw = dict(config=cfg, width=4, init=6, step=4, iterations=2, runs=1, seed=5, targets=[0.5])
    res = simulate_ft(X[:51], y[:51], X[51:], y[51:], strategies=[*FT_STRATEGIES, rec], **kw)
    assert res.strategies == [*FT_STRATEGIES, "recorder"]
    assert res.config["scheme"] == "ft" and res.config["threshold"] is False
    assert res.config["small_input"] is True and res.config["width"] == 4
    summary = res.summary()
    for name in res.strategies:
        r = res.records[name][0]
        assert_exact(r.labeled, [6, 10, 14], name)
        assert np.unique(r.order).size == 14 and r.order.max() < 51
        assert_exact(r.order[:6], res.records["random"][0].order[:6], "same initial batch")
        assert ((0 <= r.accuracy) & (r.accuracy <= 1)).all()
        assert (r.fit_s > 0).all() and (r.query_s[:2] >= 0).all()
        assert summary[name]["labeled"] == [6, 10, 14]
    # the features change with the model: they come from the network of each iteration
    assert len(rec.seen) == 2 and not np.allclose(rec.seen[0], rec.seen[1])
    # deterministic on the CPU: the same seed gives the same labeling orders
    again = simulate_ft(X[:51], y[:51], X[51:], y[51:], strategies=["badge", "coreset"], **kw)
    for name in ("badge", "coreset"):
        assert_exact(again.records[name][0].order, res.records[name][0].order, name)
    from alamp_fast.al.report import write_results

    paths = write_results(res, tmp_path, plots=False)
    doc = json.loads(paths["json"].read_text())
    assert doc["config"]["train"]["epochs"] == 2 and "badge" in doc["strategies"]


def test_simulate_ft_thresholds_imbalanced_pools_and_checks_input(rng):
    X, y = blobs(rng, 60, 3)
    y[:40] = 0  # pool ir well above 0.1
    kw = dict(config=CPU.replace(epochs=1), width=4, init=6, step=3, iterations=1, runs=1)
    res = simulate_ft(X[:45], y[:45], X[45:], y[45:], strategies=["margin"], **kw)
    assert res.config["threshold"] is True
    assert res.dataset["pool_ir"] >= 0.1
    with pytest.raises(ValueError, match=r"shape \(n, height, width, 3\)"):
        simulate_ft(X[:45].reshape(45, -1), y[:45], X[45:], y[45:], **kw)
    with pytest.raises(ValueError, match="exceeds the 45 pool samples"):
        simulate_ft(X[:45], y[:45], X[45:], y[45:], **{**kw, "iterations": 20})
    with pytest.raises(ValueError, match="unknown strategy"):
        simulate_ft(X[:45], y[:45], X[45:], y[45:], strategies=["badger"], **kw)


# ---------------------------------------------------------------------------------------------
# data and the source-model recipe


def test_load_images_npz_and_folder(tmp_path, rng):
    X, y = blobs(rng, 6, 2, size=20)
    np.savez(tmp_path / "a.npz", X=X, y=np.array(["cat", "dog"])[y])
    s = ft_data.load_images(tmp_path / "a.npz")
    assert s.classes == ["cat", "dog"] and s.X.shape == (6, 20, 20, 3)
    assert_exact(s.y, y)
    from PIL import Image as PIL

    for i in range(6):
        folder = tmp_path / "imgs" / ["cat", "dog"][y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        PIL.fromarray(X[i]).save(folder / f"{i}.png")
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")
    f = ft_data.load_images(tmp_path / "imgs", image_size=20)
    assert f.classes == ["cat", "dog"] and f.X.shape == (6, 20, 20, 3)
    assert_exact(np.sort(f.y), np.sort(y))
    # PNG is lossless and the size is unchanged: the pixels come back exactly
    order = np.argsort(y, kind="stable")
    assert_exact(f.X, X[order])
    small = ft_data.load_images(tmp_path / "imgs", image_size=10)
    assert small.X.shape == (6, 10, 10, 3)


def test_folder_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "c").mkdir()
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="needs Pillow"):
        ft_data.load_images(tmp_path)


def test_split_classes_is_disjoint():
    src, tgt = pretrain.split_classes([f"c{i}" for i in range(10)], 6, seed=3)
    assert src.size == 6 and tgt.size == 4 and np.intersect1d(src, tgt).size == 0
    assert_exact(np.sort(np.r_[src, tgt]), np.arange(10))
    with pytest.raises(ValueError, match="leaving 2 or more targets"):
        pretrain.split_classes(["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="unknown source classes"):
        pretrain.split_classes(["a", "b", "c"], ["z"])


def test_finetune_command_end_to_end(tmp_path, rng, capsys):
    X, y = blobs(rng, 100, 5)
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    np.savez(tmp_path / "imgs.npz", X=X, y=names[y])
    parser = argparse.ArgumentParser()
    cli_finetune.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(
        [
            "--images", str(tmp_path / "imgs.npz"), "--source-classes", "bee,dog",
            "--pretrain-epochs", "2", "--epochs", "1", "--batch-size", "16", "--width", "4",
            "--device", "cpu", "--strategies", "random,badge", "--init", "6", "--step", "3",
            "--iterations", "1", "--runs", "1", "--out", str(out), "--no-plots", "--quiet",
        ]
    )  # fmt: skip
    assert cli_finetune.run(args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["finetune"]["source_classes"] == ["bee", "dog"]
    assert doc["finetune"]["target_classes"] == ["ant", "cat", "eel"]
    assert doc["finetune"]["pretrain"]["epochs"] == 2
    assert doc["dataset"]["n_classes"] == 3
    assert doc["config"]["weights"] == str(out / "source_model.pt")
    # the saved source model has 2 outputs and loads into the width-4 small network
    state = load_state_dict_file(out / "source_model.pt")
    m = resnet18(2, small_input=True, width=4)
    m.load_state_dict(state)
    assert "random" in capsys.readouterr().out
    # fine-tuning from those weights instead of pretraining again
    args.source_classes, args.weights = None, str(out / "source_model.pt")
    args.target_classes, args.out = "ant,cat,eel", str(tmp_path / "out2")
    assert cli_finetune.run(args) == 0
    doc2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert doc2["finetune"]["pretrain"] is None and doc2["dataset"]["n_classes"] == 3
    args.source_classes = "2"
    with pytest.raises(ValueError, match="exclude each other"):
        cli_finetune.run(args)


# ---------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch reports no CUDA device")
def test_fit_and_predict_on_cuda(rng):
    X, y = blobs(rng, 32, 2)
    cfg = TrainConfig(device="cuda", epochs=3, batch_size=16)
    clf = FineTuneClassifier(2, width=8, config=cfg, random_state=0).fit(X, y)
    assert next(clf.model_.parameters()).device.type == "cuda"
    probs, feats = clf.predict_outputs(X)
    assert probs.shape == (32, 2) and feats.shape == (32, 64)
    assert np.isfinite(probs).all() and np.isfinite(feats).all()
    amp = FineTuneClassifier(2, width=8, config=cfg.replace(amp=True), random_state=0).fit(X, y)
    assert np.isfinite(amp.predict_proba(X)).all()


def test_simulate_cli_scheme_ft_options(tmp_path, rng):
    """``simulate --scheme ft``: simulate_cli's parser carries the FT options without clashes,
    and its namespace runs the FT protocol."""
    from alamp_fast.cli import CLIError
    from alamp_fast.cli import simulate as simulate_cli

    X, y = blobs(rng, 48, 3)
    np.savez(tmp_path / "imgs.npz", X=X, y=y)
    parser = argparse.ArgumentParser()
    simulate_cli.add_arguments(parser)
    argv = ["--scheme", "ft", "--train", str(tmp_path / "imgs.npz"), "--width", "4", "--epochs", "1"]
    argv += ["--device", "cpu", "--strategies", "margin,badge,alamp", "--certainty", "confidence"]
    argv += ["--init", "6", "--step", "3", "--iterations", "1", "--runs", "1", "--save-order"]
    argv += ["--out", str(tmp_path / "o"), "--no-plots", "--quiet", "--targets", "0.5"]
    args = parser.parse_args(argv)
    assert cli_finetune.run_simulate_ft(args) == 0
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["config"]["scheme"] == "ft"
    assert doc["config"]["strategy_kwargs"] == {"alamp": {"certainty": "confidence"}}
    assert len(doc["strategies"]["badge"]["runs"][0]["order"]) == 9
    args.classifier = "logreg"
    with pytest.raises(CLIError, match="--classifier do not apply"):
        cli_finetune.run_simulate_ft(args)
