"""The package version has one source: the installed distribution's metadata (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import alamp_fast


def test_version_comes_from_package_metadata():
    assert alamp_fast.__version__ == version("alamp_fast")


def test_cli_version_prints_the_metadata_version():
    out = subprocess.run(
        [sys.executable, "-m", "alamp_fast", "--version"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == f"alamp-fast {version('alamp_fast')}"
