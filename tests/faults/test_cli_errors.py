"""Clear errors instead of tracebacks: every CLI failure is one line naming the option and its
value, exit status 2 for a bad option or path and 1 for a failed operation, no traceback
unless ``--debug``; and ``label`` streams its CSV."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tracemalloc

import pytest

import alamp_fast.workflow.storage as wf_storage
from alamp_fast.cli import main
from alamp_fast.workflow import Project

from .helpers import REPO, one_line_error, state_bytes


def test_disk_full_during_select_is_one_line_and_the_state_intact(project, monkeypatch, capsys):
    proj_dir, _ = project
    before = state_bytes(proj_dir)
    real = wf_storage._create_new

    def full_disk(path, mode=0o644):
        if path.name.startswith(".state.npz"):
            return os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        return real(path, mode)

    monkeypatch.setattr(wf_storage, "_create_new", full_disk)
    assert main(["select", "-p", str(proj_dir)]) == 1
    line = one_line_error(capsys.readouterr().err, "select")
    assert os.strerror(errno.ENOSPC) in line, line
    assert state_bytes(proj_dir) == before
    assert not list(proj_dir.glob(".*.tmp-*"))
    monkeypatch.undo()
    assert Project.open(proj_dir).select().round == 2


def test_disk_full_while_writing_the_csv_keeps_the_round(project, monkeypatch, capsys):
    proj_dir, _ = project
    real = wf_storage._create_new

    def full_disk(path, mode=0o644):
        if path.name.startswith(".round-"):
            return os.open("/dev/full", os.O_WRONLY)
        return real(path, mode)

    monkeypatch.setattr(wf_storage, "_create_new", full_disk)
    assert main(["select", "-p", str(proj_dir)]) == 1
    one_line_error(capsys.readouterr().err, "select")
    monkeypatch.undo()
    # the round was committed; re-running delivers it, once
    assert main(["select", "-p", str(proj_dir)]) == 0
    proj = Project.open(proj_dir)
    assert proj.rounds == 2 and proj.batch(2).path.exists()


def test_label_with_a_directory(project, tmp_path, capsys):
    proj_dir, _ = project
    assert main(["label", "-p", str(proj_dir), str(tmp_path)]) == 2
    line = one_line_error(capsys.readouterr().err, "label")
    assert str(tmp_path) in line and "is a directory" in line


def test_status_with_a_wrong_pool_fails(project, tmp_path, capsys):
    proj_dir, _ = project
    assert main(["status", "-p", str(proj_dir), "--pool", str(tmp_path / "wrong.npy")]) == 2
    line = one_line_error(capsys.readouterr().err, "status")
    assert "--pool" in line and "wrong.npy" in line


def test_errors_name_flags_not_keywords(project, capsys):
    proj_dir, truth = project
    proj = Project.open(proj_dir)
    batch = proj.select()
    proj.label({i: truth[i] for i in batch.ids[:2]})
    capsys.readouterr()
    assert main(["select", "-p", str(proj_dir)]) == 1
    line = one_line_error(capsys.readouterr().err, "select")
    assert "--allow-partial" in line and "allow_partial" not in line, line
    # relabels: --relabel, not relabel=True
    wrong = {i: next(c for c in sorted(set(truth.values())) if c != truth[i])
             for i in batch.ids[:1]}
    f = proj_dir.parent / "wrong.csv"
    f.write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in wrong.items()))
    assert main(["label", "-p", str(proj_dir), str(f)]) == 1
    line = one_line_error(capsys.readouterr().err, "label")
    assert "--relabel" in line and "relabel=" not in line, line


def test_typo_in_init_pool_gets_a_useful_hint(tmp_path, frng, capsys):
    import numpy as np

    np.save(tmp_path / "features.npy", frng.normal(size=(20, 3)).astype(np.float32))
    assert main(["init", "-p", str(tmp_path / "p"), "--pool", str(tmp_path / "featrues.npy"),
                 "--classes", "a,b"]) == 2
    line = one_line_error(capsys.readouterr().err, "init")
    assert "--pool" in line and "featrues.npy" in line and "did you mean" in line, line
    assert "features.npy" in line and "moved" not in line, line


def test_semicolon_csv_is_read_with_a_note(project, capsys):
    proj_dir, truth = project
    batch = Project.open(proj_dir).select()
    f = proj_dir.parent / "semi.csv"
    f.write_text("id;label\n" + "".join(f"{i};{truth[i]}\n" for i in batch.ids))
    capsys.readouterr()
    assert main(["label", "-p", str(proj_dir), str(f)]) == 0
    err = capsys.readouterr().err
    assert "semicolon" in err, err
    assert Project.open(proj_dir).status(cv=0)["n_labeled"] == 16 + len(batch)


def test_debug_shows_the_traceback(project, tmp_path):
    proj_dir, _ = project
    with pytest.raises(FileNotFoundError):
        main(["select", "-p", str(tmp_path / "none"), "--debug"])


def test_status_into_a_closed_pipe_is_quiet(project):
    proj_dir, _ = project
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "alamp_fast", "status", "-p", str(proj_dir),
                          "--cv", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert p.returncode in (0, 141), (p.returncode, err)


def test_label_streams_a_large_csv(project, tmp_path):
    proj_dir, truth = project
    batch = Project.open(proj_dir).select()
    f = tmp_path / "big.csv"
    n_blank = 400_000
    with open(f, "w") as out:
        out.write("id,label,note\n")
        out.write("0,,some annotator's note that is not a label\n" * n_blank)
        out.writelines(f"{i},{truth[i]},\n" for i in batch.ids)
    size = f.stat().st_size
    tracemalloc.start()
    try:
        rep = Project.open(proj_dir).label(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep.new == len(batch) and rep.blank == n_blank
    # holding the rows would cost several times the file; streaming costs a few MB
    assert peak < size / 4, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB CSV"
