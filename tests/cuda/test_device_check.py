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

ROOT = Path(__file__).resolve().parents[2]
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


def test_readme_gpu_table_is_generated_from_device_results(tmp_path, monkeypatch):
    """make_readme.py builds the GPU table from benchmarks/results/gpu_<card>.json (here a
    document of the structure device_check.sh writes, with made-up test values), ignores the
    emulator's rehearsal output, and leaves the README alone when no device result exists."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import make_readme
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(make_readme, "RESULTS", tmp_path)
    monkeypatch.setattr(make_readme, "TABLES", {})
    readme = "# x\n<!-- gpu:start -->\nnot measured yet\n<!-- gpu:end -->\n"
    assert make_readme.render(readme) == readme
    row = {"kernel": "top2_margin", "provider": "alamp_fast", "reference": "torch.topk",
           "sizes": {"n": 10, "C": 100, "dtype": "float32"}, "min_s": 0.002, "gb_per_s": 2.0,
           "fraction_of_copy_bandwidth": 0.5, "speedup_vs_reference": 3.0}
    doc = {"card": "h100", "commit": "abcdef1234567", "gpu": {"name": "NVIDIA H100 80GB HBM3",
           "cuda_driver": 13000, "cuda_runtime": 13000}, "copy_bandwidth_gb_per_s": 4.0,
           "device_check": {"wall_s": 500, "steps": [{"step": "pytest_gpu", "status": "ok"}]},
           "results": [row], "targets": {"t": {"value": 0.5, "target": ">= 0.85", "met": False}}}
    (tmp_path / "gpu_emulator.json").write_text(json.dumps({**doc, "card": "emulator"}))
    assert make_readme.render(readme) == readme
    (tmp_path / "gpu_h100.json").write_text(json.dumps(doc))
    got = make_readme.render(readme)
    assert "**NVIDIA H100 80GB HBM3**" in got and "benchmarks/results/gpu_h100.json" in got
    assert "| top2_margin | n=10, C=100 (float32) | alamp_fast | 2.000 | 2.0 | 50% | 3.0x vs " \
           "torch.topk |" in got
    assert "pytest_gpu ok" in got and "not met" in got and "not measured yet" not in got
