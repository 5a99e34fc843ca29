"""Every Python block of the README runs, as a user would paste it, and prints what it shows.

A ```python block followed (after at most a few lines of prose, no heading) by a ```text block
must print exactly that text. Blocks that use a GPU library skip, with the reason, where no GPU
backend runs. The docstring examples of the package run through ``--doctest-modules``
(pyproject.toml); the root conftest.py prints the count of both kinds.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import _cuda_skip_reason

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md"]

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_GPU = re.compile(r"\bcupy\b|\.cuda\(|torch\.cuda|device\s*=\s*[\"']cuda")
_MAX_PROSE_LINES = 4  # between a code block and the output block it is compared with


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    end: int  # 1-based line of the closing fence


@dataclass
class Example:
    path: Path
    line: int
    code: str
    expected: str | None

    @property
    def id(self) -> str:
        return f"{self.path.name}:L{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code block is not closed")
        blocks.append(Block(path, start + 1, lang, "\n".join(lines[start + 1 : i]), i + 1))
        i += 1
    return blocks


def python_examples(path: Path) -> list[Example]:
    blocks = fenced_blocks(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for k, block in enumerate(blocks):
        if block.lang not in ("python", "py"):
            continue
        expected = None
        if k + 1 < len(blocks) and blocks[k + 1].lang == "text":
            between = [ln for ln in lines[block.end : blocks[k + 1].line - 1] if ln.strip()]
            if len(between) <= _MAX_PROSE_LINES and not any(ln.startswith("#") for ln in between):
                expected = blocks[k + 1].text
        out.append(Example(path, block.line, block.text, expected))
    return out


EXAMPLES = [ex for doc in DOCUMENTS for ex in python_examples(doc)]


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def test_the_readme_has_python_examples_with_their_output():
    assert EXAMPLES, "no ```python block found in the README"
    ten_lines = [ex for ex in EXAMPLES if "af.diversify(" in ex.code]
    assert ten_lines, "the README's 'One AL step' example is gone"
    assert all(ex.expected for ex in ten_lines), "the 'One AL step' example shows no output"


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.id for ex in EXAMPLES])
def test_readme_example_runs_and_prints_what_it_shows(example, tmp_path, monkeypatch):
    if _GPU.search(example.code):
        reason = _cuda_skip_reason("cupy")
        if reason:
            pytest.skip(f"GPU example: {reason}")
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    out = io.StringIO()
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(example.code, f"{example.id}", "exec"), namespace)
    if example.expected is not None:
        assert _normalise(out.getvalue()) == _normalise(example.expected), (
            f"{example.id} printed:\n{out.getvalue()}\nthe README shows:\n{example.expected}"
        )


def test_parser_pairs_code_with_its_output(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# t\n\n```python\nprint(1)\n```\n\nIt prints:\n\n```text\n1\n```\n\n"
        "```python\nx = 2\n```\n\n## next\n\n```text\nnot an output\n```\n",
        encoding="utf-8",
    )
    got = python_examples(doc)
    assert [(ex.line, ex.expected) for ex in got] == [(3, "1"), (13, None)]
    doc.write_text("```python\nprint(1)\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="not closed"):
        fenced_blocks(doc)
