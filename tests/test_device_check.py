"""benchmarks/device_check.sh rehearsed end to end on the CUDA emulator (what a GPU lease runs).

Tiny sizes, a few GPU tests, compute-sanitizer skipped (said so in the JSON); the real run on a
device is the same script without ALAMP_FAST_DEVICE_CHECK_REHEARSAL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"

pytestmark = pytest.mark.slow


def _nvrtc_reason():
    from alamp_fast.cuda import _nvrtc

    return _nvrtc.available()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils timeout")
@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
def test_device_check_rehearsal_on_the_emulator(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ)
    env.update({
        "OUT": str(out),
        "PYTHON": sys.executable,
        "ALAMP_FAST_DEVICE_CHECK_REHEARSAL": "1",
        "DEVICE_CHECK_SECONDS": "560",
        "DEVICE_CHECK_PYTEST_K": "test_fused_alamp_raises or test_uint64",
    })
    env.pop("ALAMP_FAST_CUDA", None)
    before = set(os.listdir(ROOT))
    run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=700)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    doc = json.loads((out / "gpu_emulator.json").read_text())
    steps = {s["step"]: s for s in doc["device_check"]["steps"]}
    for name in ("versions", "warmup", "ftz_probe", "pytest_gpu", "bench"):
        assert steps[name]["status"] == "ok", (name, steps[name], log[-3000:])
    for name in ("memcheck", "racecheck"):
        assert steps[name]["status"] == "skipped" and "rehearsal" in steps[name]["note"]
    assert {s["step"] for s in doc["device_check"]["skipped"]} == {"memcheck", "racecheck"}
    assert doc["device_check"]["wall_s"] <= 600
    assert doc["steps"]["ftz_probe"]["ok"] and doc["steps"]["ftz_probe"]["ptx_clean"]
    assert doc["steps"]["versions"]["device"] == "alamp_fast CUDA emulator"
    kernels = {r["kernel"] for r in doc["results"]}
    assert {"top2_margin", "alamp+diversify", "kcenter_greedy", "top2_margin_streamed"} <= kernels
    assert doc["scale"] == "tiny"
    junit = (out / "logs" / "pytest_gpu.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit and "test_uint64" in junit
    # everything under $OUT: logs, the JSON; caches removed; nothing new in the checkout
    assert not (out / "cache").exists()
    assert set(os.listdir(ROOT)) == before
    assert "skipped: memcheck" in run.stdout
