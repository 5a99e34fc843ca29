"""Checks of alamp_fast/cuda/kernels/*.cu that need no GPU.

* nvcc through CMake (sm_80 and sm_90): the sources build to machine code for both
  architectures (skipped without nvcc or cmake);
* one list of instantiations: the ``ALAMP_FAST_INSTANTIATE`` blocks nvcc compiles equal the
  name expressions the Python launchers ask NVRTC for.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("cmake") is None,
    reason="nvcc or cmake not found: CUDA compile check skipped",
)
def test_kernels_compile_with_nvcc_for_sm80_and_sm90(tmp_path):
    build = tmp_path / "cuda"
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build)], capture_output=True, text=True
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(
        ["cmake", "--build", str(build), "-j", "2", "--verbose"], capture_output=True, text=True
    )
    assert compiled.returncode == 0, compiled.stdout[-5000:] + compiled.stderr[-5000:]
    log = compiled.stdout
    for arch in ("sm_80", "sm_90"):
        assert arch in log, f"{arch} missing from the nvcc command lines"
    objects = list(build.rglob("*.o")) + list(build.rglob("*.obj"))
    names = {p.name.split(".")[0] for p in objects}
    for cu in (ROOT / "alamp_fast" / "cuda" / "kernels").glob("*.cu"):
        assert cu.stem in names, f"{cu.name} produced no object file"


_INSTANTIATION = re.compile(r"template\s+__global__\s+void\s+(\w+)\s*<([^()]*?)>\s*\(")
_KERNEL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(")


def instantiations_in_source(cu: Path) -> list[str]:
    """The ``template __global__ void name<args>(...)`` lines of the ``ALAMP_FAST_INSTANTIATE``
    block of ``cu``, macros expanded by the C preprocessor, spelled as name expressions."""
    out = subprocess.run(
        ["cpp", "-P", "-x", "c++", "-DALAMP_FAST_INSTANTIATE", f"-I{cu.parent}", str(cu)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    found = [f"{name}<{args}>" for name, args in _INSTANTIATION.findall(text)]
    # kernels that are not templates are their own (only) instantiation
    for m in _KERNEL.finditer(text):
        before = text[: m.start()]
        head = before[max(before.rfind("}"), before.rfind(";")) + 1 :]
        if "template" not in head:
            found.append(m.group(1))
    return found


def _norm(expr: str) -> str:
    return re.sub(r"\s+", " ", expr.replace(" ,", ",")).replace("< ", "<").replace(" >", ">")


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor (cpp) found")
def test_cpp_instantiation_blocks_equal_the_python_name_expressions():
    """One list of instantiations: what nvcc compiles (CMakeLists.txt) is exactly what the
    launchers can ask NVRTC for; a kernel added on one side only fails here."""
    from alamp_fast.cuda import _kernels

    folder = _kernels.kernel_dir()
    python = _kernels.all_name_expressions()
    assert set(python) == {cu.stem for cu in folder.glob("*.cu")}
    for name, expressions in python.items():
        in_cpp = [_norm(e) for e in instantiations_in_source(folder / f"{name}.cu")]
        in_py = [_norm(e) for e in expressions]
        assert len(in_py) == len(set(in_py)), f"{name}: duplicate name expressions"
        assert sorted(in_cpp) == sorted(in_py), (
            f"{name}.cu: only in C++: {sorted(set(in_cpp) - set(in_py))}; "
            f"only in Python: {sorted(set(in_py) - set(in_cpp))}"
        )
