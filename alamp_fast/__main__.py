import sys

from alamp_fast.cli import main

sys.exit(main())
