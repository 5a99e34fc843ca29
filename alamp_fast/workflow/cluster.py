"""A round's work on a Dask cluster that loses workers: retried, else :class:`ClusterError`."""

from __future__ import annotations

import contextlib

#: Attempts of a round's work on a Dask cluster that loses workers (see _retry_on_cluster).
CLUSTER_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The Dask cluster failed a round's work on every attempt; nothing was written."""


def _cluster_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the cluster failing (a lost worker or connection), not our code."""
    import asyncio
    import concurrent.futures

    if isinstance(exc, (OSError, TimeoutError, asyncio.CancelledError,
                        concurrent.futures.CancelledError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"KilledWorker", "FutureCancelledError", "CommClosedError",
                         "CancelledError", "StreamClosedError"})


def _retry_on_cluster(client, fresh_strategy, query):
    """``(strategy, query(strategy))``, retried when the cluster loses a worker.

    Each attempt starts from a fresh strategy with the committed state (``fresh_strategy()``)
    and scatters the
    pool again (chunks scattered to a worker that died are gone for good, Dask cannot
    recompute them), so a retried round is the round an undisturbed cluster makes. After
    :data:`CLUSTER_ATTEMPTS` failures the round ends with :class:`ClusterError`, before
    anything is written.
    """
    last = None
    for attempt in range(CLUSTER_ATTEMPTS):
        strategy = fresh_strategy()
        try:
            return strategy, query(strategy)
        except Exception as exc:
            if not _cluster_failure(exc):
                raise
            last = exc
            if attempt + 1 < CLUSTER_ATTEMPTS:
                with contextlib.suppress(Exception):  # a restarted worker, if any comes back
                    client.wait_for_workers(1, timeout=30)
    text = " ".join(str(last).split()) or "no details"
    raise ClusterError(
        f"the Dask cluster failed during select {CLUSTER_ATTEMPTS} times "
        f"({type(last).__name__}: {text}); nothing was written, the project is as it was "
        "(re-run select when the cluster is healthy)"
    ) from last
