"""label: annotations validated as a whole and ingested in one commit; :class:`LabelReport`."""

from __future__ import annotations

import array
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from alamp_fast.workflow.records import _Problems, _read_records
from alamp_fast.workflow.state import _commit
from alamp_fast.workflow.storage import _fault, _now_iso


@dataclass(frozen=True)
class LabelReport:
    """What :meth:`Project.label` did: counts of records by outcome."""

    new: int
    relabeled: int
    unchanged: int
    blank: int
    unrequested: int
    pending: int
    notes: list[str] = field(default_factory=list)


def ingest(
    proj,
    source,
    *,
    relabel: bool = False,
    allow_unrequested: bool = False,
    id_column: str = "id",
    label_column: str = "label",
) -> LabelReport:
    """:meth:`Project.label <alamp_fast.workflow.Project.label>` on the project ``proj``: every
    record is checked before any is kept, and the new labels are committed at once."""
    records, origin = _read_records(source, id_column, label_column)
    with proj._lock("label") as lock, contextlib.closing(records):
        _fault("label:locked")
        st = proj._enter(lock)
        if records.note:
            proj.notes.append(records.note)
        classes = st.meta["classes"]
        code_of = {c: i for i, c in enumerate(classes)}
        row_of = {s: i for i, s in enumerate(st.ids.tolist())}
        y = st.current_labels()
        requested = np.zeros(st.n_pool, dtype=bool)
        requested[st.batches["row"]] = True

        # One pass over the records, streamed (a CSV is never held in memory): what is
        # kept per record is its row, class and position, 24 bytes.
        problems = _Problems(origin)
        rows_buf, cls_buf, pos_buf = array.array("q"), array.array("q"), array.array("q")
        blank = n_records = 0
        for sid, lab, pos in records:
            n_records += 1
            if lab == "":
                blank += 1
                continue
            row, cls = row_of.get(sid), code_of.get(lab)
            if row is None:
                problems.add("unknown_id", f"{sid!r} ({records.where(pos)})")
            if cls is None:
                problems.add("unknown_class", f"{lab!r} ({records.where(pos)})")
            if row is not None and cls is not None:
                rows_buf.append(row)
                cls_buf.append(cls)
                pos_buf.append(pos)
        if n_records == 0:
            raise ValueError(records.empty_message)
        if n_records == blank:
            raise ValueError(
                f"{origin} holds no labels ({blank} row(s), every {label_column!r} cell empty)"
            )
        rows = np.frombuffer(rows_buf, dtype=np.int64)
        cls = np.frombuffer(cls_buf, dtype=np.int64)
        pos = np.frombuffer(pos_buf, dtype=np.int64)
        uniq, first, counts = np.unique(rows, return_index=True, return_counts=True)
        if (counts > 1).any():
            for r in uniq[counts > 1][np.argsort(first[counts > 1], kind="stable")]:
                wheres = ", ".join(records.where(int(q)) for q in pos[rows == r])
                problems.add("duplicate", f"{str(st.ids[r])!r} ({wheres})")
        new_rows = new_cls = np.empty(0, dtype=np.int64)
        is_relabel = np.empty(0, dtype=bool)
        n_unchanged = n_unrequested = 0
        if not problems:
            changed = y[rows] != cls
            n_unchanged = int((~changed).sum())
            unrequested = changed & ~requested[rows]
            n_unrequested = int(unrequested.sum())
            if n_unrequested and not allow_unrequested:
                for q in np.flatnonzero(unrequested)[:_Problems.SHOWN]:
                    problems.add(
                        "unrequested", f"{str(st.ids[rows[q]])!r} ({records.where(int(pos[q]))})"
                    )
                problems.extra("unrequested", n_unrequested - min(n_unrequested, _Problems.SHOWN))
            relabeled = changed & (y[rows] >= 0)
            if relabeled.any() and not relabel:
                for q in np.flatnonzero(relabeled)[:_Problems.SHOWN]:
                    problems.add(
                        "relabel",
                        f"{str(st.ids[rows[q]])!r} ({records.where(int(pos[q]))}: "
                        f"{classes[cls[q]]}, labeled {classes[y[rows[q]]]} before)",
                    )
                n_rel = int(relabeled.sum())
                problems.extra("relabel", n_rel - min(n_rel, _Problems.SHOWN))
            new_rows, new_cls, is_relabel = rows[changed], cls[changed], relabeled[changed]
        problems.raise_if_any(classes, st.ids)

        n_relabeled = int(is_relabel.sum())
        n_new = int(new_rows.size) - n_relabeled
        if new_rows.size:
            _fault("label:validated")
            st.append(
                "labels",
                row=new_rows,
                cls=new_cls,
                round=np.full(new_rows.size, st.n_rounds),
                time=np.full(new_rows.size, time.time()),
                relabel=is_relabel,
            )
            st.meta["ingests"].append(
                {
                    "time": _now_iso(),
                    "source": origin,
                    "round": st.n_rounds,
                    "new": n_new,
                    "relabeled": n_relabeled,
                    "unchanged": n_unchanged,
                    "blank": blank,
                    "unrequested": n_unrequested,
                }
            )
            _commit(proj.path, st, "label")
        proj._state = st  # committed, or unchanged when every record was already known
        pending = 0
        if st.n_rounds:
            rows = st.batch_rows(st.n_rounds)
            pending = int((st.current_labels()[rows] < 0).sum())
    return LabelReport(
        new=n_new,
        relabeled=n_relabeled,
        unchanged=n_unchanged,
        blank=blank,
        unrequested=n_unrequested,
        pending=pending,
        notes=list(proj.notes),
    )
