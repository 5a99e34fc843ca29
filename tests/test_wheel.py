"""The built wheel ships the CUDA sources, and a fresh environment runs the kernels from it.

The wheel is built from a copy of the checkout's files (tracked and untracked-not-ignored,
as a clean clone would have them) with ``pip wheel --no-deps --no-build-isolation``, then
installed into a new venv whose only other packages are this environment's (a ``.pth`` line,
so nothing is downloaded and the editable checkout is not on the path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "alamp_fast" / "cuda" / "kernels"

pytestmark = pytest.mark.slow


def _checkout_files() -> list[str]:
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        return [f for f in out.stdout.split("\0") if f]
    skip = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache"}
    return [
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    ]


def _clean_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("ALAMP_FAST_KERNELS", None)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("clone")
    for rel in _checkout_files():
        path = ROOT / rel
        if path.is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / rel)
    out = tmp_path_factory.mktemp("wheelhouse")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        capture_output=True, text=True, env=_clean_env(), cwd=out,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (whl,) = out.glob("alamp_fast-*.whl")
    return whl


def test_wheel_holds_every_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.name for p in KERNELS.iterdir() if p.suffix in (".cu", ".cuh"))
    assert any(s.endswith(".cu") for s in sources) and "common.cuh" in sources
    missing = [s for s in sources if f"alamp_fast/cuda/kernels/{s}" not in names]
    assert not missing, f"the wheel lacks {missing}"
    for module in ("cuda/_kernels.py", "cuda/_nvrtc.py", "cli/cuda_warmup.py"):
        assert f"alamp_fast/{module}" in names
    # the emulator's C++ sources: it builds them on first use in the installed package
    for source in ("emu.h", "emu_ops.h", "runtime.cpp"):
        assert f"alamp_fast/cuda/emulate/{source}" in names


@pytest.fixture(scope="module")
def venv_python(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # this environment's packages (numpy, numba, ...) after the venv's own: no download
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "zz_parent_env.pth").write_text("\n".join(sorted(ours)) + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, env=_clean_env(), cwd=venv,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return python


def _run(python: Path, code: str, env_extra: dict | None = None, timeout: int = 600):
    env = _clean_env()
    env.update(env_extra or {})
    out = subprocess.run(
        [str(python), "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, cwd=python.parent, timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_installed_wheel_finds_and_compiles_its_kernels(venv_python):
    got = _run(venv_python, """
        import json
        import alamp_fast
        from alamp_fast.cuda import _kernels, _nvrtc
        info = {"package": alamp_fast.__file__, "kernels": str(_kernels.kernel_dir()),
                "sizes": {n: len(_kernels.source(n)) for n in _kernels.all_name_expressions()},
                "nvrtc": _nvrtc.available() is None}
        if info["nvrtc"]:
            out = _nvrtc.compile_program(_kernels.source("alamp"), "alamp.cu",
                                         _kernels.all_name_expressions()["alamp"],
                                         _kernels.compile_options("compute_90"))
            info["ptx_entries"] = out.image.count(b".entry")
        print(json.dumps(info))
    """)
    venv = venv_python.parents[1]
    assert Path(got["package"]).resolve().is_relative_to(venv.resolve()), got["package"]
    assert Path(got["kernels"]).resolve().is_relative_to(venv.resolve()), got["kernels"]
    assert all(size > 500 for size in got["sizes"].values()), got["sizes"]
    if got["nvrtc"]:
        assert got["ptx_entries"] == 2


def test_installed_wheel_runs_an_emulated_kernel(venv_python):
    has = _run(venv_python, """
        import importlib.util, json
        print(json.dumps(importlib.util.find_spec("alamp_fast.cuda.emulate") is not None))
    """)
    if not has:
        pytest.skip("the CUDA emulator (alamp_fast.cuda.emulate) is not in this checkout yet")
    got = _run(venv_python, """
        import json
        import numpy as np
        import alamp_fast as af
        rng = np.random.default_rng(5)
        P = rng.dirichlet(np.ones(7), 300).astype(np.float32)
        m, top = af.top2_margin(P, device="cuda")
        want_m, want_top = af.top2_margin(P)
        import cupy
        print(json.dumps({"margin": bool(np.array_equal(m, want_m)),
                          "top": bool(np.array_equal(top, want_top)),
                          "cupy": cupy.__name__, "type": type(m).__module__}))
    """, {"ALAMP_FAST_CUDA": "emulate"})
    assert got["margin"] and got["top"], got
