"""Fixtures of the fault-injection suite (issue "nothing lost, nobody in").

Every test here reproduces one failure found by trying the package as an attacker and a clumsy
user would (a kill at a commit, a deleted lock file, a swapped state file, a planted symlink, a
truncated pool, a formula in an id, ...) and checks the fix. They run in CI with the rest.
"""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import make_project


@pytest.fixture
def frng():
    return np.random.default_rng(1717)


@pytest.fixture
def project(tmp_path, frng):
    """``(project_dir, truth)``: round 1 labeled, round 2 (a strategy round) next."""
    return make_project(tmp_path, frng)
