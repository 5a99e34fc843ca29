"""GPU row reductions: top-2 margin (+ fused alamp), margin, least confidence, entropy.

Kernels: ``kernels/rowwise.cu``. One pass over ``probs``; results equal the CPU kernels' (see
:mod:`alamp_fast.uncertainty`): margin and least confidence bit for bit, entropy to rounding.
CuPy arrays stay on their device. Host arrays (numpy, ``np.memmap``) are streamed through the
GPU in chunks (:mod:`alamp_fast.cuda._stream`), so a pool larger than device memory is scored
at copy speed with results identical to the in-memory pass.
"""

from __future__ import annotations

import os

import numpy as np

from alamp_fast import _validate
from alamp_fast import alamp as cpu_alamp
from alamp_fast import uncertainty as cpu_uncertainty
from alamp_fast.cuda import _checks, _instantiations, _kernels, _stream

__all__ = ["top2_margin", "margin", "entropy", "least_confidence", "top2_margin_alamp"]

MODE_TOP2, MODE_LEASTCONF, MODE_ENTROPY = (
    _instantiations.MODE_TOP2,
    _instantiations.MODE_LEASTCONF,
    _instantiations.MODE_ENTROPY,
)
_BLOCK = 256
# A row longer than this many vectors, in a pool too short to give every warp rows, is
# reduced by a whole block instead of a warp.
_BLOCK_ROW_VECTORS = 1024
# env override of the streaming chunk (rows), for the public API which has no such argument
CHUNK_ROWS_ENV = "ALAMP_FAST_CUDA_CHUNK_ROWS"


_expression = _instantiations.rowwise_expression


def name_expressions() -> list[str]:
    """Every instantiation :func:`_launch` can request (the CMake build lists the same)."""
    return _instantiations.rowwise()


def _choose_layout(n: int, n_vectors: int, layout: str | None) -> tuple[str, int]:
    if layout is None:
        few_rows = n < 64 * _kernels.sm_count()
        layout = "block" if n_vectors > _BLOCK_ROW_VECTORS and few_rows else "group"
    if layout == "block":
        return "block", _BLOCK
    if layout != "group":
        raise ValueError(f"layout must be 'group', 'block' or None, got {layout!r}")
    return "group", _kernels.lanes_per_row(n_vectors)


def _launch(P, mode, out, *, top=None, prev=None, score=None, first_bad, layout=None):
    """Enqueue one row pass over the device matrix ``P`` on the current stream."""
    n, C = P.shape
    if n == 0:
        return
    if C >= 1 << 31:
        raise NotImplementedError(f"rows of {C} classes exceed the GPU kernels' int32 columns")
    vec = _kernels.vector_width(P, C)
    kind, group = _choose_layout(n, C // vec, layout)
    fuse = prev is not None
    ptype = "double" if fuse and score.dtype == np.float64 else "float"
    expr = _expression(kind, _kernels.CTYPE[P.dtype], vec, mode, top is not None, fuse, ptype)
    kernel = _kernels.function("rowwise", expr)
    rows_per_block = 1 if kind == "block" else (_BLOCK // 32) * (32 // group)
    grid = _kernels.grid_size(n, rows_per_block, kernel, _BLOCK)
    # unused pointers get a valid dummy: the instantiation never touches them
    kernel(
        (grid,),
        (_BLOCK,),
        (
            P,
            np.int64(n),
            np.int32(C),
            np.int32(group),
            out,
            top if top is not None else out,
            prev if fuse else out,
            score if fuse else out,
            first_bad,
        ),
    )


def _out_dtype(dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _raise_bad_row(row_values: np.ndarray, row: int, mode: int):
    """The CPU's error for the first bad row (``_run_rowwise`` in alamp_fast.uncertainty)."""
    if mode == MODE_ENTROPY and np.isfinite(row_values).all():
        col = int(np.argmax(row_values < 0))
        raise ValueError(
            f"entropy needs non-negative probabilities; probs[{row}, {col}] = {row_values[col]!r}"
        )
    _checks.raise_non_finite_row(row_values, row, "probs")


def _raise_like_cpu_top2(row_values: np.ndarray, row: int) -> None:
    """Raise the CPU's error for row ``row`` of the probabilities if the CPU top-2 margin
    rejects it (an overflowing margin), naming the same row; return if the CPU accepts it."""
    try:
        cpu_uncertainty.top2_margin(np.ascontiguousarray(row_values)[None, :])
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith("probs[0]"):
            msg = f"probs[{row}]" + msg[len("probs[0]"):]
        raise ValueError(msg) from None


def _device_probs(probs):
    import cupy

    return cupy.ascontiguousarray(_checks.probs_matrix(probs))


def _run(probs, mode, *, want_top=False, prev_margin=None, chunk_rows=None, layout=None):
    """Validate, allocate, run on device or streamed input, raise the CPU's errors."""
    import cupy

    streamed = not _checks.is_device_array(probs)
    if streamed:
        P = _checks.host_float_matrix(probs)
    else:
        P = _device_probs(probs)
    n = P.shape[0]
    out_dtype = _out_dtype(P.dtype)
    out = cupy.empty(n, dtype=out_dtype)
    top = cupy.empty(n, dtype=np.int64) if want_top else None
    prev = score = None
    if prev_margin is not None:
        prev = _checks.float_array(prev_margin, "prev_margin", 1)
        if prev.shape[0] != n:
            raise ValueError(f"prev_margin has {prev.shape[0]} samples but margin has {n}")
        score_dtype = _validate.out_dtype(prev.dtype, out_dtype)
        prev = prev.astype(score_dtype, copy=False)
        score = cupy.empty(n, dtype=score_dtype)

    if not streamed:
        first_bad = _checks.first_bad_flags(2, n)
        _launch(P, mode, out, top=top, prev=prev, score=score, first_bad=first_bad, layout=layout)
        bad = first_bad.get()
    else:
        chunks = _plan(P, out, top, score, chunk_rows)
        flags = _checks.first_bad_flags(2 * max(len(chunks), 1), n).reshape(-1, 2)
        index = {start: k for k, (start, _) in enumerate(chunks)}

        def compute(rows, start, stop):
            _launch(
                rows,
                mode,
                out[start:stop],
                top=None if top is None else top[start:stop],
                prev=None if prev is None else prev[start:stop],
                score=None if score is None else score[start:stop],
                first_bad=flags[index[start]],
                layout=layout,
            )

        device = _stream.CupyDevice()
        try:
            _stream.stream_rows(P, chunks, device, compute)
        finally:
            device.close()
        # chunk-local rows back to global: the first chunk with a bad row holds the first one
        per_chunk = flags.get()
        bad = np.array([n, n], dtype=np.uint64)
        for k, (start, _) in enumerate(chunks):
            for f in (0, 1):
                if per_chunk[k, f] < n and bad[f] == n:
                    bad[f] = start + per_chunk[k, f]

    if bad[0] < n:
        row = int(bad[0])
        row_values = np.asarray(P[row]) if streamed else P[row].get()
        _raise_bad_row(row_values, row, mode)
    if mode == MODE_TOP2 and n and not bool(cupy.isfinite(out).all()):
        # finite rows whose top1 - top2 overflowed the output dtype: the CPU's verdict
        row = int(cupy.argmin(cupy.isfinite(out)))
        _raise_like_cpu_top2(np.asarray(P[row]) if streamed else P[row].get(), row)
    if prev is not None and bad[1] < n:
        # error path: the CPU function names the offending value
        _checks.cpu_must_raise(cpu_alamp.alamp_score.cpu_impl, prev.get(), out.get())
    return out, top, score


def _plan(P: np.ndarray, out, top, score, chunk_rows):
    import cupy

    if chunk_rows is None and os.environ.get(CHUNK_ROWS_ENV):
        chunk_rows = int(os.environ[CHUNK_ROWS_ENV])
    free, _ = cupy.cuda.runtime.memGetInfo()
    # the pool may hold freed blocks that are reusable too
    free += cupy.get_default_memory_pool().free_bytes()
    row_bytes = max(P.shape[1] * P.dtype.itemsize, 1)
    return _stream.plan_chunks(P.shape[0], row_bytes, free, chunk_rows=chunk_rows)


def top2_margin(probs, *, chunk_rows=None, layout=None):
    """GPU :func:`alamp_fast.top2_margin`: ``(margin, top_class)`` as CuPy arrays.

    ``probs`` is a CuPy array, or a host array (numpy, ``np.memmap``) streamed through the GPU
    in chunks of ``chunk_rows`` rows (default: from free device memory, or the environment
    variable ``ALAMP_FAST_CUDA_CHUNK_ROWS``). ``layout`` forces ``"group"`` (lanes per row)
    or ``"block"`` (a block per row) for tests; results do not depend on it.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> m, top = afc.top2_margin(cupy.asarray([[0.1, 0.7, 0.2]], dtype=cupy.float32))
    >>> m.get().round(6).tolist(), top.get().tolist()
    ([0.5], [1])
    """
    out, top, _ = _run(probs, MODE_TOP2, want_top=True, chunk_rows=chunk_rows, layout=layout)
    return out, top


def margin(probs, *, chunk_rows=None, layout=None):
    """GPU :func:`alamp_fast.margin` (the argmax is not written: 8 bytes per row saved)."""
    return _run(probs, MODE_TOP2, chunk_rows=chunk_rows, layout=layout)[0]


def least_confidence(probs, *, chunk_rows=None, layout=None):
    """GPU :func:`alamp_fast.least_confidence`."""
    return _run(probs, MODE_LEASTCONF, chunk_rows=chunk_rows, layout=layout)[0]


def entropy(probs, *, chunk_rows=None, layout=None):
    """GPU :func:`alamp_fast.entropy` (float64 accumulation; equal to rounding)."""
    return _run(probs, MODE_ENTROPY, chunk_rows=chunk_rows, layout=layout)[0]


def top2_margin_alamp(probs, prev_margin, *, chunk_rows=None, layout=None):
    """Margin, predicted class and alamp score in one pass over ``probs``.

    Equal to ``m, top = top2_margin(probs); score = alamp_score(prev_margin, m)`` bit for bit,
    without writing and re-reading the margins.

    Parameters
    ----------
    probs : (n_samples, n_classes) float16/32/64 CuPy array or host array (streamed)
    prev_margin : (n_samples,) float16/32/64, finite and >= 0
        The margins of the previous iteration's model.

    Returns
    -------
    margin, top_class, score : CuPy arrays
        ``score`` is float64 if ``probs`` or ``prev_margin`` is float64, else float32.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> P = cupy.asarray([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]], dtype=cupy.float32)
    >>> m, top, s = afc.top2_margin_alamp(P, cupy.asarray([0.9, 0.0], dtype=cupy.float32))
    >>> s.get().astype(float).round(6).tolist()
    [0.285714, 0.0]
    """
    out, top, score = _run(
        probs,
        MODE_TOP2,
        want_top=True,
        prev_margin=prev_margin,
        chunk_rows=chunk_rows,
        layout=layout,
    )
    return out, top, score
