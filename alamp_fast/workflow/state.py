"""``state.npz``: the format and schema of a project's state, its identity file, and commits."""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alamp_fast.workflow.errors import ForeignStateError
from alamp_fast.workflow.storage import (
    _O_CLOEXEC,
    _O_NOFOLLOW,
    IDENTITY_FILE,
    LOCK_FILE,
    STATE_FILE,
    _atomic_write,
    _fault,
)

#: Format of ``state.npz`` (bumped on incompatible changes).
FORMAT_VERSION = 1


_LABEL_DTYPES = {
    "row": np.int64,
    "cls": np.int64,
    "round": np.int64,
    "time": np.float64,
    "relabel": np.bool_,
}


_BATCH_DTYPES = {
    "round": np.int64,
    "row": np.int64,
    "score": np.float64,
    "margin": np.float64,
    "pred": np.int64,
}


@dataclass
class _State:
    """Everything a project knows; serialised as one ``.npz`` (no pickles)."""

    meta: dict
    ids: np.ndarray
    labels: dict[str, np.ndarray]
    batches: dict[str, np.ndarray]
    strategy: dict[str, np.ndarray]

    def to_bytes(self) -> bytes:
        arrays = {"meta": np.array(json.dumps(self.meta)), "ids": self.ids}
        arrays.update({f"label.{k}": v for k, v in self.labels.items()})
        arrays.update({f"batch.{k}": v for k, v in self.batches.items()})
        arrays.update({f"strategy.{k}": v for k, v in self.strategy.items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def read(cls, directory: Path) -> _State:
        path = directory / STATE_FILE
        if not path.exists():
            hint = (
                " (a previous init was interrupted: run init again)"
                if (directory / LOCK_FILE).exists()
                else ""
            )
            raise FileNotFoundError(
                f"no alamp-fast project at {directory}: {STATE_FILE} is "
                f"missing{hint}; create one with init"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except Exception as exc:  # zip, npy and JSON errors: any of them means "unreadable"
            raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format {meta.get('format')!r}; this alamp_fast "
                f"reads format {FORMAT_VERSION}"
            )

        def part(prefix):
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        st = cls(meta, arrays["ids"], part("label."), part("batch."), part("strategy."))
        _check_identity(directory, st)
        return st

    # --- derived views

    @property
    def n_rounds(self) -> int:
        return len(self.meta["rounds"])

    @property
    def n_pool(self) -> int:
        return int(self.ids.shape[0])

    def current_labels(self, n_pool: int | None = None) -> np.ndarray:
        """Class code per pool row, -1 where unlabeled; the latest label of a row wins."""
        y = np.full(self.n_pool if n_pool is None else n_pool, -1, dtype=np.int64)
        rows = self.labels["row"]
        if rows.size:
            # the last event per row: first occurrence in the reversed log
            _, first_rev = np.unique(rows[::-1], return_index=True)
            last = rows.size - 1 - first_rev
            y[rows[last]] = self.labels["cls"][last]
        return y

    def batch_rows(self, round_no: int) -> np.ndarray:
        return self.batches["row"][self.batches["round"] == round_no]

    def training_rows(self, y: np.ndarray) -> np.ndarray:
        """Labeled rows in selection order (round, then rank); rows never selected last."""
        selected = self.batches["row"]
        _, first = np.unique(selected, return_index=True)
        in_order = selected[np.sort(first)]
        in_order = in_order[y[in_order] >= 0]
        extra = np.setdiff1d(np.flatnonzero(y >= 0), in_order)
        return np.concatenate([in_order, extra]).astype(np.int64)

    def append(self, table: str, **columns) -> None:
        target = self.labels if table == "labels" else self.batches
        dtypes = _LABEL_DTYPES if table == "labels" else _BATCH_DTYPES
        for key, dtype in dtypes.items():
            target[key] = np.concatenate([target[key], np.asarray(columns[key], dtype=dtype)])


def _empty_tables(dtypes: dict) -> dict[str, np.ndarray]:
    return {k: np.empty(0, dtype=d) for k, d in dtypes.items()}


def _read_identity(directory: Path) -> dict | None:
    """``<project>/project.json``, or None when it is missing (older projects)."""
    path = directory / IDENTITY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path} is unreadable ({exc.strerror})") from None
    with open(fd, "rb", closefd=True) as f:
        raw = f.read(1 << 20)
    try:
        ident = json.loads(raw.decode())
        if not isinstance(ident, dict) or not isinstance(ident.get("project_id"), str):
            raise ValueError("no project_id")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a project identity file ({exc}); if it was damaged, remove it "
            "and the project rewrites it from its state"
        ) from None
    return ident


def _identity_record(st: _State) -> dict:
    pool = st.meta["pool"]
    return {
        "project_id": st.meta["project_id"],
        "created": st.meta.get("created"),
        "pool": {"path": pool["path"], "sha256": pool["sha256"], "n_rows": pool["n_rows"]},
    }


def _describe_identity(ident: dict) -> str:
    pool = ident.get("pool") or {}
    return (
        f"project id {ident.get('project_id') or 'none'}, created {ident.get('created')}, "
        f"pool {pool.get('path')}"
    )


def _check_identity(directory: Path, st: _State) -> None:
    """Refuse a state whose project id is not the one ``project.json`` records."""
    ident = _read_identity(directory)
    if ident is None:
        return  # an older project, or a crash before the file was written: written at commit
    if st.meta.get("project_id") != ident["project_id"]:
        theirs = {
            "project_id": st.meta.get("project_id"),
            "created": st.meta.get("created"),
            "pool": st.meta.get("pool"),
        }
        raise ForeignStateError(
            f"{directory / STATE_FILE} is the state of another project "
            f"({_describe_identity(theirs)}), not of the project at {directory} "
            f"({_describe_identity(ident)}); put this project's own {STATE_FILE} back (or open "
            "the other project's directory); nothing was changed"
        )


def _ensure_identity(directory: Path, st: _State) -> None:
    """Write ``project.json`` after a commit if it is missing (new and older projects)."""
    if _read_identity(directory) is None:
        _atomic_write(directory / IDENTITY_FILE, json.dumps(_identity_record(st)).encode())


def _commit(directory: Path, st: _State, op: str) -> None:
    st.meta["generation"] += 1
    st.meta.setdefault("project_id", uuid.uuid4().hex)  # projects made before ids existed
    _atomic_write(directory / STATE_FILE, st.to_bytes(), fault=f"{op}:state")
    _fault(f"{op}:committed")
    _ensure_identity(directory, st)
