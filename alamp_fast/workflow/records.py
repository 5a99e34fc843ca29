"""Annotations read one record at a time (CSV streamed, Label Studio JSON, pairs); problems."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping

import numpy as np

from alamp_fast.workflow.csvfmt import _csv_unescape, _find_column
from alamp_fast.workflow.errors import _opt


class _Records:
    """Labels to ingest, one ``(id, label, position)`` at a time: a CSV file is streamed.

    Opening it checks the header at once (before the project lock); the rows are read while
    iterating. ``where(position)`` names a record in messages (``line 12``, ``record 3``).
    """

    def __init__(self, source, id_column: str, label_column: str):
        self.note = None
        self._file = None
        if isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".json"):
            self._open_label_studio(os.fspath(source), id_column, label_column)
        elif isinstance(source, (str, os.PathLike)):
            self._open_csv(os.fspath(source), id_column, label_column)
        else:
            self.origin = "labels"
            self.empty_message = "no label records given"
            self._iter = self._pairs(source)
            self._kind = "record"

    # --- CSV

    def _open_csv(self, path: str, id_column: str, label_column: str) -> None:
        self.origin = os.path.basename(path)
        self._kind = "line"
        self.empty_message = f"{path} has a header but no rows"
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a CSV file of labels")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        try:
            f = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        self._file = f
        try:
            delimiter = self._delimiter(f, path)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = None
            for cells in self._rows(reader, path):
                if any(c.strip() for c in cells):
                    header = [c.strip() for c in cells]
                    break
            if header is None:
                raise ValueError(f"{path} is empty")
            self._id_col = _find_column(header, id_column, path)
            self._label_col = _find_column(header, label_column, path)
        except BaseException:
            self.close()
            raise
        self._path, self._id_column = path, id_column
        self._iter = self._csv_records(reader)

    def _delimiter(self, f, path: str) -> str:
        """``,``; or ``;`` / TAB for a file whose header has no comma but one of those (as a
        spreadsheet saves "CSV" in locales with a decimal comma)."""
        try:
            for line in f:
                if line.strip():
                    break
            else:
                return ","
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        if "," not in line:
            for sep, name in ((";", "semicolon"), ("\t", "tab")):
                if sep in line:
                    self.note = f"{path} was read as {name}-separated (its header has no comma)"
                    return sep
        return ","

    def _rows(self, reader, path: str):
        try:
            yield from reader
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except csv.Error as exc:
            raise ValueError(f"{path} is not a valid CSV file: {exc}") from None

    def _csv_records(self, reader):
        id_col, label_col = self._id_col, self._label_col
        for cells in self._rows(reader, self._path):
            sid = cells[id_col].strip() if id_col < len(cells) else ""
            lab = cells[label_col].strip() if label_col < len(cells) else ""
            if sid == "" and lab == "":
                continue  # a blank row, or one without id and label
            line = reader.line_num
            if sid == "" and lab != "":
                raise ValueError(
                    f"{self._path} line {line}: label {lab!r} has an empty {self._id_column!r}"
                )
            yield _csv_unescape(sid), _csv_unescape(lab), line

    # --- Label Studio's JSON export

    def _open_label_studio(self, path: str, id_column: str, label_column: str) -> None:
        """Tasks of Label Studio's "JSON" export (or "JSON_MIN"): ``(sample id, label)`` each.

        The sample id is the task's ``data.sample_id`` (as :meth:`Project.export_label_studio`
        writes it), else ``data[id_column]``; the label is the first choice of the task's
        latest annotation that was not cancelled (none: the task is skipped as blank).
        JSON_MIN rows hold the data fields and ``label_column`` (the control's name) flat.
        """
        self.origin = os.path.basename(path)
        self._kind = "task"
        self.empty_message = f"{path} holds no tasks"
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a Label Studio export")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        try:
            with open(path, encoding="utf-8-sig") as f:
                tasks = json.load(f)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        if isinstance(tasks, dict):
            tasks = [tasks]
        if not isinstance(tasks, list):
            raise ValueError(f"{path}: a Label Studio export is a list of tasks")
        records = []
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise ValueError(f"{path} task {i}: not a JSON object")
            full = isinstance(task.get("data"), dict)
            data = task["data"] if full else task
            sid = data.get("sample_id")
            if sid is None and (full or id_column != "id"):  # JSON_MIN's "id": the task's
                sid = data.get(id_column)
            if sid is None:
                raise ValueError(
                    f"{path} task {i}: no 'sample_id' in its data (its keys are "
                    f"{', '.join(sorted(map(str, data)))})"
                )
            lab = self._ls_label(task, label_column) if full else data.get(label_column, "")
            if isinstance(lab, list):
                lab = lab[0] if lab else ""
            if isinstance(lab, dict):  # JSON_MIN of a taxonomy / nested choice
                lab = next(iter(lab.values()), "")
            if not isinstance(lab, str):
                raise ValueError(f"{path} task {i}: the label {lab!r} is not a class name")
            records.append((str(sid).strip(), lab.strip(), i))
        self._iter = iter(records)

    @staticmethod
    def _ls_label(task: dict, label_column: str) -> str:
        annotations = [
            a for a in task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        # the latest annotation wins (Label Studio lists them in creation order)
        for ann in reversed(annotations):
            for res in ann.get("result") or []:
                value = res.get("value") if isinstance(res, dict) else None
                if not isinstance(value, dict):
                    continue
                if res.get("from_name") not in (None, label_column) and len(ann["result"]) > 1:
                    continue
                choices = value.get("choices") or value.get("labels") or value.get("taxonomy")
                if choices:
                    first = choices[0]
                    return first[-1] if isinstance(first, list) else first
        return ""

    # --- Python records

    @staticmethod
    def _pairs(source):
        items = source.items() if isinstance(source, Mapping) else source
        for i, item in enumerate(items):
            try:
                if isinstance(item, (str, bytes)):  # "12" would unpack into id "1", label "2"
                    raise TypeError
                sid, lab = item
            except (TypeError, ValueError):
                raise TypeError(f"label records must be (id, label) pairs, got {item!r}") from None
            if isinstance(sid, (bool, np.bool_)) or not isinstance(sid, (str, int, np.integer)):
                raise TypeError(f"a sample id must be a str or int, got {sid!r}")
            if lab is None:
                lab = ""
            if not isinstance(lab, str):
                raise TypeError(f"a label must be a class name (str), got {lab!r} for id {sid!r}")
            yield str(sid).strip(), lab.strip(), i

    # ---

    def __iter__(self):
        return self._iter

    def where(self, pos: int) -> str:
        return f"{self._kind} {pos}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_records(source, id_column: str, label_column: str):
    """The records of ``source`` (:class:`_Records`, streamed) and a name for messages.

    Python records (a mapping or pairs) are checked for their types at once, before the
    project is locked.
    """
    records = _Records(source, id_column, label_column)
    if records._kind == "record":
        records._iter = iter(list(records._iter))
    return records, records.origin


class _Problems:
    """Collects every validation problem of one ingest, raised as one ValueError line."""

    # kind -> (what, how to get past it)
    _TEXT = {
        "unknown_id": ("ids not in the project's pool", None),
        "unknown_class": ("unknown class names", None),
        "duplicate": ("ids given more than once", None),
        "unrequested": (
            "ids no batch asked for",
            ("pass", "allow_unrequested", "to add them"),
        ),
        "relabel": (
            "ids already labeled with another class",
            ("pass", "relabel", "to replace their labels"),
        ),
    }

    SHOWN = 5  # examples per kind in the message

    def __init__(self, origin: str):
        self.origin = origin
        self.items: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        # only the first few texts are kept: a huge file of bad ids stays cheap
        shown = self.items.setdefault(kind, [])
        if len(shown) < self.SHOWN:
            shown.append(text)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def extra(self, kind: str, n: int) -> None:
        """``n`` more problems of ``kind`` than were added (counted, not shown)."""
        if n > 0:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, classes: list[str], ids: np.ndarray) -> None:
        if not self.items:
            return
        parts = []
        for kind, texts in self.items.items():
            what, hint = self._TEXT[kind]
            total = self.counts[kind]
            more = f" and {total - len(texts)} more" if total > len(texts) else ""
            part = f"{what} ({total}): {', '.join(texts)}{more}"
            if kind == "unknown_class":
                part += f" (the classes are {', '.join(classes)})"
            if kind == "unknown_id":
                part += f" (pool ids look like {', '.join(repr(s) for s in ids[:3].tolist())})"
            if hint:
                verb, option, purpose = hint
                part += f"; {verb} {_opt(option, True)} {purpose}"
            parts.append(part)
        raise ValueError(f"{self.origin}: " + "; ".join(parts) + "; nothing was ingested")
