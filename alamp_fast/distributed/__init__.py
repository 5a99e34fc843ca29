"""Exact acquisition over sharded pools on Dask.

The public kernels of :mod:`alamp_fast` accept ``dask.array`` inputs chunked by rows
(:mod:`alamp_fast._dispatch` routes them to :data:`IMPLS`); every chunk is processed where it
lives by the same numpy (or, for CuPy chunks on GPU workers, CuPy) kernels as a single-process
call, and every result is identical to the single-process call on the concatenated pool.

* Scoring (:func:`~alamp_fast.top2_margin`, :func:`~alamp_fast.margin`,
  :func:`~alamp_fast.entropy`, :func:`~alamp_fast.least_confidence`,
  :func:`~alamp_fast.alamp_score`) is rowwise: it returns lazy dask arrays with the row chunks
  of the input, so scoring and selection fuse into one pass over the pool on the workers.
* Selection (:func:`~alamp_fast.select_top`, :func:`~alamp_fast.diversify`) returns numpy
  int64 indices. Every chunk sends only its candidates, at most ``b`` rows: what the same
  selection takes on the chunk alone, which holds every row of the chunk it takes on the pool
  (proof in :func:`alamp_fast.outofcore.class_candidates`). Candidate sets are merged up a
  tree of fan-in 8 the same way, and the last merge runs the core function on the survivors,
  kept in row order so that ties still go to the lower global index.
* :func:`~alamp_fast.kcenter_greedy` keeps the feature chunks and each chunk's running
  nearest distance on the workers (needs a ``distributed`` client); per step each chunk
  reports its farthest row (distance, index and the row's features), the client takes the
  argmax and sends the winning row, the next center, with the next step's tasks.

``exclude`` and ``labeled`` are global row indices (or masks), numpy or dask. Selections run
on the current Dask scheduler: the ``distributed`` client made by :func:`get_client` (or any
default client), else dask's local threads. Worker loss is survived by Dask's lineage
(lost chunks, running minima and candidates are recomputed from the graph, every task being a
pure function of its inputs); a task that kills its workers repeatedly ends the call with
``distributed.KilledWorker``. No selection is returned from partial results.

A chunk's scores are copied to the host for the candidate step (4-8 bytes a row; the
``n_samples x n_classes`` scoring stays on the GPU), and k-center copies CuPy feature chunks to
the host once, where the numba step kernel runs.

See ``docs/distributed.md`` for the design, the bytes crossing the network and the scaling.

The package, one module per concern (this ``__init__`` only registers :data:`IMPLS`):

* :mod:`~alamp_fast.distributed.client` -- :func:`get_client`, ``--scheduler``
  (:func:`add_scheduler_argument`), the current client, and :func:`from_memmap`;
* :mod:`~alamp_fast.distributed.scoring` -- the rowwise kernels, lazily per chunk;
* :mod:`~alamp_fast.distributed.topk` -- sharded :func:`~alamp_fast.select_top`;
* :mod:`~alamp_fast.distributed.diversify` -- sharded Algorithm 1;
* :mod:`~alamp_fast.distributed.kcenter` -- sharded k-center greedy;
* ``_chunks`` -- what they share: chunked inputs, the kernel lock, the candidate tree.

Pools larger than memory on one machine, without Dask, are :mod:`alamp_fast.outofcore`'s
(whose per-block helpers every chunk task here runs).
"""

from __future__ import annotations

from alamp_fast.distributed.client import (
    _current_client,  # noqa: F401  (importable from here, as before the package split)
    _FileRows,  # noqa: F401  (this class's module path before the split)
    add_scheduler_argument,
    from_memmap,
    get_client,
)
from alamp_fast.distributed.diversify import _diversify
from alamp_fast.distributed.kcenter import _kcenter_greedy
from alamp_fast.distributed.scoring import _alamp_score, _rowwise, _top2_margin
from alamp_fast.distributed.topk import _select_top
from alamp_fast.uncertainty import entropy, least_confidence, margin

__all__ = ["IMPLS", "get_client", "add_scheduler_argument", "from_memmap"]

IMPLS = {
    "top2_margin": _top2_margin,
    "margin": _rowwise(margin, "margin"),
    "entropy": _rowwise(entropy, "entropy"),
    "least_confidence": _rowwise(least_confidence, "least_confidence"),
    "alamp_score": _alamp_score,
    "select_top": _select_top,
    "diversify": _diversify,
    "kcenter_greedy": _kcenter_greedy,
}
