"""init: the settings checked, the pool read and hashed once, the first state committed."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from alamp_fast.workflow.errors import _check_positive_int, _opt
from alamp_fast.workflow.lock import _ProjectLock
from alamp_fast.workflow.pool import _file_signature, _load_pool, _read_ids
from alamp_fast.workflow.select import _make_strategy
from alamp_fast.workflow.state import (
    _BATCH_DTYPES,
    _LABEL_DTYPES,
    FORMAT_VERSION,
    _commit,
    _empty_tables,
    _State,
)
from alamp_fast.workflow.storage import (
    BATCH_DIR,
    IDENTITY_FILE,
    STATE_FILE,
    _check_fault_env,
    _fault,
    _fsync_dir,
    _now_iso,
    _remove_stale_temps,
)


def _check_classes(classes) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise TypeError(f"classes must be a sequence of class names, got {classes!r}")
    names = [str(c).strip() for c in classes]
    if len(names) < 2:
        raise ValueError(f"a project needs at least 2 classes, got {names}")
    if "" in names:
        raise ValueError(f"class names must be non-empty, got {names}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"class name {name!r} is listed twice")
        seen.add(name)
    return names


def create(
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
):
    """:meth:`Project.init <alamp_fast.workflow.Project.init>`: a new ``cls`` (the project
    class) over ``pool`` at ``path``."""
    from alamp_fast.al.classifiers import CLASSIFIERS
    from alamp_fast.al.strategies import canonical_name

    _check_fault_env()
    path = Path(os.path.abspath(os.fspath(path)))
    pool = os.path.abspath(os.fspath(pool))
    budget = _check_positive_int("budget", budget)
    init = budget if init is None else _check_positive_int("init", init)
    if (
        isinstance(seed, (bool, np.bool_))
        or not isinstance(seed, (int, np.integer))
        or seed < 0
    ):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(classifier, str) or classifier not in CLASSIFIERS:
        raise ValueError(
            f"unknown classifier {classifier!r}; choose from "
            f"{', '.join(CLASSIFIERS)} (a project stores its classifier by name)"
        )
    if cost_sensitive is not None and not isinstance(cost_sensitive, (bool, np.bool_)):
        raise TypeError(f"cost_sensitive must be True, False or None, got {cost_sensitive!r}")
    strategy_kwargs = dict(strategy_kwargs or {})
    try:
        json.dumps(strategy_kwargs)
    except TypeError:
        raise ValueError(
            f"strategy_kwargs must hold JSON values (a project stores them), "
            f"got {strategy_kwargs!r}"
        ) from None
    settings = {
        "strategy": canonical_name(strategy),
        "strategy_kwargs": strategy_kwargs,
        "budget": budget,
        "init": init,
        "classifier": classifier,
        "cost_sensitive": None if cost_sensitive is None else bool(cost_sensitive),
        "seed": int(seed),
        "normalize": bool(normalize),
    }
    strat = _make_strategy(settings)

    signature = _file_signature(pool) if os.path.isfile(pool) else None  # before the read
    pool_data = _load_pool(pool, option=_opt("pool"), moved=False)
    X = pool_data.X
    if ids is not None:
        ids_source = {
            "kind": "file",
            "path": os.path.abspath(os.fspath(ids)),
            "column": id_column or "id",
        }
    elif id_column is not None:
        if not pool.endswith(".npz"):
            raise ValueError(
                f"{_opt('id_column', id_column)} without an ids file names an array "
                f"of an .npz pool, but {pool} is not one"
            )
        ids_source = {"kind": "key", "column": id_column}
    else:
        ids_source = {"kind": "rows"}
    sample_ids = _read_ids(ids_source, pool, X.shape[0])
    if classes is None:
        if pool.endswith(".npz"):
            with np.load(pool, allow_pickle=False) as data:
                if "classes" in data.files:
                    classes = data["classes"].tolist()
        if classes is None:
            raise ValueError(
                f"no class names: pass {_opt('classes')}; {pool} has no 'classes' array"
            )
    classes = _check_classes(classes)

    if (path / STATE_FILE).exists():
        raise ValueError(
            f"{path} is already an alamp-fast project; open it (or remove it to start over)"
        )
    path.mkdir(parents=True, exist_ok=True)
    with _ProjectLock(path, "init") as lock:
        _fault("init:locked")
        if (path / STATE_FILE).exists():  # created by a process that held the lock before us
            raise ValueError(f"{path} is already an alamp-fast project")
        _remove_stale_temps(path)
        with contextlib.suppress(FileNotFoundError):  # left by an interrupted init
            (path / IDENTITY_FILE).unlink()
        (path / BATCH_DIR).mkdir(exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "generation": 0,
            "project_id": uuid.uuid4().hex,
            "created": _now_iso(),
            "settings": settings,
            "classes": classes,
            "pool": {
                "path": pool,
                "n_rows": int(X.shape[0]),
                "n_features": int(X.shape[1]),
                "sha256": pool_data.sha_all,
                "ids": ids_source,
                **({"signature": signature} if signature else {}),
            },
            "rounds": [],
            "ingests": [],
        }
        state = _State(
            meta,
            sample_ids,
            _empty_tables(_LABEL_DTYPES),
            _empty_tables(_BATCH_DTYPES),
            strat.state_dict(),
        )
        _fsync_dir(path)
        _commit(path, state, "init")
        _fsync_dir(path.parent)
        project = cls(path, state)
        note = lock.stale_note()
        if note:
            project.notes.append(note)
    return project
