"""Annotation rounds over a real pool, with crash-safe, resumable state.

Simulation (:mod:`alamp_fast.al.protocol`) answers "which strategy is best"; this package is the
other half, a team labeling a real unlabeled pool: each round, :meth:`Project.select` trains the
classifier on the labels received so far and writes the next batch to annotate;
:meth:`Project.label` takes the annotations back; :meth:`Project.status` reports progress.
The same operations are the ``alamp-fast init / select / label / status`` commands
(:mod:`alamp_fast.cli.workflow`); ``docs/workflow.md`` is the user guide.

The project directory
---------------------
``state.npz``
    The whole state, one file: the project id, settings, class names, the pool reference
    (path, row count, sha256 of the features, the file's signature when the hash last matched,
    where the sample ids come from), the sample ids, every label
    received (sample row, class, round, time, relabel flag), every batch selected (rows,
    scores, margins, predicted classes), the strategy's state (alamp's previous margin and top
    class per pool row, via :meth:`~alamp_fast.al.strategies.Strategy.state_dict`) and the history
    of rounds and ingests. A numpy ``.npz`` without pickles; the JSON part is the ``meta`` entry.
``batches/round-NNN.csv``
    The batch of round NNN, derived from ``state.npz`` (rewritten by ``select`` if missing).
``project.json``
    The project's identity (its id, creation time, pool): a ``state.npz`` whose id differs,
    another project's copied in, is refused (:class:`ForeignStateError`).
``lock``
    Who holds the project (pid, host, command, start time) while an operation runs.

Crash safety
------------
Every write goes to a temporary file in the same directory (created ``O_EXCL | O_NOFOLLOW``:
never through a planted symlink), is fsynced, renamed over the target (atomic on POSIX) and
the directory is fsynced. The state is a *single* file, so a
commit is a single rename: a crash at any point leaves the old state or the new one, never a
mix. The batch CSV is written after the state commit and is a pure function of the state; if a
crash loses it, the next ``select`` writes it again, whatever its options (``--budget`` of
the same size, ``--allow-partial``): a round without any label is never followed by another,
so every round is delivered once. :meth:`Project.export_round` rewrites any round's CSV. Labels are idempotent: ingesting a file twice, e.g. again after a crash,
adds nothing the second time. A process killed at any point can therefore be resumed by
re-running the command it was running.

For the fault-injection tests, ``ALAMP_FAST_FAULT=<point>`` (one of :data:`FAULT_POINTS`) makes
the process abort with ``os._exit(FAULT_EXIT_CODE)`` at that point: no ``finally`` block, no
flush, as if it were killed.

Two processes on one project are refused: each operation takes an exclusive ``flock`` on the
project directory (deleting the ``lock`` file lets nobody in) and writes its pid to ``lock``.
The kernel drops the lock when its process dies, so a record left by a killed process is
stale: the next operation takes it over, with a note, and :meth:`Project.status` reports and
clears it.

The pool file is read once per round, block by block, after its size was checked against its
``.npy`` header (a truncated file fails with one line, never a wrong row or a SIGBUS), and
normalised while read. On a Dask cluster, a round whose workers are lost is retried
(:data:`CLUSTER_ATTEMPTS`), else :class:`ClusterError` with nothing written.

Reproducibility
---------------
With the same labels, a project makes the picks of :func:`alamp_fast.al.protocol.simulate` with
the same ``seed`` and ``runs=1``: the first round is ``simulate``'s random initial batch
(``init`` rows), later rounds train ``make_classifier(classifier, random_state=...)`` on the
labeled rows in the order they were selected and ask the strategy, whose state is restored
from the previous round. Differences: ``cost_sensitive=None`` ("auto") looks at the imbalance
of the labels received so far (the pool's true labels are unknown), and while fewer than two
classes are labeled a round draws a random batch (``simulate`` refuses such an initial batch).

Pools that grow
---------------
Rows may be *appended* to the pool file between rounds: the first ``n`` rows must be unchanged
(same ids, same features: sha256), the new rows get ids from the same source. A new row has no
previous margin, so alamp uses the *margin fallback* of :mod:`alamp_fast.al.strategies` for it:
its previous certainty is taken as 1.0 (fully certain), its score is ``(1 - m) / (1 + m)``,
which ranks new rows among themselves exactly as margin sampling does. Removing, reordering or
editing rows is refused (:class:`PoolChangedError`).

On a Dask cluster
-----------------
``select(scheduler="tcp://host:8786")`` (``alamp-fast select --scheduler``) computes the pool
probabilities and runs the strategy on that cluster, as ``simulate`` does (see
:mod:`alamp_fast.al.protocol`): the pool features are sent to the workers as row chunks, the
classifier is fitted here on the labeled rows and shipped once, and the batch is the one
``select`` makes without a scheduler. Only the batch's scores, margins and predicted classes
come back, besides the candidates and alamp's state.

The modules
-----------
:mod:`~alamp_fast.workflow.project` the :class:`Project` API, delegating to:
:mod:`~alamp_fast.workflow.create` (``init``), :mod:`~alamp_fast.workflow.select` (a round:
the pool scored in one call), :mod:`~alamp_fast.workflow.labels` and
:mod:`~alamp_fast.workflow.records` (``label``: reading and validating annotations),
:mod:`~alamp_fast.workflow.status`, :mod:`~alamp_fast.workflow.export` (batch CSVs, label
exports, Label Studio); beneath them :mod:`~alamp_fast.workflow.state` (``state.npz`` and the
identity file), :mod:`~alamp_fast.workflow.pool` (reading and checking the pool file),
:mod:`~alamp_fast.workflow.lock`, :mod:`~alamp_fast.workflow.storage` (atomic writes, fault
points), :mod:`~alamp_fast.workflow.csvfmt`, :mod:`~alamp_fast.workflow.cluster` (Dask retries)
and :mod:`~alamp_fast.workflow.errors`. The names below are this package's API; the modules'
own names are internal.
"""

from __future__ import annotations

from alamp_fast.workflow.cluster import CLUSTER_ATTEMPTS as CLUSTER_ATTEMPTS
from alamp_fast.workflow.cluster import ClusterError
from alamp_fast.workflow.errors import CLI_MESSAGES as CLI_MESSAGES
from alamp_fast.workflow.errors import (
    ForeignStateError,
    OptionError,
    PoolChangedError,
    ProjectLockedError,
)
from alamp_fast.workflow.export import BATCH_COLUMNS as BATCH_COLUMNS
from alamp_fast.workflow.export import Batch
from alamp_fast.workflow.labels import LabelReport
from alamp_fast.workflow.project import Project
from alamp_fast.workflow.state import FORMAT_VERSION as FORMAT_VERSION
from alamp_fast.workflow.storage import BATCH_DIR as BATCH_DIR
from alamp_fast.workflow.storage import FAULT_ENV, FAULT_EXIT_CODE, FAULT_POINTS
from alamp_fast.workflow.storage import IDENTITY_FILE as IDENTITY_FILE
from alamp_fast.workflow.storage import LOCK_FILE as LOCK_FILE
from alamp_fast.workflow.storage import STATE_FILE as STATE_FILE

# Besides __all__ (the same list as the former single module), its other public names stay
# importable from here: the project directory's file names, the state's format, the batch
# CSV's columns, the CLI message switch and the Dask retry count (the "as" re-exports above).

__all__ = [
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "FAULT_POINTS",
    "Batch",
    "LabelReport",
    "ClusterError",
    "ForeignStateError",
    "OptionError",
    "PoolChangedError",
    "Project",
    "ProjectLockedError",
]
