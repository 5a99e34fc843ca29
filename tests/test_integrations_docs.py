"""The examples of docs/integrations.md run as written and print what the page shows.

Each ```python block names its host through ``from alamp_fast.integrations import <host>``; the
test id starts with that host (``-k modal`` selects modAL's), and a block whose host is not
installed skips. ``.ci/adapters.py`` runs these tests against every host version it tests.
No patch of any host is applied here: the modAL example must run on the installed
scikit-learn as it stands.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from test_docs_examples import _normalise, python_examples

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
HOST_IMPORT = {  # adapter module -> what the host is imported as
    "modal": "modAL",
    "skactiveml": "skactiveml",
    "baal": "baal",
    "small_text": "small_text",
}
_ADAPTER = re.compile(r"from alamp_fast\.integrations import (\w+)")
# baal's ActiveLearningLoop logs each step to stdout (structlog): not the example's output
_HOST_LOG = re.compile(r"^\[\d+-\w+\] \[baal\.")

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
