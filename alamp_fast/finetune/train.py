"""Fine-tuning loop, predictions, penultimate features and thresholding.

The defaults are the paper's fine-tuning scheme: SGD with Nesterov momentum 0.9, learning
rate 0.01 divided by 10 when the training error has not improved for 10 epochs, weight decay
0.001, 80 epochs. Every one is a field of :class:`TrainConfig`. Images are uint8 (or float in
[0, 1]) arrays of shape ``(n, height, width, 3)``; they are moved to the device once per call
and converted per batch (scaled to [0, 1], normalised with the ImageNet mean and std).

For imbalanced pools the paper uses *thresholding* (Buda et al.): predicted probabilities
divided by the class priors of the training labels, :func:`threshold_probs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alamp_fast._backend import parse_device

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TrainConfig",
    "as_images",
    "class_priors",
    "fit",
    "predict",
    "resolve_device",
    "threshold_probs",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainConfig:
    """Fine-tuning settings (defaults: the paper's FT scheme).

    Attributes
    ----------
    epochs : int
        Passes over the labeled set (80).
    batch_size : int
        Training mini-batch (64; the paper does not fix one). A last batch of one sample is
        dropped: batch norm cannot train on it.
    lr : float
        Initial learning rate (0.01).
    momentum : float
        SGD momentum (0.9), Nesterov when ``nesterov`` (True).
    weight_decay : float
        L2 penalty (0.001).
    plateau_patience : int
        Epochs without improvement of the training error before the learning rate is
        multiplied by ``lr_factor`` (10 and 0.1: ``ReduceLROnPlateau``).
    augment : bool
        Random horizontal flips and random translations by up to 1/8 of the side
        (zero-padded crops) during training.
    mean, std : tuple of 3 floats
        Per-channel normalisation of images scaled to [0, 1] (ImageNet's).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when torch sees it, else CPU.
    eval_batch_size : int
        Batch for predictions and feature extraction.
    amp : bool
        bfloat16 autocast on CUDA (ignored on the CPU).
    """

    epochs: int = 80
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    plateau_patience: int = 10
    lr_factor: float = 0.1
    augment: bool = True
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    device: str | None = None
    eval_batch_size: int = 256
    amp: bool = False

    def __post_init__(self):
        for name in ("epochs", "plateau_patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {self.lr_factor!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def resolve_device(device=None) -> torch.device:
    """``device`` as a ``torch.device``; None: CUDA when available, else the CPU. Parsed by
    the package's one device rule (:func:`alamp_fast._backend.parse_device`)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(str(parse_device(device, "finetune")))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device")
    return dev


def as_images(X, name: str = "X") -> np.ndarray:
    """``X`` checked as ``(n, height, width, 3)`` uint8, or float in [0, 1]."""
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[3] != 3:
        raise ValueError(f"{name} must be images of shape (n, height, width, 3), got {X.shape}")
    if X.dtype != np.uint8 and X.dtype.kind != "f":
        raise TypeError(f"{name} must be uint8 or float images, got dtype {X.dtype}")
    if X.shape[1] < 8 or X.shape[2] < 8:
        raise ValueError(f"{name}: images of {X.shape[1]} x {X.shape[2]} are below 8 x 8")
    if (
        X.dtype.kind == "f"
        and X.size
        and not (np.isfinite(X).all() and 0 <= X.min() <= X.max() <= 1)
    ):
        raise ValueError(f"{name}: float images must be finite and within [0, 1]")
    return X


class _Batches:
    """Images converted batch by batch to normalised NCHW float32 on the device.

    ``resident``: the whole array is copied to the device once (the labeled set, read every
    epoch); otherwise each batch is copied when asked for (a pool of 50,000 224-pixel images
    is 7.5 GB of uint8, read once per prediction).
    """

    def __init__(self, X: np.ndarray, device: torch.device, config: TrainConfig, resident: bool):
        X = torch.from_numpy(np.ascontiguousarray(X))
        self.X = X.to(device) if resident else X
        self.device = device
        self.scale = 1 / 255 if X.dtype == torch.uint8 else 1.0
        self.mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return self.X.shape[0]

    def get(self, idx) -> torch.Tensor:
        # the network gets a C-contiguous NCHW tensor, never the permuted view of the NHWC
        # images: that view has channels-last strides, and on some x86 CPUs torch's CPU
        # kernels (2.13.0+cpu) abort with a double free in the backward pass on it. Layout
        # timings: benchmarks/finetune_layout_cpu.py, docs/finetune.md.
        x = self.X[idx].to(self.device).permute(0, 3, 1, 2).contiguous().float() * self.scale
        return (x - self.mean) / self.std


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and zero-padded random crops of the batch (one draw per image)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(3), x)
    pad = max(1, min(h, w) // 8)
    xp = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols].contiguous()


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(model: nn.Module, X, y, *, config: TrainConfig | None = None, seed: int = 0) -> dict:
    """Train ``model`` in place on images ``X`` with integer labels ``y`` (cross-entropy).

    Parameters
    ----------
    model : nn.Module
        Outputs one logit per class; moved to the configured device.
    X : (n, height, width, 3) uint8 or float in [0, 1]
    y : (n,) int
        Class indices in ``0 .. n_outputs - 1``.
    config : TrainConfig, optional
        The paper's defaults when None.
    seed : int
        Seeds the batch order and the augmentation (the model's initialisation is the
        caller's).

    Returns
    -------
    dict
        Per epoch: ``loss`` (mean training cross-entropy), ``train_error`` (fraction of
        training predictions wrong, on the augmented batches) and ``lr``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from alamp_fast.finetune.resnet import resnet18
    >>> X = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    >>> model = resnet18(num_classes=2, small_input=True, width=4)
    >>> hist = fit(model, X, [0, 1] * 4, config=TrainConfig(epochs=2, device="cpu"))
    >>> sorted(hist), len(hist["loss"])
    (['loss', 'lr', 'train_error'], 2)
    """
    config = TrainConfig() if config is None else config
    X = as_images(X)
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"y must be {X.shape[0]} integer labels, got {y.dtype} {y.shape}")
    device = resolve_device(config.device)
    model.to(device)
    out_features = _n_outputs(model)
    if y.size and (y.min() < 0 or y.max() >= out_features):
        raise ValueError(f"labels must be in 0..{out_features - 1}, got {y.min()}..{y.max()}")
    history = {"loss": [], "train_error": [], "lr": []}
    if X.shape[0] < 2 or config.epochs == 0:
        return history
    data = _Batches(X, device, config, resident=True)
    labels = torch.from_numpy(y.astype(np.int64)).to(device)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config.lr_factor, patience=config.plateau_patience
    )
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(int(seed))
    n = len(data)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total_loss = 0.0
        wrong = 0
        seen = 0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            if idx.numel() < 2:  # batch norm needs two samples per channel
                continue
            x = data.get(idx)
            if config.augment:
                x = _augment(x, gen)
            with _autocast(device, config.amp):
                logits = model(x)
                loss = loss_fn(logits.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * idx.numel()
            wrong += int((logits.detach().argmax(1) != labels[idx]).sum())
            seen += idx.numel()
        error = wrong / seen
        history["loss"].append(total_loss / seen)
        history["train_error"].append(error)
        history["lr"].append(opt.param_groups[0]["lr"])
        sched.step(error)
    return history


def _n_outputs(model: nn.Module) -> int:
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return fc.out_features
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise TypeError(f"{type(model).__name__} has no Linear output layer")
    return last[-1].out_features


@torch.no_grad()
def predict(
    model: nn.Module,
    X,
    *,
    config: TrainConfig | None = None,
    priors=None,
    features: bool = False,
):
    """Class probabilities (and penultimate features) of images ``X``, in eval mode.

    Parameters
    ----------
    model : nn.Module
        A :class:`~alamp_fast.finetune.resnet.ResNet` (or any module with ``features(x)``
        and ``fc`` when ``features=True``).
    X : (n, height, width, 3) images
    config : TrainConfig, optional
        Device, batch size, normalisation.
    priors : (n_classes,) array, optional
        Thresholding: the softmax probabilities are divided by these priors and renormalised
        (:func:`threshold_probs`).
    features : bool
        Also return the ``(n, num_features)`` penultimate embeddings (the input of ``fc``),
        from the same forward pass.

    Returns
    -------
    probs : (n, n_classes) float32 ndarray
    feats : (n, num_features) float32 ndarray, only with ``features=True``
    """
    config = TrainConfig() if config is None else config
    X = as_images(X)
    device = resolve_device(config.device)
    model.to(device).eval()
    data = _Batches(X, device, config, resident=False)
    probs, feats = [], []
    for start in range(0, len(data), config.eval_batch_size):
        x = data.get(slice(start, start + config.eval_batch_size))
        with _autocast(device, config.amp):
            if features:
                h = model.features(x)
                logits = model.fc(h)
                feats.append(h.float().cpu())
            else:
                logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    n_out = _n_outputs(model)
    P = torch.cat(probs).numpy() if probs else np.empty((0, n_out), dtype=np.float32)
    if priors is not None:
        P = threshold_probs(P, priors)
    if not features:
        return P
    dim = getattr(model, "num_features", 0)
    F = torch.cat(feats).numpy() if feats else np.empty((0, dim), dtype=np.float32)
    return P, F


def class_priors(y, n_classes: int) -> np.ndarray:
    """Class frequencies of labels ``y``; a class with no sample counts as one sample.

    The floor keeps :func:`threshold_probs` finite for classes not yet labeled.

    Examples
    --------
    >>> class_priors([0, 0, 0, 1], 3).tolist()
    [0.75, 0.25, 0.25]
    """
    y = np.asarray(y)
    if (
        y.ndim != 1
        or y.dtype.kind not in "iu"
        or (y.size and (y.min() < 0 or y.max() >= n_classes))
    ):
        raise ValueError(f"y must be 1-D integer labels in 0..{n_classes - 1}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.maximum(counts, 1.0) / max(y.size, 1)


def threshold_probs(probs, priors) -> np.ndarray:
    """Thresholding for imbalanced training sets: ``p(c|x) / prior(c)``, renormalised per row.

    The argmax is Buda et al.'s thresholded prediction; renormalising keeps rows as
    distributions so margin, entropy and alamp read them as probabilities.

    Examples
    --------
    >>> threshold_probs([[0.6, 0.4]], [0.8, 0.2]).round(3).tolist()
    [[0.273, 0.727]]
    """
    P = np.asarray(probs)
    pri = np.asarray(priors, dtype=np.float64)
    if P.ndim != 2 or pri.shape != (P.shape[1],):
        raise ValueError(f"priors must have one value per class column: {pri.shape} vs {P.shape}")
    if not (np.isfinite(pri).all() and (pri > 0).all()):
        raise ValueError("priors must be finite and > 0")
    out = P.astype(np.float64) / pri
    out /= out.sum(axis=1, keepdims=True)
    return out.astype(P.dtype if P.dtype.kind == "f" else np.float64)
