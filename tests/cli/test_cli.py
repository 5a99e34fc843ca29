"""The ``alamp-fast`` entry (``alamp_fast.cli``): the console script resolves, the old module
paths of the commands still work through warning shims, and ``bench`` prints a table whose
columns line up and a progress bar with an ETA on a terminal only."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import alamp_fast.cli as cli
from alamp_fast.cli import bench as cli_bench

REPO = Path(__file__).resolve().parents[2]


def test_console_script_resolves_to_cli_main():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "alamp-fast"]
    assert ep.value == "alamp_fast.cli:main"
    assert ep.load() is cli.main


def test_every_option_of_every_command_has_a_help_text():
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert list(sub.choices) == list(cli.COMMANDS)  # every command's module imports
    missing = [
        f"{name} {' '.join(action.option_strings) or action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if action.dest != "help" and not (action.help or "").strip()
    ]
    assert missing == []


def test_python_dash_m_entries(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def run(*argv):
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                              env=env, timeout=300, cwd=tmp_path)

    out = run("-m", "alamp_fast.cli", "--version")
    assert out.returncode == 0 and out.stdout.startswith("alamp-fast "), out.stderr
    # building every command's parser goes through no deprecated module path
    out = run("-W", "error::DeprecationWarning", "-m", "alamp_fast.cli", "--help")
    assert out.returncode == 0 and "cuda-warmup" in out.stdout and "export" in out.stdout, (
        out.stderr
    )
    # docs/finetune.md's command, and the new module's
    for module in ("alamp_fast.finetune.pretrain", "alamp_fast.cli.finetune"):
        out = run("-m", module, "--help")
        assert out.returncode == 0 and "--source-classes" in out.stdout, out.stderr
        assert f"python -m {module}" in out.stdout


# ---------------------------------------------------------------------------------------------
# deprecation shims of the old paths


@pytest.mark.parametrize("old, new", [
    ("alamp_fast.simulate_cli", "alamp_fast.cli.simulate"),
    ("alamp_fast.cuda.warmup_cli", "alamp_fast.cli.cuda_warmup"),
])
def test_moved_module_warns_and_is_the_new_module(monkeypatch, old, new):
    new_module = importlib.import_module(new)
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported afresh: the warning again
    parent, _, leaf = old.rpartition(".")
    monkeypatch.delattr(importlib.import_module(parent), leaf, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {new} instead"):
        module = importlib.import_module(old)
    assert module is new_module and sys.modules[old] is new_module
    # monkeypatching through the old name reaches the code that runs
    monkeypatch.setattr(module, "run", "patched")
    assert new_module.run == "patched"


@pytest.mark.parametrize("old, new, names, kept", [
    ("alamp_fast.finetune.pretrain", "alamp_fast.cli.finetune",
     ["add_arguments", "add_ft_arguments", "main", "run", "run_simulate_ft"], "split_classes"),
    ("alamp_fast.bench", "alamp_fast.cli.bench", ["add_arguments", "format_table", "run"],
     "make_cases"),
])
def test_moved_functions_warn_and_are_the_new_functions(old, new, names, kept):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} is deprecated: use {new}"):
            fn = getattr(old_module, name)
        assert fn is getattr(new_module, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library part stays, without a warning
        assert callable(getattr(old_module, kept))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        old_module.nope  # noqa: B018


def test_simulate_and_finetune_share_the_output_options():
    import argparse

    from alamp_fast.cli import finetune, simulate

    opts = {}
    for module in (simulate, finetune):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        (group,) = [g for g in parser._action_groups if g.title == "output"]
        opts[module.__name__] = [a.option_strings[0] for a in group._group_actions]
    assert opts["alamp_fast.cli.finetune"] == ["--out", "--no-plots", "--save-order", "--quiet"]
    assert opts["alamp_fast.cli.simulate"] == [*opts["alamp_fast.cli.finetune"], "--resume"]


# ---------------------------------------------------------------------------------------------
# bench: the table and the progress bar


def _row(kernel, sizes, min_s, ratio, reference):
    return {"kernel": kernel, "provider": "alamp_fast", "reference": reference, "sizes": sizes,
            "min_s": min_s, "gb_per_s": 123.456, "fraction_of_bandwidth": 0.5,
            "speedup_vs_reference": ratio}


def test_bench_table_columns_line_up_with_long_and_short_cells():
    report = {
        "results": [
            _row("alamp_score", {"n": 10}, 1e-6, 2.0, "numpy"),
            _row("kcenter_greedy",
                 {"n": 1_000_000, "d": 512, "labeled": 200, "b": 20, "dtype": "float32"},
                 1234.5, None, "sklearn_pairwise"),
            _row("a_much_longer_kernel_name_than_any_header", {"n": 1}, 0.5, 1234.56, "x"),
            {**_row("skipped", {"n": 1}, 1.0, 1.0, "numpy"), "provider": "numpy"},
        ],
        "read_bandwidth_gb_per_s": 10.0,
        "load_average": [1.0, 1.0, 1.0],
        "load_average_at_end": [2.0, 1.0, 1.0],
    }
    lines = cli_bench.format_table(report).splitlines()
    header, rule, *rows = lines[:5]
    assert header.split(" | ")[0].strip() == "kernel" and len(rows) == 3
    assert "skipped" not in "\n".join(lines)  # only this package's rows
    offsets = [i for i, c in enumerate(header) if c == "|"]
    assert len(offsets) == 6
    assert [i for i, c in enumerate(rule) if c == "+"] == offsets
    for row in rows:
        assert [i for i, c in enumerate(row) if c == "|"] == offsets, row
    # numbers are right-aligned; a missing ratio is "-"
    assert rows[1].split(" | ")[5].strip() == "-" and rows[1].split(" | ")[5].endswith("-")
    assert "1234500.00" in rows[1] and "1234.6" in rows[2]  # ms; the ratio
    assert lines[5].startswith("read bandwidth: 10.0 GB/s")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def quick_bench(monkeypatch, tmp_path):
    """``alamp-fast bench`` on the smallest kernel cases, without the 1 GiB bandwidth pass
    (a fixed figure) or the GPU suite."""
    import alamp_fast.bench as bench

    monkeypatch.setattr(bench, "read_bandwidth", lambda: 20e9)
    monkeypatch.setattr(cli_bench, "_gpu_report", lambda args: None)

    def run(stderr, *extra):
        monkeypatch.setattr(sys, "stderr", stderr)
        out = tmp_path / f"bench{len(list(tmp_path.iterdir()))}.json"
        rc = cli.main(["bench", "--scale", "quick", "--kernels", "alamp_score", "--out",
                       str(out), *extra])
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        return rc, out

    return run


def test_bench_progress_with_eta_on_a_terminal_quiet_when_piped(quick_bench, capsys):
    tty = _Terminal()
    rc, out = quick_bench(tty)
    assert rc == 0
    shown = tty.getvalue()
    # one step for the bandwidth, one per case (2 sizes x alamp_fast and numpy)
    assert "bench" in shown and "ETA" in shown and "5/5" in shown, shown
    assert "alamp_score numpy" in shown  # the case being measured
    doc = json.loads(out.read_text())
    assert {r["kernel"] for r in doc["results"]} == {"alamp_score"} and len(doc["results"]) == 4
    table = capsys.readouterr().out
    assert "alamp_score" in table and f"wrote {out}" in table and "\r" not in table

    piped = io.StringIO()
    assert quick_bench(piped)[0] == 0
    assert piped.getvalue() == ""
    quiet = _Terminal()
    assert quick_bench(quiet, "--no-progress")[0] == 0
    assert quiet.getvalue() == ""


def test_bench_unknown_kernel_is_one_line(capsys, tmp_path):
    rc = cli.main(["bench", "--kernels", "nope", "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "unknown kernel(s) ['nope']" in err
    assert not (tmp_path / "b.json").exists()


def test_progress_helper_rule():
    from alamp_fast._progress import make_progress, stream_is_terminal

    assert make_progress("auto", 3, "x", stream=io.StringIO()) is None
    assert make_progress(False, 3, "x", stream=_Terminal()) is None
    assert not stream_is_terminal(object()) and stream_is_terminal(_Terminal())
    closed = io.StringIO()
    closed.close()
    assert not stream_is_terminal(closed)
    stream = io.StringIO()  # progress=True: shown even when piped
    bar = make_progress(True, 2, "task", unit="case", stream=stream)
    bar.update(2)
    bar.close()
    assert "task" in stream.getvalue() and "2/2" in stream.getvalue()
