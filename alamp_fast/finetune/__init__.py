"""The fine-tuning (FT) scheme: a ResNet-18 fine-tuned at every AL iteration (needs torch).

- :mod:`~alamp_fast.finetune.resnet`: ResNet-18 with torchvision's state-dict names,
  :func:`load_state_dict_file`, :func:`load_backbone`;
- :mod:`~alamp_fast.finetune.train`: the paper's fine-tuning loop (:class:`TrainConfig`,
  :func:`fit`), predictions with penultimate features, thresholding;
- :mod:`~alamp_fast.finetune.scheme`: :func:`simulate_ft`, the protocol with this scheme and
  every strategy (``badge`` included), :class:`FineTuneClassifier`;
- :mod:`~alamp_fast.finetune.pretrain`: the source-model recipe (pretrain on some classes, AL
  on the others) and the ``alamp-fast finetune`` command;
- :mod:`~alamp_fast.finetune.data`: images from ``.npz`` arrays or class folders.

Importing this package imports no torch: the names below load their module on first access.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "ResNet": "resnet",
    "resnet18": "resnet",
    "load_state_dict_file": "resnet",
    "load_backbone": "resnet",
    "TrainConfig": "train",
    "fit": "train",
    "predict": "train",
    "class_priors": "train",
    "threshold_probs": "train",
    "FT_STRATEGIES": "scheme",
    "BadgeSampling": "scheme",
    "FineTuneClassifier": "scheme",
    "simulate_ft": "scheme",
    "pretrain_source_model": "pretrain",
    "source_target_experiment": "pretrain",
    "split_classes": "pretrain",
    "ImageSet": "data",
    "ImageSplit": "data",
    "load_images": "data",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'alamp_fast.finetune' has no attribute {name!r}")
    module = importlib.import_module(f"alamp_fast.finetune.{_NAMES[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
