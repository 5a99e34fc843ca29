"""Drop-in adapters that run alamp_fast inside other active-learning libraries.

One module per host, each importing its host only when the module itself is imported, so
``import alamp_fast.integrations`` needs none of them:

- :mod:`~alamp_fast.integrations.modal`: modAL query strategies
  (``ActiveLearner(query_strategy=...)``)
- :mod:`~alamp_fast.integrations.skactiveml`: scikit-activeml pool query strategies
- :mod:`~alamp_fast.integrations.baal`: baal heuristics for ``ActiveLearningLoop``
- :mod:`~alamp_fast.integrations.small_text`: small-text ``QueryStrategy`` classes

alamp needs the previous iteration's margins, which none of these APIs passes: the adapters
keep them per pool row in :class:`alamp_fast.integrations._state.AlampMemory`; see
``docs/integrations.md`` for how rows are matched when the host reorders or shrinks its pool.
"""

from __future__ import annotations

import importlib

__all__ = ["modal", "skactiveml", "baal", "small_text"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
