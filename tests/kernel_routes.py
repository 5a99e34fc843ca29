"""Autouse fixture for the kernel tests: small inputs take a numpy route by default
(``alamp_fast._parallel.numpy_route``); under the ``numpy-parallel`` backend they run the
compiled kernels instead, so every test shape covers both routes."""

from __future__ import annotations

import pytest

from alamp_fast import _parallel


@pytest.fixture(autouse=True)
def kernels_on_small_inputs(request, monkeypatch):
    spec = getattr(request.node, "callspec", None)
    if spec is not None and spec.params.get("backend") == "numpy-parallel":
        monkeypatch.setattr(_parallel, "NUMPY_MAX_WORK", -1)
