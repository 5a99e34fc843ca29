"""The package's structure: no import circle, and the generated docs match the code."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert generate.find_cycles(graph) == [["a", "b", "c"]]
    assert generate.find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_reads_lazy_imports(tmp_path):
    pkg = tmp_path / "alamp_fast"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from alamp_fast import b\n")
    (pkg / "b.py").write_text("from .a import f\n")
    graph = generate.import_graph(tmp_path)
    assert graph["alamp_fast.a"] == {"alamp_fast.b"}
    assert graph["alamp_fast.b"] == {"alamp_fast.a"}


def test_the_package_has_no_import_circle():
    cycles = generate.find_cycles(generate.import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_generated_docs_are_up_to_date():
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
