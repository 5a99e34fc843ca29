"""Streaming host arrays larger than GPU memory through the GPU, copies overlapped with compute.

Pure Python: the planning (:func:`plan_chunks`) and the pipeline (:func:`stream_rows`) only talk
to a *device* object, so the logic is tested on the CPU with a fake device that defers every
asynchronous operation until something waits for it (``tests/cuda/test_gpu.py``): a missing wait
shows up there as wrong results. :class:`CupyDevice` is the real one.

The pipeline, per chunk ``k`` using buffer ``j = k % n_buffers``::

    host thread:   wait until the copy out of pinned[j] (chunk k - n_buffers) is done
                   copy rows of the host array into pinned[j]         (CPU memcpy, threads)
    copy stream:   wait until the kernel reading staged[j] is done
                   pinned[j] -> staged[j]                             (DMA over PCIe)
    compute stream: wait for that copy, run the kernel on staged[j]

so the CPU fills one pinned buffer while the DMA engine moves another and the kernel reads a
third stage: the slowest of the three sets the pace.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from alamp_fast._validate import check_int

# Largest chunk: the first copy of a pass is not overlapped with anything, so chunks stay far
# below the memory size (256 MiB ~ 5 ms at PCIe 5 speed).
MAX_CHUNK_BYTES = 256 << 20


def plan_chunks(
    n_rows: int,
    row_bytes: int,
    free_bytes: int,
    *,
    chunk_rows=None,
    n_buffers: int = 2,
    memory_fraction: float = 0.5,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> list[tuple[int, int]]:
    """Row ranges ``[(start, stop), ...]`` covering ``range(n_rows)`` in order.

    Parameters
    ----------
    n_rows : int
        Rows of the host array.
    row_bytes : int
        Device bytes one staged row takes (``n_columns * itemsize``).
    free_bytes : int
        Free device memory once the outputs are allocated.
    chunk_rows : int, optional
        Rows per chunk, overriding the choice from memory.
    n_buffers : int
        Staging buffers on the device (each holds one chunk).
    memory_fraction : float
        Share of ``free_bytes`` the staging buffers may take.
    max_chunk_bytes : int
        Cap on one chunk, so the pipeline fills quickly.

    Examples
    --------
    >>> plan_chunks(10, 4, 1000, chunk_rows=4)
    [(0, 4), (4, 8), (8, 10)]
    """
    if n_rows < 0:
        raise ValueError(f"n_rows={n_rows} must be >= 0")
    if row_bytes < 1:
        raise ValueError(f"row_bytes={row_bytes} must be >= 1")
    if n_buffers < 1:
        raise ValueError(f"n_buffers={n_buffers} must be >= 1")
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction={memory_fraction} must be in (0, 1]")
    if chunk_rows is not None:
        rows = check_int(chunk_rows, "chunk_rows")  # TypeError naming it, bools refused
        if rows < 1:
            raise ValueError(f"chunk_rows={rows} must be >= 1")
    else:
        by_memory = int(memory_fraction * max(free_bytes, 0)) // (n_buffers * row_bytes)
        rows = max(1, min(by_memory, max_chunk_bytes // row_bytes))
    if n_rows == 0:
        return []
    rows = min(rows, n_rows)
    return [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]


def stream_rows(host, chunks, device, compute, *, n_buffers: int = 2) -> None:
    """Run ``compute(staged_rows, start, stop)`` on the device for each chunk of ``host``.

    ``compute`` is launched on ``device.compute_stream`` and must only enqueue work there
    (kernels writing into outputs it owns). Returns when all of it has finished.

    Ordering, besides the per-chunk waits of the module docstring:

    * before its first copy, the copy stream waits for all work already queued on the compute
      stream: the memory pool hands out blocks freed by the caller (``del m``) as soon as they
      are freed on the host, while compute work queued earlier may still read them;
    * before each reuse of a staging buffer, the copy stream waits for the kernel reading it;
    * on an error (a failing host read, a failing launch) both streams are synchronised before
      the buffers are released, so no copy is still writing into freed memory.
    """
    if not chunks:
        return
    rows = max(stop - start for start, stop in chunks)
    shape = (rows, *host.shape[1:])
    n_buffers = min(n_buffers, len(chunks))
    pinned = [device.pinned(shape, host.dtype) for _ in range(n_buffers)]
    staged = [device.empty(shape, host.dtype) for _ in range(n_buffers)]
    copied = [None] * n_buffers  # copy out of pinned[j] finished
    consumed = [None] * n_buffers  # kernel reading staged[j] finished
    # the staging buffers may be blocks that earlier compute work still reads
    device.wait(device.copy_stream, device.record(device.compute_stream))
    try:
        for k, (start, stop) in enumerate(chunks):
            j = k % n_buffers
            m = stop - start
            if copied[j] is not None:
                device.host_wait(copied[j])
            device.host_copy(pinned[j][:m], host[start:stop])
            if consumed[j] is not None:
                device.wait(device.copy_stream, consumed[j])
            device.h2d(staged[j][:m], pinned[j][:m], device.copy_stream)
            copied[j] = device.record(device.copy_stream)
            device.wait(device.compute_stream, copied[j])
            device.launch(device.compute_stream, compute, staged[j][:m], start, stop)
            consumed[j] = device.record(device.compute_stream)
    except BaseException:
        # nothing may still read or write the buffers once they are released
        device.synchronize(device.copy_stream)
        device.synchronize(device.compute_stream)
        raise
    device.synchronize(device.compute_stream)


def parallel_copy(dst: np.ndarray, src, pool: ThreadPoolExecutor | None, parts: int) -> None:
    """``dst[...] = src`` split by rows over a thread pool (numpy releases the GIL to copy)."""
    n = dst.shape[0]
    if pool is None or parts <= 1 or n < 2 * parts:
        np.copyto(dst, src)
        return
    bounds = np.linspace(0, n, parts + 1).astype(int)
    futures = [
        pool.submit(np.copyto, dst[a:b], src[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]
    for f in futures:
        f.result()


class CupyDevice:
    """The :func:`stream_rows` device on the current CUDA device, through CuPy.

    Kernels run on the current stream (so results are ordered with the caller's later work);
    copies on a private non-blocking stream; host copies into pinned memory on
    ``copy_threads`` threads, since one thread's memcpy is slower than PCIe.
    """

    def __init__(self, copy_threads: int = 4):
        import cupy

        self._cupy = cupy
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        self.compute_stream = cupy.cuda.get_current_stream()
        self._threads = max(1, copy_threads)
        self._pool = ThreadPoolExecutor(self._threads) if self._threads > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def pinned(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        mem = self._cupy.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
        return np.frombuffer(mem, dtype, count).reshape(shape)

    def empty(self, shape, dtype):
        return self._cupy.empty(shape, dtype=dtype)

    def host_copy(self, dst, src) -> None:
        parallel_copy(dst, src, self._pool, self._threads)

    def h2d(self, dst, src, stream) -> None:
        dst.set(src, stream=stream)

    def record(self, stream):
        event = self._cupy.cuda.Event(disable_timing=True)
        event.record(stream)
        return event

    def wait(self, stream, event) -> None:
        stream.wait_event(event)

    def host_wait(self, event) -> None:
        event.synchronize()

    def launch(self, stream, fn, *args) -> None:
        with stream:
            fn(*args)

    def synchronize(self, stream) -> None:
        stream.synchronize()
