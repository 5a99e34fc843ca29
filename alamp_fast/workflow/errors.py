"""The workflow's exceptions, and how its messages name options (``--budget 5`` or ``budget=5``)."""

from __future__ import annotations

import contextvars

from alamp_fast._validate import check_int


class ProjectLockedError(RuntimeError):
    """Another process is working on the project."""


class PoolChangedError(ValueError):
    """The pool file no longer matches the one the project recorded."""


class OptionError(ValueError):
    """A bad value of an option (the command line's exit status 2), found before any work."""


class ForeignStateError(ValueError):
    """The project's ``state.npz`` belongs to another project (copied or swapped in)."""


#: Set by the command-line interface: messages then name options as flags (``--budget 5``)
#: instead of keyword arguments (``budget=5``).
CLI_MESSAGES = contextvars.ContextVar("alamp_fast_workflow_cli", default=False)


# keyword -> flag, for the few whose names differ beyond "_" -> "-"
_FLAGS = {"pool": "--pool", "out": "--out", "classes": "--classes"}


def _opt(name: str, value=None) -> str:
    """An option as the caller wrote it: ``--allow-partial`` / ``--budget 5`` from the CLI,
    ``allow_partial=True (--allow-partial)`` / ``budget=5 (--budget 5)`` from Python."""
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is not None and value is not True:
        flag = f"{flag} {value}"
    if CLI_MESSAGES.get():
        return flag
    return f"{name} ({flag})" if value is None else f"{name}={value!r} ({flag})"


def _check_positive_int(name: str, value) -> int:
    return check_int(value, name, low=1)  # the package's one integer check
