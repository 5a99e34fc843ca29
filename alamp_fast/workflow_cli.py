"""Deprecated path: :mod:`alamp_fast.cli.workflow` under its old name (the same module object)."""

import sys
import warnings

from alamp_fast.cli import workflow as _module

warnings.warn(
    "alamp_fast.workflow_cli is deprecated: import alamp_fast.cli.workflow instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name (monkeypatching
# workflow_cli._COMMANDS, say) are seen by both
sys.modules[__name__] = _module
