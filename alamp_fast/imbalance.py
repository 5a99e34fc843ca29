"""Deprecated path: :mod:`alamp_fast.al.imbalance` under its old name (the same module object)."""

import sys
import warnings

from alamp_fast.al import imbalance as _module

warnings.warn(
    "alamp_fast.imbalance is deprecated: import alamp_fast.al.imbalance instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name (monkeypatching) are seen
# by both, and pickles that name alamp_fast.imbalance.<Class> still load
sys.modules[__name__] = _module
