"""The examples of docs/integrations.md run as written and print what the page shows.

Each ```python block names its host through ``from alamp_fast.integrations import <host>``; the
test id starts with that host (``-k modal`` selects modAL's), and a block whose host is not
installed skips. ``.ci/adapters.py`` runs these tests against every host version it tests.
No patch of any host is applied here: the modAL example must run on the installed
scikit-learn as it stands.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from test_docs_examples import _normalise, python_examples

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
HOST_IMPORT = {  # adapter module -> what the host is imported as
    "modal": "modAL",
    "skactiveml": "skactiveml",
    "baal": "baal",
    "small_text": "small_text",
}
_ADAPTER = re.compile(r"from alamp_fast\.integrations import (\w+)")
# baal's ActiveLearningLoop logs each step to stdout (structlog): not the example's output
_HOST_LOG = re.compile(r"^\[\d+-[^\]]*\] \[baal\.")

EXAMPLES = python_examples(DOC)


def _host(code: str) -> str:
    found = set(_ADAPTER.findall(code))
    assert len(found) == 1, f"an example should use exactly one adapter, found {found}"
    return found.pop()


def test_every_host_has_an_example_with_its_output():
    hosts = [_host(ex.code) for ex in EXAMPLES]
    assert sorted(hosts) == sorted(HOST_IMPORT), hosts
    assert all(ex.expected for ex in EXAMPLES), "an example shows no output"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[f"{_host(ex.code)}-L{ex.line}" for ex in EXAMPLES]
)
def test_integrations_example_runs_and_prints_what_it_shows(example, tmp_path, monkeypatch):
    pytest.importorskip(HOST_IMPORT[_host(example.code)])
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example.code, example.id, "exec"), {"__name__": "__main__"})
    printed = "\n".join(ln for ln in out.getvalue().splitlines() if not _HOST_LOG.match(ln))
    assert _normalise(printed) == _normalise(example.expected), (
        f"{example.id} printed:\n{out.getvalue()}\ndocs/integrations.md shows:\n{example.expected}"
    )


# --------------------------------------------------------------------------------------------
# the tested versions: .ci/adapters.py's results, the docs table and pyproject's extras agree

REPO = DOC.parent.parent
EXTRA = {"modal": "modal", "skactiveml": "skactiveml", "baal": "baal", "small_text": "small-text"}


def _adapters_script():
    spec = importlib.util.spec_from_file_location("ci_adapters", REPO / ".ci" / "adapters.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _matrix_results() -> dict:
    return json.loads((REPO / "benchmarks" / "results" / "adapters_matrix.json").read_text())


def test_the_docs_table_is_the_matrix_results():
    table = _adapters_script().table(_matrix_results())
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- adapters-matrix:start -->\n(.*?)\n<!-- adapters-matrix:end -->", text,
                  re.S)
    assert m, "docs/integrations.md has no adapters-matrix markers"
    assert m.group(1).strip() == table.strip(), (
        "regenerate the table: .venv/bin/python .ci/adapters.py --table"
    )


def test_the_results_cover_the_script_matrix():
    script, report = _adapters_script(), _matrix_results()
    want = {(e.host, e.label, tuple(e.requirements), e.in_range) for e in script.MATRIX}
    got = {(r["module"].rsplit(".", 1)[1], r["label"], tuple(r["requirements"]), r["in_range"])
           for r in report["rows"]}
    assert got == want, "the results file is older than .ci/adapters.py's MATRIX: rerun it"


def test_the_extras_admit_exactly_the_passing_versions():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    report = _matrix_results()
    for host, extra in EXTRA.items():
        (req,) = (Requirement(r) for r in extras[extra])
        rows = [r for r in report["rows"] if r["module"].endswith(f".{host}")]
        assert any(r["in_range"] for r in rows), host
        for row in rows:
            version = row["requirements"][0].split("==")[1]
            assert row["host"].lower() == req.name.lower()
            if row["in_range"]:
                assert row["status"] == "pass", (host, row["label"], row.get("failed_tests"))
                assert req.specifier.contains(version), (host, version, str(req.specifier))
            else:
                assert not req.specifier.contains(version), (host, version, str(req.specifier))
        # the newest release when the matrix ran was tested and is admitted
        newest = report["newest_on_index"][req.name]
        assert newest is None or any(
            r["in_range"] and r["requirements"][0].endswith(f"=={newest}") for r in rows
        ), (host, newest)
    assert extras["integrations"] == [f"alamp_fast[{','.join(EXTRA.values())}]"]
