"""Images for the fine-tuning scheme: ``.npz`` arrays or a folder of class subfolders.

``.npz``: ``X`` uint8 ``(N, H, W, 3)`` and ``y`` (N labels: integers or strings), optionally
``classes`` (names, indexed by integer ``y``). A folder: one subfolder per class, image files
inside (``.jpg .jpeg .png .bmp .gif .ppm .tif .tiff .webp``), read with Pillow, converted to
RGB, the shorter side resized to ``image_size`` and centre-cropped to a square.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ImageSet", "ImageSplit", "load_images", "split_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


@dataclass
class ImageSet:
    """Images ``X`` (N, H, W, 3) uint8, class indices ``y`` (N,) int64 into ``classes``."""

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    name: str = "images"

    def __post_init__(self):
        from alamp_fast.finetune.train import as_images

        self.X = as_images(self.X, f"{self.name} X")
        self.y = np.asarray(self.y)
        if self.y.shape != (self.X.shape[0],) or self.y.dtype.kind not in "iu":
            raise ValueError(f"y must be {self.X.shape[0]} integer labels, got {self.y.shape}")
        self.y = self.y.astype(np.int64)
        if self.y.size and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise ValueError(f"labels must index the {len(self.classes)} classes")

    def subset(self, class_codes) -> ImageSet:
        """The images of some classes, relabeled ``0..k-1`` in the given order."""
        codes = np.asarray(class_codes, dtype=np.int64)
        remap = np.full(len(self.classes), -1, dtype=np.int64)
        remap[codes] = np.arange(codes.size)
        keep = remap[self.y] >= 0
        return ImageSet(
            self.X[keep], remap[self.y[keep]], [self.classes[c] for c in codes], self.name
        )


@dataclass
class ImageSplit:
    """A pool and a test split, the shape :func:`~alamp_fast.finetune.scheme.simulate_ft` takes."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    name: str = "images"
    info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "image_shape": list(self.X_train.shape[1:]),
            "classes": list(self.classes),
            **self.info,
        }


def split_images(images: ImageSet, test_size: float = 0.25, seed: int = 0) -> ImageSplit:
    """A stratified train/test split (each class keeps at least one image on each side when
    it has two)."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(images.y):
        rows = rng.permutation(np.flatnonzero(images.y == c))
        k = int(round(test_size * rows.size))
        k = min(max(k, 1 if rows.size > 1 else 0), rows.size - 1)
        test.append(rows[:k])
    is_test = np.zeros(images.y.size, dtype=bool)
    is_test[np.concatenate(test) if test else []] = True
    return ImageSplit(
        images.X[~is_test],
        images.y[~is_test],
        images.X[is_test],
        images.y[is_test],
        list(images.classes),
        images.name,
    )


def load_images(path, *, image_size: int | None = None) -> ImageSet:
    """Images from an ``.npz`` file or an image folder (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
    image_size : int, optional
        Folder images are resized to ``image_size`` x ``image_size`` (default 224). For an
        ``.npz`` it must match the stored size if given.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> f = os.path.join(tempfile.mkdtemp(), "imgs.npz")
    >>> np.savez(f, X=np.zeros((4, 16, 16, 3), np.uint8), y=np.array(["cat", "dog"] * 2))
    >>> s = load_images(f)
    >>> s.X.shape, s.classes, s.y.tolist()
    ((4, 16, 16, 3), ['cat', 'dog'], [0, 1, 0, 1])
    """
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, 224 if image_size is None else image_size)
    if not path.is_file():
        raise FileNotFoundError(f"no image file or folder at {str(path)!r}")
    if path.suffix != ".npz":
        raise ValueError(f"{str(path)!r}: images come as an .npz (X, y) or a class folder")
    with np.load(path, allow_pickle=False) as d:
        missing = {"X", "y"} - set(d.files)
        if missing:
            raise ValueError(f"{str(path)!r} lacks {sorted(missing)} (has {sorted(d.files)})")
        X, y = d["X"], d["y"]
        names = [str(c) for c in d["classes"]] if "classes" in d.files else None
    if X.dtype != np.uint8:
        raise TypeError(f"{str(path)!r}: X must be uint8 images, got {X.dtype}")
    if image_size is not None and X.ndim == 4 and X.shape[1:3] != (image_size, image_size):
        raise ValueError(
            f"{str(path)!r} holds {X.shape[1]} x {X.shape[2]} images, not {image_size}"
        )
    y = np.asarray(y)
    if y.dtype.kind in "iu" and names is not None:
        classes = names
    else:
        uniq, y = np.unique(y, return_inverse=True)
        classes = [str(c) for c in uniq]
    return ImageSet(X, y, classes, name=path.stem)


def _load_folder(root: Path, size: int) -> ImageSet:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "reading an image folder needs Pillow (pip install pillow); or pass an .npz with "
            "X uint8 (N, H, W, 3) and y"
        ) from exc
    if size < 8:
        raise ValueError(f"image_size must be >= 8, got {size}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{str(root)!r} has no class subfolders")
    files, labels = [], []
    for code, name in enumerate(classes):
        for dirpath, _, names in os.walk(root / name):
            for f in sorted(names):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(dirpath) / f)
                    labels.append(code)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}")
    X = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                scale = size / min(im.size)
                w, h = max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))
                im = im.resize((w, h), Image.BILINEAR)
                left, top = (w - size) // 2, (h - size) // 2
                X[i] = np.asarray(im.crop((left, top, left + size, top + size)))
        except OSError as exc:
            raise ValueError(f"cannot read image {str(f)!r}: {exc}") from exc
    return ImageSet(X, np.asarray(labels, dtype=np.int64), classes, name=root.name)
