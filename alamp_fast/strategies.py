"""Deprecated path: :mod:`alamp_fast.al.strategies` under its old name (the same module object)."""

import sys
import warnings

from alamp_fast.al import strategies as _module

warnings.warn(
    "alamp_fast.strategies is deprecated: import alamp_fast.al.strategies instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name (monkeypatching) are seen
# by both, and pickles that name alamp_fast.strategies.<Class> still load
sys.modules[__name__] = _module
