"""Loading features: quantized and plain .npz, .npy + labels, splits, class drops, digits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from alamp_fast.al.datasets import l2_normalize, load_dataset, load_digits, load_features


def write_quantized(path, rng, n, classes, d=6):
    classes = np.asarray(classes)
    Xq = rng.integers(0, 256, (n, d), dtype=np.uint8)
    y = rng.integers(0, len(classes), n).astype(np.int16)
    np.savez(path, Xq=Xq, scale=np.float32(0.02), zero_point=np.int32(7), y=y, classes=classes,
             paths=np.array([f"{classes[c]}/{i}.jpg" for i, c in enumerate(y)]))
    return Xq, y


def test_quantized_dequantization_literal(tmp_path):
    rng = np.random.default_rng(0)
    Xq, y = write_quantized(tmp_path / "f.npz", rng, 20, ["a", "b", "c"])
    X, y2, classes = load_features(tmp_path / "f.npz")
    np.testing.assert_array_equal(X, (Xq.astype(np.float32) - 7) * np.float32(0.02))
    assert X.dtype == np.float32
    assert y2.tolist() == y.tolist() and classes.tolist() == ["a", "b", "c"]


def test_load_dataset_normalises_drops_and_matches_test_classes_by_name(tmp_path):
    rng = np.random.default_rng(1)
    classes = ["BACKGROUND_Google", "cat", "dog", "eel"]
    Xq, y = write_quantized(tmp_path / "train.npz", rng, 60, classes)
    # the test file lists its classes in another order: labels must be matched by name
    test_classes = ["eel", "dog", "cat", "BACKGROUND_Google"]
    Xq_t, y_t = write_quantized(tmp_path / "test.npz", rng, 30, test_classes)
    ds = load_dataset(tmp_path / "train.npz", tmp_path / "test.npz",
                      drop_classes=["BACKGROUND_Google"])
    assert ds.classes.tolist() == ["cat", "dog", "eel"]
    keep = y != 0
    assert ds.X_train.shape == (keep.sum(), 6)
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1, atol=1e-6)
    assert ds.y_train.tolist() == (y[keep] - 1).tolist()
    names_t = np.array(test_classes)[y_t]
    keep_t = names_t != "BACKGROUND_Google"
    assert np.array(ds.classes)[ds.y_test].tolist() == names_t[keep_t].tolist()
    raw = load_dataset(tmp_path / "train.npz", tmp_path / "test.npz", normalize=False)
    np.testing.assert_allclose(raw.X_train, (Xq.astype(np.float32) - 7) * np.float32(0.02))
    assert raw.n_classes == 4


def test_plain_npz_string_labels_and_made_split(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 5)).astype(np.float32)
    y = np.array(["x", "y"])[np.arange(80) % 2]
    np.savez(tmp_path / "plain.npz", X=X, y=y)
    ds = load_dataset(tmp_path / "plain.npz", normalize=False, test_size=0.25, seed=4)
    assert ds.X_train.shape == (60, 5) and ds.X_test.shape == (20, 5)
    assert ds.classes.tolist() == ["x", "y"]
    assert np.bincount(ds.y_test).tolist() == [10, 10]  # stratified
    again = load_dataset(tmp_path / "plain.npz", normalize=False, test_size=0.25, seed=4)
    assert np.array_equal(ds.X_test, again.X_test)
    # every row comes from X with its own label
    rows = {tuple(r): lab for r, lab in zip(X.tolist(), y.tolist(), strict=True)}
    for r, code in zip(ds.X_train.tolist(), ds.y_train.tolist(), strict=True):
        assert rows[tuple(r)] == ds.classes[code]


def test_npy_with_label_files(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 4))
    y = np.arange(30) % 3
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.txt").write_text("\n".join(str(v) for v in y) + "\n")
    ds = load_dataset(tmp_path / "X.npy", tmp_path / "X.npy", train_labels=tmp_path / "y.npy",
                      test_labels=tmp_path / "y.txt", normalize=False)
    np.testing.assert_allclose(ds.X_train, X.astype(np.float32))
    assert ds.y_train.tolist() == y.tolist() and ds.y_test.tolist() == y.tolist()
    with pytest.raises(ValueError, match="no labels"):
        load_features(tmp_path / "X.npy")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.npz")
    np.savez(tmp_path / "nokeys.npz", Z=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="'Xq' or 'X'"):
        load_features(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "noscale.npz", Xq=np.zeros((2, 2), np.uint8), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="scale"):
        load_features(tmp_path / "noscale.npz")
    np.savez(tmp_path / "short.npz", X=np.zeros((3, 2)), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="3 feature rows"):
        load_features(tmp_path / "short.npz")
    np.savez(tmp_path / "nan.npz", X=np.array([[np.nan, 1.0], [0, 1]]), y=np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        load_features(tmp_path / "nan.npz")
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=".npz, .npy, .parquet or .h5/.hdf5 file"):
        load_features(tmp_path / "f.csv")
    rng = np.random.default_rng(5)
    write_quantized(tmp_path / "q.npz", rng, 20, ["a", "b"])
    with pytest.raises(ValueError, match="not among the train classes"):
        load_dataset(tmp_path / "q.npz", drop_classes=["zebra"])
    np.savez(tmp_path / "wide.npz", X=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    np.savez(tmp_path / "narrow.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="features per row"):
        load_dataset(tmp_path / "wide.npz", tmp_path / "narrow.npz")
    np.savez(tmp_path / "other.npz", X=np.zeros((4, 3)), y=np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="not classes of the train split"):
        load_dataset(tmp_path / "wide.npz", tmp_path / "other.npz")


def test_l2_normalize_zero_rows():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(X), [[0.6, 0.8], [0, 0], [-1, 0]], atol=1e-7)


def test_digits_default():
    ds = load_digits()
    assert ds.X_train.shape == (1347, 64) and ds.X_test.shape == (450, 64)
    assert ds.n_classes == 10 and ds.name == "digits"
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1, atol=1e-6)
    assert ds.describe()["n_classes"] == 10


def _data_dir() -> Path:
    env = os.environ.get("ALAMP_FAST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_real_caltech101_background_dropped():
    train = _data_dir() / "caltech101" / "feats_mobilenetv1_train.npz"
    test = _data_dir() / "caltech101" / "feats_mobilenetv1_test.npz"
    if not train.exists():
        pytest.skip(f"no shared features at {train}")
    ds = load_dataset(train, test, drop_classes=["BACKGROUND_Google"])
    assert ds.n_classes == 101 and "BACKGROUND_Google" not in ds.classes.tolist()
    assert ds.X_train.shape[1] == 1024
    assert ds.X_train.shape[0] < 6096 and ds.y_test.max() == 100


# ----------------------------------------------------------------------------- Parquet, HDF5


def test_parquet_vector_column_numeric_columns_and_key(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    y = np.array(["cat", "dog", "eel"])[np.arange(30) % 3]
    # one list column + labels: found without --key
    pq.write_table(pa.table({"emb": list(X), "label": y}), tmp_path / "a.parquet")
    X2, y2, classes = load_features(tmp_path / "a.parquet")
    np.testing.assert_array_equal(X2, X)
    assert y2.tolist() == y.tolist() and classes is None
    # two vector columns: --key chooses, and without it the error names them
    pq.write_table(pa.table({"a": list(X), "b": list(2 * X), "y": np.arange(30) % 3}),
                   tmp_path / "b.parquet")
    np.testing.assert_array_equal(load_features(tmp_path / "b.parquet", key="b")[0], 2 * X)
    with pytest.raises(ValueError, match=r"several vector columns \['a', 'b'\]; choose one"):
        load_features(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="no column 'c' .--key."):
        load_features(tmp_path / "b.parquet", key="c")
    # plain numeric columns: every one but the labels
    pq.write_table(pa.table({"f0": X[:, 0], "f1": X[:, 1], "y": np.arange(30) % 3}),
                   tmp_path / "c.parquet")
    np.testing.assert_array_equal(load_features(tmp_path / "c.parquet")[0], X[:, :2])
    # ragged vectors are refused with the row
    pq.write_table(pa.table({"emb": [[1.0, 2.0], [1.0]], "y": [0, 1]}), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="row 1 has 1 values, row 0 has 2"):
        load_features(tmp_path / "d.parquet")


def test_hdf5_default_quantized_and_key(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 3)).astype(np.float32)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["X"] = X
        f["y"] = np.arange(20) % 2
        f["classes"] = np.array([b"no", b"yes"])
        f["feats/train"] = 3 * X
        f["feats/y"] = np.arange(20) % 2
    X2, y2, classes = load_features(tmp_path / "a.h5")
    np.testing.assert_array_equal(X2, X)
    assert classes.tolist() == ["no", "yes"] and y2.tolist() == (np.arange(20) % 2).tolist()
    np.testing.assert_array_equal(load_features(tmp_path / "a.h5", key="feats/train")[0], 3 * X)
    with pytest.raises(ValueError, match="no dataset 'nope' .--key.; datasets:"):
        load_features(tmp_path / "a.h5", key="nope")
    Xq = rng.integers(0, 256, (10, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "q.hdf5", "w") as f:
        f["Xq"], f["scale"], f["zero_point"], f["y"] = Xq, np.float32(0.5), np.int32(3), np.zeros(
            10, np.int64)
    np.testing.assert_array_equal(load_features(tmp_path / "q.hdf5")[0],
                                  (Xq.astype(np.float32) - 3) * np.float32(0.5))


def test_npz_key_and_dataset_name(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 5)).astype(np.float32)
    y = np.arange(40) % 2
    np.savez(tmp_path / "multi.npz", emb_a=X, emb_b=X[:, :2], y=y)
    ds = load_dataset(tmp_path / "multi.npz", key="emb_b", name="my pool", normalize=False)
    assert ds.X_train.shape[1] == 2 and ds.name == "my pool"
    assert load_dataset(tmp_path / "multi.npz", key="emb_a").name == "multi"
    with pytest.raises(ValueError, match=r"no array 'X' .--key.; arrays: \['emb_a', 'emb_b', 'y'\]"):
        load_features(tmp_path / "multi.npz", key="X")
    np.save(tmp_path / "one.npy", X)
    with pytest.raises(ValueError, match="holds one array; --key 'x' does not apply"):
        load_features(tmp_path / "one.npy", y, key="x")


def test_missing_optional_reader_names_the_extra(tmp_path, monkeypatch):
    import sys

    (tmp_path / "x.h5").write_bytes(b"")
    (tmp_path / "x.parquet").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match=r"needs h5py: pip install 'alamp_fast\[hdf5\]'"):
        load_features(tmp_path / "x.h5")
    with pytest.raises(ValueError, match=r"needs pyarrow.parquet: pip install 'alamp_fast\[parquet"):
        load_features(tmp_path / "x.parquet")


def test_damaged_parquet_and_hdf5_are_one_line_errors(tmp_path):
    pytest.importorskip("h5py")
    pytest.importorskip("pyarrow")
    for name in ("x.h5", "x.parquet"):
        (tmp_path / name).write_bytes(b"garbage")
        with pytest.raises(ValueError, match="cannot read"):
            load_features(tmp_path / name)


def test_l2_normalize_blocks_are_bitwise_the_one_call_result():
    # rows are normalised in blocks of about 1 MiB; each row's value must not depend on them
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5000, 300)).astype(np.float32) * 7
    X[17] = 0
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    expected = X / np.where(norms > 0, norms, 1)
    got = l2_normalize(X)
    assert got.dtype == np.float32 and got.shape == X.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[17], 0)
    np.testing.assert_array_equal(l2_normalize(X[:3]), expected[:3])
    assert l2_normalize(np.zeros((0, 4))).shape == (0, 4)


def test_l2_normalize_in_place_and_bad_out():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3000, 200)).astype(np.float32)
    expected = l2_normalize(X)
    Y = X.copy()
    assert l2_normalize(Y, out=Y) is Y
    np.testing.assert_array_equal(Y, expected)
    out = np.empty_like(X)
    assert l2_normalize(X, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for bad in (np.empty((3000, 200)), np.empty((10, 200), np.float32), [[0.0]]):
        with pytest.raises(ValueError, match="out must be a float32 array of shape"):
            l2_normalize(X, out=bad)
