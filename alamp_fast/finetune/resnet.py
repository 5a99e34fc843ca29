"""ResNet-18 in plain torch, with torchvision's parameter names.

``torchvision.models.resnet18().state_dict()`` loads into :func:`resnet18` unchanged (same
122 keys and shapes: ``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer4.1.bn2``,
``layerK.0.downsample.{0,1}``, ``fc``), so ImageNet weights saved from torchvision on another
machine work here without torchvision. Two options leave that layout on purpose:

``small_input=True``
    the CIFAR-style stem for 32 x 32 images: a 3 x 3 stride-1 ``conv1`` and no max-pool (the
    7 x 7 stride-2 stem and the pool would shrink a 32-pixel image to 8 pixels before
    ``layer1``). ``conv1.weight`` is then (64, 3, 3, 3); every other key is unchanged.
``width``
    the channels of ``layer1`` (64 in ResNet-18; the later stages double it). Smaller widths
    are for tests and quick CPU runs; their state dicts are not torchvision-compatible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "ResNet",
    "load_backbone",
    "load_state_dict_file",
    "resnet18",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with a residual connection (torchvision's ``BasicBlock``)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet of :class:`BasicBlock` stages; :meth:`features` is the penultimate layer.

    Parameters
    ----------
    layers : sequence of 4 ints
        Blocks per stage (``(2, 2, 2, 2)`` is ResNet-18).
    num_classes : int
        Outputs of ``fc``.
    small_input : bool
        3 x 3 stride-1 stem without max-pool, for 32 x 32 images.
    width : int
        Channels of the first stage.
    """

    def __init__(
        self, layers=(2, 2, 2, 2), num_classes: int = 1000, *, small_input=False, width=64
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.small_input = bool(small_input)
        self.inplanes = width
        if self.small_input:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if self.small_input else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 8 * width
        self.fc = nn.Linear(self.num_features, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(batch, num_features)`` input of ``fc`` (after global average pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18(num_classes: int = 1000, *, small_input: bool = False, width: int = 64) -> ResNet:
    """A ResNet-18 with torchvision's layout (randomly initialised).

    Parameters
    ----------
    num_classes : int
        Outputs of the final ``fc`` layer.
    small_input : bool
        CIFAR-style stem (3 x 3 stride-1 ``conv1``, no max-pool) for 32 x 32 images.
    width : int
        Channels of the first stage (64: ResNet-18; smaller for tests and quick CPU runs).

    Examples
    --------
    >>> import torch
    >>> model = resnet18(num_classes=10, small_input=True, width=8).eval()
    >>> model(torch.zeros(2, 3, 32, 32)).shape, model.features(torch.zeros(2, 3, 32, 32)).shape
    (torch.Size([2, 10]), torch.Size([2, 64]))
    >>> len(resnet18().state_dict())   # torchvision's resnet18 has the same 122 entries
    122
    """
    return ResNet((2, 2, 2, 2), num_classes, small_input=small_input, width=width)


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """A state dict from a file saved with ``torch.save``, ready for ``load_state_dict``.

    Accepts a bare state dict (``torch.save(model.state_dict(), path)``, what torchvision's
    weight files hold) or a checkpoint dict with the weights under ``"state_dict"`` or
    ``"model"``. A ``module.`` prefix left by ``DataParallel`` is removed. The file is read
    with ``weights_only=True``: tensors and plain containers, no pickled code.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": resnet18(num_classes=5, width=8).state_dict()}, path)
    >>> resnet18(num_classes=5, width=8).load_state_dict(load_state_dict_file(path))
    <All keys matched successfully>
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many classes
        raise ValueError(f"{path!r} is not a torch state-dict file: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"{path!r} holds a {type(obj).__name__}, not a state dict of tensors "
            "(save model.state_dict(), not the model)"
        )
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def load_backbone(model: nn.Module, state_dict, *, skip=("fc.",)) -> list[str]:
    """Load every tensor of ``state_dict`` except the head, for fine-tuning on new classes.

    Parameters
    ----------
    model : nn.Module
        The network to fill (e.g. :func:`resnet18` with the target's ``num_classes``).
    state_dict : mapping or path
        Source weights (a path is read by :func:`load_state_dict_file`).
    skip : tuple of str
        Key prefixes left at the model's own initialisation (the classifier ``fc.``).

    Returns
    -------
    list of str
        The keys that were loaded.

    Raises
    ------
    ValueError
        When a key outside ``skip`` is missing, unexpected or of another shape (naming it).
    """
    if not isinstance(state_dict, Mapping):
        state_dict = load_state_dict_file(state_dict)
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith(tuple(skip))}
    given = {k for k in state_dict if not k.startswith(tuple(skip))}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f", unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k in sorted(wanted):
        if tuple(state_dict[k].shape) != tuple(own[k].shape):
            raise ValueError(
                f"weights do not fit the model: {k} has shape {tuple(state_dict[k].shape)}, "
                f"the model expects {tuple(own[k].shape)} (small_input or width differ?)"
            )
    model.load_state_dict({k: state_dict[k] for k in wanted}, strict=False)
    return sorted(wanted)
