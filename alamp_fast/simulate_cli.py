"""Deprecated path: :mod:`alamp_fast.cli.simulate` under its old name (the same module object)."""

import sys
import warnings

from alamp_fast.cli import simulate as _module

warnings.warn(
    "alamp_fast.simulate_cli is deprecated: import alamp_fast.cli.simulate instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name (monkeypatching
# simulate_cli.plots_available, say) are seen by both
sys.modules[__name__] = _module
