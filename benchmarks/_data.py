"""The Caltech-101 features as the SVM benchmarks load them (one loader for all of them).

``$ALAMP_FAST_DATA`` (else ``<repo>/../shared/data``) holds ``caltech101/
feats_mobilenetv1_{train,test}.npz`` (see that folder's README). Rows are dequantised in
float32 (numpy 2 would promote float32 minus a 0-d int32 array to float64), the
``BACKGROUND_Google`` class is dropped, as the paper-style setup does, and by default every row
is L2-normalised.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CALTECH_DESC = "Caltech-101 MobileNet-v1 features, background dropped, L2-normalised, float32"


def data_dir() -> Path:
    """``$ALAMP_FAST_DATA``, else the ``shared/data`` folder next to the repository."""
    return Path(os.environ.get("ALAMP_FAST_DATA", REPO.parent / "shared" / "data"))


def caltech_available(data: Path | None = None) -> bool:
    data = data_dir() if data is None else data
    return all(
        (data / "caltech101" / f"feats_mobilenetv1_{split}.npz").is_file()
        for split in ("train", "test")
    )


def missing_caltech_message(data: Path | None = None) -> str:
    data = data_dir() if data is None else data
    return (
        f"error: Caltech-101 features not found under {data / 'caltech101'} "
        "(set ALAMP_FAST_DATA to the folder holding caltech101/feats_mobilenetv1_*.npz)"
    )


def load_caltech(data: Path, split: str, *, normalise: bool = True):
    """``(X float32, y int64)`` of one split, ``BACKGROUND_Google`` dropped."""
    with np.load(data / "caltech101" / f"feats_mobilenetv1_{split}.npz") as d:
        X = (d["Xq"].astype(np.float32) - np.float32(d["zero_point"])) * np.float32(d["scale"])
        y = d["y"].astype(np.int64)
        background = list(d["classes"]).index("BACKGROUND_Google")
    keep = y != background
    X, y = X[keep], y[keep]
    if normalise:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X, y
