"""Deprecated path: :mod:`alamp_fast.cli.cuda_warmup` under its old name (the same module
object)."""

import sys
import warnings

from alamp_fast.cli import cuda_warmup as _module

warnings.warn(
    "alamp_fast.cuda.warmup_cli is deprecated: import alamp_fast.cli.cuda_warmup instead",
    DeprecationWarning,
    stacklevel=2,
)
# the old name is the new module: attributes set through either name are seen by both
sys.modules[__name__] = _module
