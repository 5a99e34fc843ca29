"""Every kernel instantiation the launchers can ask for: one list, by source file.

A leaf module (numpy only): the launchers build their name expressions with the helpers here,
the loader (:mod:`alamp_fast.cuda._kernels`) compiles :func:`all_name_expressions` file by
file, and ``tests/cuda/test_cuda_build.py`` checks the list against the ``ALAMP_FAST_INSTANTIATE``
blocks of the ``.cu`` files that nvcc compiles.
"""

from __future__ import annotations

import numpy as np

# C++ spelling of the element type of each supported dtype (float16 travels as its bits)
CTYPE = {
    np.dtype(np.float16): "f16bits",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

# most bytes one thread loads at once
MAX_VECTOR_BYTES = 16

# rowwise.cu modes
MODE_TOP2, MODE_LEASTCONF, MODE_ENTROPY = 0, 1, 2

# C++ spelling of the score types make_keys takes: floats, and int64 for integer scores
SCORE_CTYPE = {**CTYPE, np.dtype(np.int64): "long long"}


def _vector_widths(dtype: np.dtype):
    vec = MAX_VECTOR_BYTES // dtype.itemsize
    while vec >= 1:
        yield vec
        vec //= 2


def rowwise_expression(layout, ctype, vec, mode, top, fuse, ptype) -> str:
    b = {True: "true", False: "false"}
    return f"rows_{layout}<{ctype}, {vec}, {mode}, {b[top]}, {b[fuse]}, {ptype}>"


def rowwise() -> list[str]:
    """rowwise.cu: (mode, write top class, fused alamp, score type) per dtype, width, layout."""
    combos = [
        (MODE_TOP2, True, False, "float"),
        (MODE_TOP2, False, False, "float"),
        (MODE_TOP2, True, True, "float"),
        (MODE_TOP2, True, True, "double"),
        (MODE_LEASTCONF, False, False, "float"),
        (MODE_ENTROPY, False, False, "float"),
    ]
    out = []
    for dtype, ctype in CTYPE.items():
        for vec in _vector_widths(dtype):
            for layout in ("group", "block"):
                out += [rowwise_expression(layout, ctype, vec, *c) for c in combos]
    return out


def alamp() -> list[str]:
    return ["alamp_score_kernel<float>", "alamp_score_kernel<double>"]


def key_ctype(dtype) -> str:
    """Order-key type: 32-bit for float16/32 scores and keys, 64-bit for float64/int64."""
    return "unsigned int" if np.dtype(dtype).itemsize < 8 else "unsigned long long"


def select() -> list[str]:
    out = [
        f"make_keys<{SCORE_CTYPE[np.dtype(d)]}, {key_ctype(d)}>"
        for d in (np.float16, np.float32, np.float64, np.int64)
    ]
    for kt in ("unsigned int", "unsigned long long"):
        out += [f"radix_hist<{kt}>", f"radix_collect<{kt}>"]
    return out + ["radix_pick"]


def kcenter() -> list[str]:
    out = []
    for dtype, ctype in CTYPE.items():
        for vec in _vector_widths(dtype):
            out += [
                f"kcenter_step<{ctype}, {vec}, true>",
                f"kcenter_step<{ctype}, {vec}, false>",
                f"dist_to_rows<{ctype}, {vec}>",
            ]
    return out


def all_name_expressions() -> dict[str, list[str]]:
    """Every instantiation, by source file (``kernels/<file>.cu``)."""
    return {"rowwise": rowwise(), "alamp": alamp(), "select": select(), "kcenter": kcenter()}
