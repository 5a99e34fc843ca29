"""pytest plumbing for the documentation examples, for every run from the repository root.

``--doctest-modules`` (pyproject.toml) runs the examples of the package's docstrings; this file
skips, with the reason, those that need a GPU array library where none runs, and prints how many
documentation examples ran (docstrings and the README's code blocks, tests/test_docs_examples.py)
in the terminal summary. The test fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import re

import pytest

# an example that needs a GPU array library: CuPy, torch CUDA tensors, device="cuda"
_GPU_EXAMPLE = re.compile(r"\bcupy\b|\.cuda\(|torch\.cuda|device\s*=\s*[\"']cuda")


def _gpu_skip_reason(config) -> str | None:
    """Why CuPy examples cannot run here (None: they can).

    The test suite's own answer (tests/conftest.py, which may run the GPU backend on the CUDA
    emulator) when it is loaded; else whether CuPy imports and sees a device.
    """
    for plugin in config.pluginmanager.get_plugins():
        fn = getattr(plugin, "_cuda_skip_reason", None)
        if callable(fn):
            return fn("cupy")
    try:
        import cupy
    except ImportError as exc:
        return f"cupy is not importable: {str(exc).strip().splitlines()[-1]}"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device visible to cupy"
    except Exception as exc:  # CUDARuntimeError and friends, whose classes vary by version
        return f"CUDA unavailable to cupy: {exc}"
    return None


def pytest_ignore_collect(collection_path, config):
    """Skip the deprecation shims of moved modules (``sys.modules[__name__] = new module``):
    under their old path pytest would find the new module's file and refuse it as a mismatch,
    and their docstrings are the new module's, collected at its own path."""
    if collection_path.suffix == ".py" and collection_path.is_file():
        try:
            text = collection_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        if "sys.modules[__name__] = " in text:
            return True
    return None


def pytest_collection_modifyitems(config, items):
    """Docstring examples that use a GPU library skip, with the reason, where it cannot run."""
    from _pytest.doctest import DoctestItem

    reason = None
    for item in items:
        if not isinstance(item, DoctestItem) or item.dtest is None:
            continue
        if not any(_GPU_EXAMPLE.search(ex.source) for ex in item.dtest.examples):
            continue
        if reason is None:
            reason = _gpu_skip_reason(config) or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"GPU example: {reason}"))


def _is_doc_example(report) -> bool:
    """A docstring doctest or a README code block (tests/test_docs_examples.py)."""
    location = getattr(report, "location", None)
    if location is None:
        return False
    return (
        str(location[2]).startswith("[doctest]")
        or "test_docs_examples.py::test_readme_example" in report.nodeid
    )


def pytest_terminal_summary(terminalreporter):
    """One line counting the documentation examples run (with -n, from the workers' reports)."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            when = getattr(report, "when", None)
            # one report per example: the call, or the setup when it skipped or errored there
            if _is_doc_example(report) and (
                when == "call" or (when == "setup" and outcome != "passed")
            ):
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        text = ", ".join(f"{n} {k}" for k, n in counts.items())
        terminalreporter.write_line(f"documentation examples (docstrings, README): {text}")
