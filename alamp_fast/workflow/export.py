"""Batches and exports: round batch CSVs, every label (CSV, Parquet, npz), Label Studio tasks."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alamp_fast.workflow.csvfmt import _csv_escape, _fmt
from alamp_fast.workflow.errors import OptionError, _check_positive_int, _opt
from alamp_fast.workflow.state import _State
from alamp_fast.workflow.storage import BATCH_DIR, _atomic_write, _remove_stale_copies

#: Columns of a batch CSV, in order. ``label`` is left empty for the annotators to fill.
BATCH_COLUMNS = ("rank", "id", "score", "margin", "predicted", "label")


@dataclass(frozen=True)
class Batch:
    """One round's batch, best first (what ``batches/round-NNN.csv`` holds).

    ``scores`` is the strategy's ranking value per sample (margin: the margin, lowest first;
    entropy / least_confidence: that measure, highest first; alamp / alamp-div: the alamp score
    ``(prev - cur) / (prev + cur)``, highest first, or the margin at alamp's first query;
    coreset: the distance to the nearest labeled or earlier pick; NaN for random picks and for
    the first coreset pick with nothing labeled). ``margins`` and ``predicted`` are the current
    model's top-2 margin and top class (NaN / None when there is no model yet).
    """

    round: int
    kind: str
    ids: list[str]
    rows: np.ndarray
    scores: np.ndarray
    margins: np.ndarray
    predicted: list[str | None]
    path: Path
    reissued: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def _batch_name(round_no: int) -> str:
    return f"round-{round_no:03d}.csv"


def _batch_from_state(directory: Path, st: _State, round_no: int, reissued=False) -> Batch:
    mask = st.batches["round"] == round_no
    rows = st.batches["row"][mask]
    classes = st.meta["classes"]
    return Batch(
        round=round_no,
        kind=st.meta["rounds"][round_no - 1]["kind"],
        ids=st.ids[rows].tolist(),
        rows=rows,
        scores=st.batches["score"][mask],
        margins=st.batches["margin"][mask],
        predicted=[classes[p] if p >= 0 else None for p in st.batches["pred"][mask].tolist()],
        path=directory / BATCH_DIR / _batch_name(round_no),
        reissued=reissued,
    )


def _write_batch_csv(
    batch: Batch, st: _State, fault: str | None = None, path: Path | None = None
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BATCH_COLUMNS)
    for rank, (sid, s, m, p) in enumerate(
        zip(batch.ids, batch.scores, batch.margins, batch.predicted, strict=True), start=1
    ):
        w.writerow([rank, _csv_escape(sid), _fmt(s), _fmt(m), _csv_escape(p or ""), ""])
    target = batch.path if path is None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, buf.getvalue().encode("utf-8"), fault=fault)


def label_table(st: _State) -> dict[str, np.ndarray]:
    """Every labeled sample of the state ``st``: ``id``, ``label``, ``round``, ``score``
    (:meth:`Project.label_table <alamp_fast.workflow.Project.label_table>`)."""
    y = st.current_labels()
    rows = np.flatnonzero(y >= 0)
    round_of = np.zeros(st.n_pool, dtype=np.int64)
    score_of = np.full(st.n_pool, np.nan)
    b = st.batches
    order = np.argsort(b["round"], kind="stable")  # later rounds overwrite earlier ones
    round_of[b["row"][order]] = b["round"][order]
    score_of[b["row"][order]] = b["score"][order]
    classes = np.asarray(st.meta["classes"], dtype=str)
    return {
        "id": st.ids[rows].astype(str),
        "label": classes[y[rows]],
        "round": round_of[rows],
        "score": score_of[rows],
    }


def export_labels(table: dict[str, np.ndarray], out, format: str | None = None) -> int:
    """Write ``table`` (:func:`label_table`) to ``out`` as csv, parquet or npz; the row count."""
    out = Path(os.path.abspath(os.fspath(out)))
    fmt = (format or out.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet", "npz"):
        raise OptionError(
            f"{_opt('format', format or fmt)}: choose csv, parquet or npz"
            + ("" if format else f" (from the suffix of {out.name})")
        )
    if out.is_dir():
        raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
    t = table
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(("id", "label", "round", "score"))
        for sid, lab, r, sc in zip(
            t["id"].tolist(), t["label"].tolist(), t["round"].tolist(), t["score"].tolist(),
            strict=True,
        ):
            w.writerow((_csv_escape(sid), _csv_escape(lab), r, _fmt(sc)))
        data = buf.getvalue().encode("utf-8")
    elif fmt == "npz":
        bio = io.BytesIO()
        np.savez(bio, **t)
        data = bio.getvalue()
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise OptionError(
                f"{_opt('format', 'parquet')} needs pyarrow: pip install pyarrow"
            ) from None
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({k: pa.array(v.tolist()) for k, v in t.items()}), sink)
        data = sink.getvalue().to_pybytes()
    _remove_stale_copies(out)
    _atomic_write(out, data)
    return int(t["id"].size)


def export_label_studio(directory: Path, st: _State, round_no: int, out) -> Batch:
    """Round ``round_no``'s batch as Label Studio tasks at ``out``
    (:meth:`Project.export_label_studio <alamp_fast.workflow.Project.export_label_studio>`)."""
    round_no = _check_positive_int("round", round_no)
    if round_no > st.n_rounds:
        raise OptionError(
            f"{_opt('round', round_no)}: no such round; the project has {st.n_rounds} round(s)"
        )
    batch = _batch_from_state(directory, st, round_no)
    info = st.meta["rounds"][round_no - 1]
    version = info.get("strategy") or st.meta["settings"]["strategy"]
    tasks = []
    for rank, (sid, score) in enumerate(zip(batch.ids, batch.scores.tolist(), strict=True), 1):
        pred = {"model_version": version, "result": []}
        if not np.isnan(score):
            pred["score"] = float(score)
        tasks.append(
            {"data": {"sample_id": sid, "rank": rank, "round": round_no},
             "predictions": [pred]}
        )
    out = Path(os.path.abspath(os.fspath(out)))
    if out.is_dir():
        raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
    _remove_stale_copies(out)
    _atomic_write(out, json.dumps(tasks, indent=1).encode("utf-8"))
    return batch


def export_round(proj, round_no: int, out=None) -> Batch:
    """The batch CSV of round ``round_no`` written again, under the project lock of ``proj``."""
    round_no = _check_positive_int("round", round_no)
    with proj._lock("export") as lock:
        st = proj._enter(lock)
        if round_no > st.n_rounds:
            raise OptionError(
                f"{_opt('round', round_no)}: no such round; the project has "
                f"{st.n_rounds} round(s)"
            )
        proj._state = st
        batch = _batch_from_state(proj.path, st, round_no)
        target = batch.path if out is None else Path(os.path.abspath(os.fspath(out)))
        if out is not None:
            _remove_stale_copies(target)
        _write_batch_csv(batch, st, path=target)
    return batch
