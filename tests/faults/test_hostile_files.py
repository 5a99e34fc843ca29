"""Hostile files: formula cells (F5), symlinks planted at temp and lock paths, temp files left
beside ``--out``, truncated pools (F9)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from alamp_fast.cli import main
from alamp_fast.workflow import Project

from .helpers import make_project, one_line_error, state_bytes

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
# ids and class names a spreadsheet would run (ids and names are stripped: no leading tab/CR)
EVIL_IDS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1:A2)", "'=quoted", "'plain",
            "=cmd|' /C calc'!A0", "ok-id"]
EVIL_CLASSES = ["=cls", "+pos", "-neg", "@at", "'q"]


def _cells(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_formula_cells_are_escaped_and_read_back_losslessly(tmp_path, frng):
    n = 60
    ids = EVIL_IDS + [f"s{i}" for i in range(n - len(EVIL_IDS))]
    proj_dir, truth = make_project(tmp_path, frng, n=n, ids=ids, classes=EVIL_CLASSES,
                                   rounds_labeled=0)
    proj = Project.open(proj_dir)
    batch = proj.select(budget=n)  # every id, the evil ones included
    assert set(EVIL_IDS) <= set(batch.ids)
    rows = _cells(batch.path)
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), f"formula cell {cell!r} in {row}"
    # the annotators fill the label column with the class names as they see them: escaped
    # (a spreadsheet shows '=cls as =cls and saves it back escaped) or not
    header, body = rows[0], rows[1:]
    id_col, label_col = header.index("id"), header.index("label")
    for k, row in enumerate(body):
        sid = row[id_col][1:] if row[id_col].startswith("'") else row[id_col]
        name = truth[sid]
        row[label_col] = ("'" + name) if k % 2 and name.startswith(("=", "+", "-", "@", "'")) \
            else name
    # an unescaped "'q" (the name itself starts with ') cannot be told from an escaped "q": the
    # CSV names it escaped ("''q"), as we write it
    for row in body:
        if row[label_col] == "'q":
            row[label_col] = "''q"
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    rep = proj.label(filled)
    assert rep.new == len(batch)
    got = {e["id"]: e["label"] for e in proj.labels()}
    assert got == {i: truth[i] for i in batch.ids}


def test_export_csv_escapes_too(tmp_path, frng):
    ids = EVIL_IDS + [f"s{i}" for i in range(40)]
    proj_dir, _ = make_project(tmp_path, frng, n=len(ids), ids=ids, classes=EVIL_CLASSES)
    out = tmp_path / "labels.csv"
    assert main(["export", "-p", str(proj_dir), "--format", "csv", "--out", str(out)]) == 0
    for row in _cells(out)[1:]:
        for cell in row[:2]:
            assert not cell.startswith(DANGEROUS), row


def test_symlink_at_the_lock_file_is_not_written_through(project, tmp_path):
    proj_dir, truth = project
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (proj_dir / "lock").unlink(missing_ok=True)
    (proj_dir / "lock").symlink_to(victim)
    batch = Project.open(proj_dir).select()
    Project.open(proj_dir).label({i: truth[i] for i in batch.ids})
    assert victim.read_text() == "precious\n"


def test_symlink_at_a_temp_path_is_not_written_through(project, tmp_path):
    proj_dir, _ = project
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "copy.csv"
    # the temp names this process would use
    for name in (f".copy.csv.tmp-{os.getpid()}",):
        (tmp_path / name).symlink_to(victim)
    (proj_dir / "batches" / f".round-002.csv.tmp-{os.getpid()}").symlink_to(victim)
    (proj_dir / f".state.npz.tmp-{os.getpid()}").symlink_to(victim)
    batch = Project.open(proj_dir).select(out=out)
    assert victim.read_text() == "precious\n"
    assert out.read_bytes() == batch.path.read_bytes()
    assert not out.is_symlink() and not batch.path.is_symlink()


def test_stray_temp_copy_beside_out_is_cleaned_up(project, tmp_path):
    proj_dir, _ = project
    out = tmp_path / "copy.csv"
    dead = 2**22 + 12345  # above any pid_max default: no such process
    stray = tmp_path / f".copy.csv.tmp-{dead}"
    stray.write_text("half a copy")
    other = tmp_path / f".other.csv.tmp-{dead}"  # not ours: left alone
    other.write_text("x")
    Project.open(proj_dir).select(out=out)
    assert not stray.exists()
    assert other.exists()


@pytest.mark.parametrize("cut", [1, 4, 40, 4000])
def test_truncated_pool_fails_clearly_and_changes_nothing(project, capsys, cut):
    proj_dir, _ = project
    pool = proj_dir.parent / "pool.npy"
    size = pool.stat().st_size
    with open(pool, "r+b") as f:
        f.truncate(max(0, size - cut))
    before = state_bytes(proj_dir)
    assert main(["select", "-p", str(proj_dir)]) == 1
    line = one_line_error(capsys.readouterr().err, "select")
    assert str(pool) in line and ("truncated" in line or "not a valid .npy" in line), line
    assert state_bytes(proj_dir) == before


def test_pool_is_opened_read_only_and_not_changed(project):
    proj_dir, _ = project
    pool = proj_dir.parent / "pool.npy"
    content = pool.read_bytes()
    os.chmod(pool, 0o444)  # a read-only file must do
    try:
        assert Project.open(proj_dir).select().round == 2
    finally:
        os.chmod(pool, 0o644)
    assert pool.read_bytes() == content


def test_pool_header_announcing_more_rows_than_the_file_has(project, capsys):
    proj_dir, _ = project
    pool = proj_dir.parent / "pool.npy"
    X = np.load(pool)
    # a header for 10x the rows, over the original data: what a crashed writer leaves
    with open(pool, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (X.shape[0] * 10, X.shape[1])})
        f.write(X.tobytes())
    assert main(["status", "-p", str(proj_dir), "--pool", str(pool)]) == 1
    line = one_line_error(capsys.readouterr().err, "status")
    assert "truncated" in line and f"{X.shape[0] * 10} x {X.shape[1]}" in line, line


def test_pool_truncated_while_it_is_read(project, monkeypatch, capsys):
    import alamp_fast.al.datasets as datasets
    import alamp_fast.workflow.pool as wf_pool

    proj_dir, _ = project
    pool = proj_dir.parent / "pool.npy"
    monkeypatch.setattr(wf_pool, "_POOL_BLOCK_BYTES", 400)  # many blocks: the cut lands mid-read
    real = datasets.l2_normalize
    cut = []

    def normalize_then_truncate(X, **kwargs):
        if not cut:  # another process truncates the file after the first block
            with open(pool, "r+b") as f:
                f.truncate(pool.stat().st_size // 2)
            cut.append(1)
        return real(X, **kwargs)

    monkeypatch.setattr(datasets, "l2_normalize", normalize_then_truncate)
    before = state_bytes(proj_dir)
    assert main(["select", "-p", str(proj_dir)]) == 1
    line = one_line_error(capsys.readouterr().err, "select")
    assert cut and "truncated while being read" in line, line
    assert state_bytes(proj_dir) == before
