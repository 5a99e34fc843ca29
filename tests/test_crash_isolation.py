"""The project's pytest configuration survives a test that kills the interpreter.

A throwaway test file that calls ``os.abort()`` between two passing tests is run by a child
pytest with this repository's pyproject.toml: the abort must come back as a failure naming
that test, the tests after it must still run, and the exit status must be non-zero. This is
what keeps one native crash (e.g. in torch) from silently ending the CI run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_crashing_test_is_a_named_failure_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_throwaway_crash.py").write_text(
        textwrap.dedent(
            """
            import os

            def test_before():
                pass

            def test_aborts():
                os.abort()

            def test_after():
                pass
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-q",
            str(tmp_path / "test_throwaway_crash.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out[-4000:]}"
    assert "FAILED test_throwaway_crash.py::test_aborts" in out, out[-4000:]
    assert "crashed while running" in out, out[-4000:]
    assert "1 failed, 2 passed" in out, out[-4000:]
    assert "Fatal Python error: Aborted" in out, out[-4000:]  # faulthandler's stack
