"""Connecting to a Dask cluster, and pools on disk that the workers read themselves."""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np

from alamp_fast import outofcore as _ooc

__all__ = ["add_scheduler_argument", "from_memmap", "get_client"]


def get_client(address: str | None = None, *, timeout: float = 30, **cluster_kwargs):
    """A ``distributed.Client`` on the scheduler at ``address``, or on a new local cluster.

    The client becomes Dask's default scheduler, so :mod:`alamp_fast` calls on dask arrays
    run there. Close it (``client.close()``, or use it as a context manager) when done; a local
    cluster started here closes with it.

    Parameters
    ----------
    address : str, optional
        ``tcp://host:port`` (or ``host:port``) of a running scheduler, as given to
        ``--scheduler``. None starts a ``LocalCluster`` of worker processes on this machine.
    timeout : float, default 30
        Seconds to wait for the scheduler.
    **cluster_kwargs
        Passed to ``LocalCluster`` when ``address`` is None (``n_workers``,
        ``threads_per_worker``, ``memory_limit``, ...). For a multi-GPU node pass
        a ``dask_cuda.LocalCUDACluster``'s address instead.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ValueError
        The scheduler at ``address`` cannot be reached in ``timeout`` seconds.

    Examples
    --------
    >>> from alamp_fast.distributed import get_client
    >>> with get_client(n_workers=2, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    2
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "a Dask cluster needs the 'distributed' package: pip install 'alamp_fast[dask]'"
        ) from exc
    if address is None:
        cluster_kwargs.setdefault("processes", True)
        cluster_kwargs.setdefault("dashboard_address", None)
        return Client(timeout=timeout, **cluster_kwargs)
    if cluster_kwargs:
        raise TypeError(
            f"cluster options {sorted(cluster_kwargs)} only apply to a local cluster, "
            f"not to the scheduler at {address!r}"
        )
    try:
        return Client(address, timeout=timeout)
    except OSError as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout} s: {exc}"
        ) from exc


def add_scheduler_argument(parser) -> None:
    """Add ``--scheduler ADDRESS`` to an argparse parser (``args.scheduler``, None = local).

    A command that got one passes it to :func:`get_client` and hands dask arrays to the
    :mod:`alamp_fast` functions; without it, it runs on numpy on this machine.
    """
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run scoring and selection on the Dask cluster whose scheduler listens at ADDRESS "
        "(tcp://host:port); default: this machine, without Dask",
    )


def _current_client():
    """The default ``distributed`` client, or None (no cluster: run in this process)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


class _FileRows:
    """A C-ordered array in a file, read by row ranges; pickles as its path, not its data."""

    def __init__(self, path: str, offset: int, shape: tuple, dtype: np.dtype):
        self.path, self.offset = path, offset
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        start, stop, step = key[0].indices(self.shape[0])
        out = np.empty((max(0, stop - start),) + self.shape[1:], dtype=self.dtype)
        _ooc.read_rows(self.path, self.offset, start, out)
        return out[(slice(None, None, step),) + key[1:]]


def from_memmap(pool, chunk_rows: int | None = None):
    """A dask array over a file-backed ``np.memmap`` whose chunks the workers read themselves.

    ``da.from_array(memmap)`` would pickle the whole array into the graph; here a task only
    holds the file's path, so the workers (which must see the same path: one machine, or a
    shared filesystem) read their rows in parallel and only candidates cross the network.

    Parameters
    ----------
    pool : np.memmap
        A whole C-ordered memmap, e.g. ``np.load(path, mmap_mode="r")``.
    chunk_rows : int, optional
        Rows per chunk; default about 64 MiB of the pool per chunk.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast.distributed import from_memmap
    >>> path = os.path.join(tempfile.mkdtemp(), "pool.npy")
    >>> np.save(path, np.random.default_rng(0).random((1000, 4), dtype=np.float32))
    >>> P = from_memmap(np.load(path, mmap_mode="r"), chunk_rows=300)
    >>> P.chunks[0]
    (300, 300, 300, 100)
    >>> bool((af.margin(P).compute() == af.margin(np.load(path))).all())
    True
    """
    source = _ooc.file_source(pool)
    if source is None:
        raise TypeError(
            f"from_memmap needs a whole, C-ordered, file-backed np.memmap (not a slice or a "
            f"copy-on-write map), got {type(pool).__name__}; use dask.array.from_array for "
            "in-memory arrays"
        )
    rows = _ooc.block_rows_for(chunk_rows, _ooc.row_bytes(pool))
    path, offset = source
    reader = _FileRows(path, offset, tuple(pool.shape), pool.dtype)
    stat = os.stat(path)
    token = dask.base.tokenize(path, offset, pool.shape, pool.dtype.str, stat.st_mtime_ns, rows)
    return da.from_array(
        reader,
        chunks=(rows,) + tuple(pool.shape[1:]),
        name="alamp-pool-" + token,
        meta=np.empty((0,) * pool.ndim, dtype=pool.dtype),
    )
