"""The :class:`Project` API (init, select, label, status, export), delegating to its modules."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from alamp_fast.workflow import create as _create
from alamp_fast.workflow import export as _export
from alamp_fast.workflow import labels as _labels
from alamp_fast.workflow import pool as _pool
from alamp_fast.workflow import select as _select
from alamp_fast.workflow import status as _status
from alamp_fast.workflow.errors import _check_positive_int
from alamp_fast.workflow.export import Batch, _batch_from_state
from alamp_fast.workflow.labels import LabelReport
from alamp_fast.workflow.lock import _ProjectLock
from alamp_fast.workflow.state import _State
from alamp_fast.workflow.storage import _check_fault_env, _remove_stale_temps


class Project:
    """An annotation project: a pool, the labels received, the strategy's memory, the rounds.

    Create one with :meth:`init`, reopen it with :meth:`open`. Every method re-reads the state
    from disk and every change is committed atomically under the project lock, so several
    :class:`Project` objects (or processes, one at a time) may work on the same directory.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> d = tempfile.mkdtemp()
    >>> X = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(3, 1, (40, 5))])
    >>> np.save(os.path.join(d, "pool.npy"), X.astype(np.float32))
    >>> truth = ["cat"] * 40 + ["dog"] * 40                 # the annotators' answers
    >>> proj = Project.init(os.path.join(d, "proj"), os.path.join(d, "pool.npy"),
    ...                     classes=["cat", "dog"], strategy="alamp", budget=10,
    ...                     classifier="logreg")
    >>> for _ in range(3):
    ...     batch = proj.select()                           # writes batches/round-NNN.csv
    ...     _ = proj.label({i: truth[int(i)] for i in batch.ids})
    >>> s = proj.status(cv=0)
    >>> s["rounds"], s["n_labeled"], sum(s["class_counts"].values())
    (3, 30, 30)
    """

    def __init__(self, path: Path, state: _State, pool: str | None = None):
        self.path = path
        self._state = state
        self._pool_override = None if pool is None else os.path.abspath(os.fspath(pool))
        self.notes: list[str] = []

    def __repr__(self) -> str:
        s = self._state.meta["settings"]
        return (
            f"Project({str(self.path)!r}, strategy={s['strategy']!r}, "
            f"rounds={self._state.n_rounds}, labeled={int((self.labels_array() >= 0).sum())})"
        )

    # --- creation

    @classmethod
    def init(
        cls,
        path,
        pool,
        *,
        classes=None,
        ids=None,
        id_column: str | None = None,
        strategy: str = "alamp",
        budget: int = 100,
        init: int | None = None,
        classifier: str = "linear-svc",
        cost_sensitive: bool | None = None,
        seed: int = 0,
        normalize: bool = True,
        strategy_kwargs: dict | None = None,
    ) -> Project:
        """Create a project directory over a pool of features.

        Parameters
        ----------
        path : str or PathLike
            The project directory (created; must not hold a project already).
        pool : str or PathLike
            Pool features: ``.npz`` (quantized ``Xq``/``scale``/``zero_point``, or ``X``) or
            ``.npy``; labels in the file, if any, are ignored. The project stores its absolute
            path and the sha256 of its features.
        classes : sequence of str, optional
            The class names annotators may use. Default: the ``classes`` array of an ``.npz``
            pool.
        ids : str or PathLike, optional
            A file of sample ids, one per pool row: text (one per line) or ``.csv`` (column
            ``id_column``, default ``"id"``). Without it, ``id_column`` names an array of the
            ``.npz`` pool (e.g. ``"paths"``), and without either the ids are the row numbers
            ``"0"``, ``"1"``, ...
        id_column : str, optional
            See ``ids``.
        strategy : str
            A name of :data:`alamp_fast.al.strategies.STRATEGIES`.
        budget : int
            Samples per round.
        init : int, optional
            Size of the first, random batch (default: ``budget``).
        classifier : str
            A name of :data:`alamp_fast.al.classifiers.CLASSIFIERS`.
        cost_sensitive : bool, optional
            ``class_weight="balanced"``; None: on when the labels so far have ir >= 0.1.
        seed : int
            The project's seed (see :mod:`alamp_fast.workflow`: it matches ``simulate``'s).
        normalize : bool
            L2-normalise the pool rows (as ``alamp-fast simulate`` does).
        strategy_kwargs : dict, optional
            Passed to :func:`~alamp_fast.al.strategies.get_strategy` (e.g. ``certainty``);
            JSON values only.

        Returns
        -------
        Project
        """
        return _create.create(
            cls, path, pool, classes=classes, ids=ids, id_column=id_column, strategy=strategy,
            budget=budget, init=init, classifier=classifier, cost_sensitive=cost_sensitive,
            seed=seed, normalize=normalize, strategy_kwargs=strategy_kwargs,
        )

    @classmethod
    def open(cls, path, *, pool=None) -> Project:
        """Open an existing project.

        Parameters
        ----------
        path : str or PathLike
            The project directory.
        pool : str or PathLike, optional
            A new location of the pool file (after a move); it must hold the same features.
            The next :meth:`select` records it.
        """
        _check_fault_env()
        path = Path(os.path.abspath(os.fspath(path)))
        return cls(path, _State.read(path), pool)

    # --- reading

    def _reload(self) -> _State:
        self._state = _State.read(self.path)
        return self._state

    @property
    def classes(self) -> list[str]:
        """The class names, in code order."""
        return list(self._state.meta["classes"])

    @property
    def settings(self) -> dict:
        """Strategy, budget, classifier and the other settings of :meth:`init`."""
        return dict(self._state.meta["settings"])

    @property
    def rounds(self) -> int:
        """Number of rounds selected so far."""
        return self._state.n_rounds

    def labels_array(self) -> np.ndarray:
        """Class code per pool row (as of the last select), -1 where unlabeled."""
        return self._state.current_labels()

    def labels(self) -> list[dict]:
        """Every label received, in order: id, label, round, time (UTC ISO), relabel."""
        st = self._state
        classes = st.meta["classes"]
        return [
            {
                "id": str(st.ids[r]),
                "label": classes[c],
                "round": int(k),
                "time": datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(),
                "relabel": bool(x),
            }
            for r, c, k, t, x in zip(
                st.labels["row"].tolist(),
                st.labels["cls"].tolist(),
                st.labels["round"].tolist(),
                st.labels["time"].tolist(),
                st.labels["relabel"].tolist(),
                strict=True,
            )
        ]

    def batch(self, round_no: int) -> Batch:
        """The batch of round ``round_no`` (1-based)."""
        st = self._state
        if not 1 <= round_no <= st.n_rounds:
            raise ValueError(
                f"round {round_no} does not exist; the project has {st.n_rounds} round(s)"
            )
        return _batch_from_state(self.path, st, round_no)

    # --- the lock

    def _lock(self, command: str) -> _ProjectLock:
        _check_fault_env()
        return _ProjectLock(self.path, command)

    def _enter(self, lock: _ProjectLock) -> _State:
        # A fresh copy from disk: an operation edits it and publishes it (self._state) only
        # once committed, so a failed operation leaves this object as it was.
        note = lock.stale_note()
        self.notes = [note] if note else []
        _remove_stale_temps(self.path)
        return _State.read(self.path)

    # --- the pool

    def _pool(
        self, st: _State, normalize: bool = False, features: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, dict]:
        """Features and ids of the pool file, checked against the state; the updated pool meta
        (:func:`alamp_fast.workflow.pool.checked_pool`)."""
        return _pool.checked_pool(st, self._pool_override, normalize, features)

    def check_pool(self) -> None:
        """Read the pool file and check it against the project (raises as :meth:`select`)."""
        self._pool(self._reload())

    # --- export

    def label_table(self) -> dict[str, np.ndarray]:
        """Every labeled sample: ``id``, ``label`` (current), ``round``, ``score``.

        ``round`` is the last round whose batch held the sample (0: labeled without being
        asked for), ``score`` the strategy's acquisition score of the sample in that round
        (NaN for random picks and unrequested labels). Rows are in pool order.
        """
        return _export.label_table(self._reload())

    def export_labels(self, out, *, format: str | None = None) -> int:
        """Write every label received to ``out`` (see :meth:`label_table`); returns the count.

        ``format`` is ``csv`` (text cells escaped as in batch CSVs), ``parquet`` (needs
        ``pyarrow``) or ``npz``; default: ``out``'s suffix. Written atomically.
        """
        return _export.export_labels(self.label_table(), out, format)

    # --- select

    def select(
        self,
        *,
        budget: int | None = None,
        allow_partial: bool = False,
        out=None,
        scheduler: str | None = None,
        chunk_rows: int | None = None,
        progress=None,
    ) -> Batch:
        """Train on the labels so far, pick the next batch, record the round, write its CSV.

        Parameters
        ----------
        budget : int, optional
            Batch size of this round (default: the project's ``budget``; ``init`` for the
            first round).
        allow_partial : bool
            Start a new round although the last batch is not fully labeled; its unlabeled
            samples return to the pool. Without it, a last batch with *no* label yet is
            returned again (``reissued=True``, its CSV rewritten if missing: the resume path
            after a crash), and one partly labeled raises ValueError.
        out : str or PathLike, optional
            Also write the batch CSV there.
        scheduler : str, optional
            Address of a Dask scheduler (``tcp://host:8786``): the pool probabilities and the
            strategy run on its workers (:mod:`alamp_fast.workflow`), with the same batch. Checked
            before the project is touched: an unreachable scheduler raises ValueError.
        chunk_rows : int, optional
            Pool rows per chunk on the cluster (needs ``scheduler``); default: equal chunks
            of at most 64 MiB of features plus probabilities.
        progress : callable, optional
            Called as ``progress(stage, done, total)`` while the round works on the pool:
            ``"read"`` (pool rows read, after each 64 MiB block), ``"fit"`` (0 of the labeled
            rows before the classifier's fit, all of them after) and ``"score"`` (pool rows
            scored, after each chunk of the default classifier's one scoring call; at the end
            for other classifiers), with the same values as without it. ``alamp-fast
            select`` shows it with an ETA on a terminal. Nothing is called for a round that needs no features; with
            ``scheduler``, the scoring runs on the workers and is not reported.

        Returns
        -------
        Batch
        """
        return _select.select_round(
            self, budget=budget, allow_partial=allow_partial, out=out, scheduler=scheduler,
            chunk_rows=chunk_rows, progress=progress,
        )

    def export_label_studio(self, round_no: int, out) -> Batch:
        """Write round ``round_no``'s batch as Label Studio tasks (JSON), for its import.

        One task per sample, in rank order: ``data`` holds ``sample_id`` (the project's id;
        point your labeling config's media at it), ``rank`` and ``round``; one prediction per
        task carries the sample's acquisition score as ``score`` (so Label Studio's "order by
        prediction score" serves the batch: descending for alamp / alamp-div, entropy and
        least confidence, ascending for margin / margin-div, as the ``score`` column of the
        batch CSV; none for random picks) and the strategy's name as ``model_version``, with no
        pre-annotation (``result`` empty). Label Studio's JSON export of the annotated tasks is
        read back by :meth:`label`.
        """
        round_no = _check_positive_int("round", round_no)
        return _export.export_label_studio(self.path, self._reload(), round_no, out)

    def export_round(self, round_no: int, out=None) -> Batch:
        """Write the batch CSV of round ``round_no`` again, from the state.

        The CSV of a round is a pure function of the state, so this rewrites, byte for byte,
        what :meth:`select` wrote (``batches/round-NNN.csv``, or ``out``), e.g. after it was
        deleted or edited by hand. It does not start or change any round.
        """
        return _export.export_round(self, round_no, out)

    # --- label

    def label(
        self,
        source,
        *,
        relabel: bool = False,
        allow_unrequested: bool = False,
        id_column: str = "id",
        label_column: str = "label",
    ) -> LabelReport:
        """Ingest annotations.

        Parameters
        ----------
        source : str, PathLike, mapping or iterable of pairs
            A CSV file with a header holding ``id_column`` and ``label_column`` (other columns
            are ignored, a UTF-8 BOM is skipped; a batch CSV with its ``label`` column filled in
            works as is), or ``{id: label}``, or ``(id, label)`` pairs. Rows with an empty
            label are skipped (a partial batch is fine).
        relabel : bool
            Replace the label of samples labeled before with a different class. Without it,
            such records raise ValueError. A record repeating a sample's current label is
            always accepted and changes nothing (ingesting a file twice is harmless).
        allow_unrequested : bool
            Accept labels for pool samples no batch asked for (e.g. labels you already had).
        id_column, label_column : str
            CSV column names (matched case-insensitively).

        Returns
        -------
        LabelReport

        Raises
        ------
        ValueError
            Unknown ids, unknown class names, an id given twice, an empty file, relabels
            without ``relabel``, unrequested ids without ``allow_unrequested``. Nothing is
            ingested then: the state is left untouched.
        """
        return _labels.ingest(
            self, source, relabel=relabel, allow_unrequested=allow_unrequested,
            id_column=id_column, label_column=label_column,
        )

    # --- status

    def status(self, *, cv: int = 5) -> dict:
        """Rounds, counts per class, ir, and an accuracy estimate by cross-validation.

        Parameters
        ----------
        cv : int
            Folds of the stratified cross-validation over the labeled samples (fewer when the
            largest class has fewer labels); 0 skips it. The estimate is optimistic or
            pessimistic in ways random sampling would not be: active learning picks hard
            samples, so treat it as a trend, not a test score.

        Returns
        -------
        dict
            JSON-ready: ``rounds``, ``history``, ``ingests``, ``n_pool``, ``n_labeled``,
            ``pending`` (ids of the last batch without a label), ``class_counts``, ``ir``,
            ``cv`` (``accuracy``, ``accuracy_std``, ``balanced_accuracy``, ``folds``,
            ``n_labels``; None when not computed) and ``cv_note`` (why not), ``settings``,
            ``pool``, ``lock`` (None, or the holder's pid, host, command and start time with
            ``stale``: False while its holder runs; True when the holder died holding it,
            and then ``cleared``: whether this call removed the record, see
            :func:`alamp_fast.workflow.status.lock_status`).
        """
        return _status.status(self, cv=cv)
