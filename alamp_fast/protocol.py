"""Deprecated path: :mod:`alamp_fast.al.protocol` under its old name (the same module object)."""

import sys
import warnings

from alamp_fast.al import protocol as _module

warnings.warn(
    "alamp_fast.protocol is deprecated: import alamp_fast.al.protocol instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name (monkeypatching) are seen
# by both, and pickles that name alamp_fast.protocol.<Class> still load
sys.modules[__name__] = _module
