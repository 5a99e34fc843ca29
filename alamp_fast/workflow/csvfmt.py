"""CSV cells: formula escaping both ways (no spreadsheet runs a cell), headers and columns."""

from __future__ import annotations

import csv
import os

import numpy as np


def _read_csv(path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of the non-blank rows; a UTF-8 BOM is skipped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path} is not a valid CSV file: {exc}") from None
    numbered = [(i + 1, [c.strip() for c in cells]) for i, cells in enumerate(lines)]
    numbered = [(n, cells) for n, cells in numbered if any(cells)]
    if not numbered:
        raise ValueError(f"{path} is empty")
    (_, header), rows = numbered[0], numbered[1:]
    return header, rows


def _find_column(header: list[str], name: str, path: str) -> int:
    wanted = name.strip().lower()
    for i, h in enumerate(header):
        if h.lower() == wanted:
            return i
    raise ValueError(f"{path} has no {name!r} column (its header is {','.join(header)!r})")


def _read_csv_column(path: str, column: str) -> list[str]:
    header, rows = _read_csv(path)
    col = _find_column(header, column, path)
    return [row[col] if col < len(row) else "" for _, row in rows]


# Cells a spreadsheet would run as a formula start with one of these (OWASP, "CSV
# injection"); a cell starting with the escape character itself is escaped too, so that
# reading back is lossless.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _csv_escape(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: a leading ``= + - @ TAB CR '`` gets a ``'``."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_unescape(text: str) -> str:
    """The inverse of :func:`_csv_escape` (a cell the annotators typed is returned as is)."""
    return text[1:] if text[:1] == "'" and text[1:2] != "" and text[1:].startswith(
        _FORMULA_START
    ) else text


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6g}"
