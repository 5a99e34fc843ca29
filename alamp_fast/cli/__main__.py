"""``python -m alamp_fast.cli``: the ``alamp-fast`` command."""

import sys

from alamp_fast.cli import main

sys.exit(main())
