"""Feature sets for simulations: ``.npz``, ``.npy``, Parquet or HDF5 files, or scikit-learn's digits.

Accepted files
--------------
* quantized ``.npz`` (the format of the project's shared feature sets): ``Xq`` uint8
  ``(N, D)``, ``scale``, ``zero_point`` (``X = (Xq - zero_point) * scale``), ``y`` class
  indices into ``classes`` (names); extra keys such as ``paths`` are ignored;
* plain ``.npz``: ``X`` ``(N, D)`` and ``y`` ``(N,)`` (integers or strings), optionally
  ``classes`` (then ``y`` indexes into it);
* ``.npy`` features ``(N, D)`` with the labels given separately (``labels=``: an array, a
  ``.npy`` file, or a text file with one label per line);
* Parquet (``.parquet``, needs ``pyarrow``: ``pip install 'alamp_fast[parquet]'``): the
  features are one list column of equal-length vectors (chosen by ``key``, else the only list
  column), or else every numeric column but the labels; the labels are the column ``y``,
  ``label`` or ``labels`` (the first present);
* HDF5 (``.h5``, ``.hdf5``, needs ``h5py``: ``pip install 'alamp_fast[hdf5]'``): the dataset
  ``key`` (a path such as ``feats/train``), else ``X``, else ``Xq`` with ``scale`` and
  ``zero_point`` as in ``.npz``; labels ``y`` and optional ``classes`` beside it.

``key`` picks the features array of a multi-array file (an ``.npz`` array name, a Parquet
column, an HDF5 dataset path). The dataset's name (in results and plot titles) is ``name``,
or the train file's name without its extension.

Labels come back as int64 codes ``0..C-1`` into ``classes``; a test file's labels are
matched to the train file's classes by name (or value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "l2_normalize", "load_dataset", "load_digits", "load_features"]


@dataclass
class Dataset:
    """Train and test features with int64 labels ``0..n_classes-1`` into ``classes``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    name: str = "dataset"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        """Sizes and names for a results file (JSON-ready)."""
        return {
            "name": self.name,
            "n_train": int(self.X_train.shape[0]),
            "n_test": int(self.X_test.shape[0]),
            "n_features": int(self.X_train.shape[1]),
            "n_classes": self.n_classes,
            "classes": [str(c) for c in self.classes],
        }


def l2_normalize(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero), as float32.

    ``out``: a float32 array of ``X``'s 2-D shape to write the result to (``X`` itself
    normalises in place); default: a new array.

    Examples
    --------
    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    X = np.asarray(X, dtype=np.float32)
    if out is not None and (
        not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != X.shape
        or X.ndim != 2
    ):
        raise ValueError(
            f"out must be a float32 array of shape {X.shape} (2-D), got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    if X.ndim != 2 or X.shape[0] == 0:
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1) if out is None else out
    # Row blocks of about 1 MiB: the squares and norms of a block stay in cache (a whole 1e6 x
    # 512 pool in one call wrote and re-read a 2 GB temporary: 3x slower). Each row's norm is
    # reduced over its own row only, so the result is bitwise that of the one-call version.
    if out is None:
        out = np.empty(X.shape, dtype=np.float32)
    step = max(1, (1 << 20) // max(1, 4 * X.shape[1]))
    for a in range(0, X.shape[0], step):
        block = X[a : a + step]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, np.where(norms > 0, norms, 1), out=out[a : a + step])
    return out


def _read_labels(labels) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            values = [line.strip() for line in f if line.strip()]
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            return np.array(values)
    return np.asarray(labels)


def load_features(
    path, labels=None, *, require_labels: bool = True, key: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read one features file.

    Parameters
    ----------
    path : str or PathLike
        ``.npz`` (quantized ``Xq``/``scale``/``zero_point``/``y``[/``classes``] or plain
        ``X``/``y``[/``classes``]) or ``.npy`` features.
    labels : array, str or PathLike, optional
        Labels for a ``.npy`` file (required there) or to override an ``.npz`` file's ``y``.
    require_labels : bool, default True
        False reads an unlabeled pool: ``y`` is then None when the file has none.
    key : str, optional
        The features array of a multi-array file: an ``.npz`` array name, a Parquet column,
        an HDF5 dataset path (see the module docstring for the defaults).

    Returns
    -------
    X : ndarray of float32, shape (N, D)
    y : ndarray, shape (N,), or None (unlabeled pool, ``require_labels=False``)
        As stored: indices into ``classes`` when ``classes`` is not None, raw labels otherwise.
    classes : ndarray or None
        Class names when the file has them.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "f.npz")
    >>> np.savez(path, Xq=np.array([[0, 10], [20, 30]], np.uint8), scale=np.float32(0.5),
    ...          zero_point=np.int32(10), y=np.array([1, 0], np.int16),
    ...          classes=np.array(["cat", "dog"]))
    >>> X, y, classes = load_features(path)
    >>> X.tolist(), y.tolist(), classes.tolist()
    ([[-5.0, 0.0], [5.0, 10.0]], [1, 0], ['cat', 'dog'])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such features file: {path}")
    classes = None
    y = None
    lower = path.lower()
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a string, got {key!r}")
    if lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if key is not None:
                if key not in keys:
                    raise ValueError(f"{path}: no array {key!r} (--key); arrays: {sorted(keys)}")
                X = np.asarray(data[key], dtype=np.float32)
            elif "Xq" in keys:
                for key in ("scale", "zero_point"):
                    if key not in keys:
                        raise ValueError(f"{path}: quantized file has Xq but no {key!r}")
                X = (data["Xq"].astype(np.float32) - np.float32(data["zero_point"])) * np.float32(
                    data["scale"]
                )
            elif "X" in keys:
                X = np.asarray(data["X"], dtype=np.float32)
            else:
                raise ValueError(f"{path}: expected key 'Xq' or 'X', found {sorted(keys)}")
            if "y" in keys:
                y = data["y"]
            if "classes" in keys:
                classes = data["classes"]
    elif lower.endswith(".npy"):
        if key is not None:
            raise ValueError(f"{path}: a .npy file holds one array; --key {key!r} does not apply")
        X = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    elif lower.endswith((".parquet", ".pq")):
        X, y, classes = _read_parquet(path, key)
    elif lower.endswith((".h5", ".hdf5", ".hdf")):
        X, y, classes = _read_hdf5(path, key)
    else:
        raise ValueError(
            f"{path}: features must be a .npz, .npy, .parquet or .h5/.hdf5 file"
        )
    if labels is not None:
        y = _read_labels(labels)
    if y is None and require_labels:
        raise ValueError(f"{path}: no labels ('y' key) and none given (labels=...)")
    if X.ndim != 2:
        raise ValueError(f"{path}: features must be 2-D (N, D), got shape {X.shape}")
    if y is None:
        if not np.isfinite(X).all():
            row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
            raise ValueError(f"{path}: features row {row} holds NaN or Inf")
        return X, None, classes
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"{path}: {X.shape[0]} feature rows but labels of shape {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: features contain NaN or Inf")
    if classes is not None:
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: with 'classes', y must hold integer indices, got {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"{path}: y holds indices outside 0..{len(classes) - 1}")
    return X, y, classes


_LABEL_COLUMNS = ("y", "label", "labels")


def _optional(module: str, extra: str, path: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"{path}: reading this file needs {module}: pip install 'alamp_fast[{extra}]'"
        ) from None


def _read_parquet(path: str, key: str | None):
    pq = _optional("pyarrow.parquet", "parquet", path)
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: cannot read it as Parquet: {exc}") from None
    names = table.column_names
    label = next((c for c in _LABEL_COLUMNS if c in names), None)
    y = None if label is None else table.column(label).to_numpy(zero_copy_only=False)
    lists = [
        c
        for c in names
        if pa.types.is_list(table.schema.field(c).type)
        or pa.types.is_fixed_size_list(table.schema.field(c).type)
        or pa.types.is_large_list(table.schema.field(c).type)
    ]
    if key is not None:
        if key not in names:
            raise ValueError(f"{path}: no column {key!r} (--key); columns: {names[:20]}")
        if key in lists:
            X = _list_column(table.column(key), path, key)
        else:
            X = table.column(key).to_numpy(zero_copy_only=False).reshape(-1, 1)
    elif len(lists) == 1:
        X = _list_column(table.column(lists[0]), path, lists[0])
    elif len(lists) > 1:
        raise ValueError(f"{path}: several vector columns {lists}; choose one with --key")
    else:
        numeric = [
            c
            for c in names
            if c != label
            and (
                pa.types.is_integer(table.schema.field(c).type)
                or pa.types.is_floating(table.schema.field(c).type)
            )
        ]
        if not numeric:
            raise ValueError(f"{path}: no numeric feature columns (columns: {names[:20]})")
        X = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in numeric])
    X = np.asarray(X, dtype=np.float32)
    if y is not None and y.dtype == object:
        y = np.asarray([str(v) for v in y])
    return X, y, None


def _list_column(column, path: str, key: str) -> np.ndarray:
    import pyarrow as pa

    column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"{path}: column {key!r} has {column.null_count} missing rows")
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(-1, width)
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValueError(
            f"{path}: column {key!r} row {bad} has {lengths[bad]} values, row 0 has {lengths[0]}"
        )
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), int(lengths[0]) if lengths.size else 0)


def _read_hdf5(path: str, key: str | None):
    h5py = _optional("h5py", "hdf5", path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it as HDF5: {exc}") from None
    with f:
        def get(name):
            obj = f.get(name)
            return obj[()] if isinstance(obj, h5py.Dataset) else None

        if key is not None:
            obj = f.get(key)
            if not isinstance(obj, h5py.Dataset):
                found = []
                f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
                raise ValueError(f"{path}: no dataset {key!r} (--key); datasets: {found[:20]}")
            X = np.asarray(obj[()], dtype=np.float32)
            parent = obj.parent.name.rstrip("/") + "/"
        elif get("X") is not None:
            X, parent = np.asarray(get("X"), dtype=np.float32), "/"
        elif get("Xq") is not None:
            scale, zp = get("scale"), get("zero_point")
            if scale is None or zp is None:
                raise ValueError(f"{path}: quantized file has Xq but no 'scale'/'zero_point'")
            X = (get("Xq").astype(np.float32) - np.float32(zp)) * np.float32(scale)
            parent = "/"
        else:
            raise ValueError(f"{path}: no dataset 'X' or 'Xq'; choose the features with --key")
        y = get(parent + "y")
        if y is None and parent != "/":
            y = get("y")
        classes = get(parent + "classes")
        if classes is None and parent != "/":
            classes = get("classes")
    if classes is not None:
        classes = np.asarray([c.decode() if isinstance(c, bytes) else str(c) for c in classes])
    if y is not None and y.dtype.kind in "OS":
        y = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in y])
    return X, y, classes


def _names(y: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Per-row class identity (name if known, else the raw label)."""
    return np.asarray(classes)[y] if classes is not None else y


def load_dataset(
    train=None,
    test=None,
    *,
    train_labels=None,
    test_labels=None,
    normalize: bool = True,
    drop_classes=(),
    test_size: float = 0.25,
    seed: int = 0,
    key: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Load a train/test split of features and labels.

    Parameters
    ----------
    train : str or PathLike, optional
        Train features (see the module docstring for formats). ``None``: scikit-learn's
        bundled ``load_digits`` (:func:`load_digits`).
    test : str or PathLike, optional
        Test features. ``None``: a stratified split of ``train`` (``test_size``, ``seed``).
    train_labels, test_labels : array or path, optional
        Labels for ``.npy`` features.
    normalize : bool
        L2-normalise every row (the usual practice before a linear SVM).
    drop_classes : iterable of str
        Class names (or raw label values, as strings) to remove from both splits, e.g.
        ``["BACKGROUND_Google"]``.
    test_size : float
        Fraction held out when ``test`` is None.
    seed : int
        Seed of that split.
    key : str, optional
        The features array in both files (see :func:`load_features`).
    name : str, optional
        The dataset's name in results; default: the train file's name without extension.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> ds = load_dataset(test_size=0.5, seed=0)      # digits
    >>> ds.X_train.shape, ds.n_classes
    ((898, 64), 10)
    """
    if train is None:
        if test is not None:
            raise ValueError("a test file was given without a train file")
        X, y, classes = _digits()
        name = "digits" if name is None else name
    else:
        X, y, classes = load_features(train, train_labels, key=key)
        default_name = os.path.splitext(os.path.basename(os.fspath(train)))[0]
        name = default_name if name is None else name
    names_train = _names(y, classes)
    if test is not None:
        X_test, y_test, classes_test = load_features(test, test_labels, key=key)
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(
                f"train has {X.shape[1]} features per row but test has {X_test.shape[1]}"
            )
        names_test = _names(y_test, classes_test)
    else:
        X, X_test, names_train, names_test = _split(X, names_train, test_size, seed)

    drop = {str(c) for c in drop_classes}
    if drop:
        present = {str(c) for c in np.unique(names_train)}
        unknown = drop - present
        if unknown:
            raise ValueError(
                f"drop_classes {sorted(unknown)} not among the train classes "
                f"(e.g. {sorted(present)[:5]})"
            )
        keep_train = ~np.isin(names_train.astype(str), list(drop))
        keep_test = ~np.isin(names_test.astype(str), list(drop))
        X, names_train = X[keep_train], names_train[keep_train]
        X_test, names_test = X_test[keep_test], names_test[keep_test]

    if classes is not None:
        # Keep the file's class order (sorted names in the shared files), minus absent ones.
        seen = set(names_train.tolist())
        out_classes = np.asarray([c for c in classes if c in seen])
    else:
        out_classes = np.unique(names_train)
    y_train = _encode(names_train, out_classes, "train")
    y_test = _encode(names_test, out_classes, "test")
    if len(out_classes) < 2:
        raise ValueError(f"the train split has {len(out_classes)} class(es); need at least 2")
    if normalize:
        X, X_test = l2_normalize(X), l2_normalize(X_test)
    return Dataset(X, y_train, X_test, y_test, out_classes, name)


def _encode(names: np.ndarray, classes: np.ndarray, split: str) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    codes = np.fromiter((lookup.get(c, -1) for c in names.tolist()), np.int64, len(names))
    if (codes < 0).any():
        unknown = sorted({str(c) for c in names[codes < 0].tolist()})
        raise ValueError(f"{split} labels {unknown[:5]} are not classes of the train split")
    return codes


def _split(X, names, test_size, seed):
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    return train_test_split(X, names, test_size=test_size, random_state=seed, stratify=names)


def _digits():
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64), np.arange(10)


def load_digits(*, normalize: bool = True, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 x 64, 10 classes), split and normalised.

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.X_train.shape, ds.X_test.shape
    ((1347, 64), (450, 64))
    """
    return load_dataset(None, normalize=normalize, test_size=test_size, seed=seed)
