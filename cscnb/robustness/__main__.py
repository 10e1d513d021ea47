"""``python -m cscnb.robustness RUN_DIR [options]``: see :mod:`cscnb.robustness.cli`."""
import sys

from .cli import main

sys.exit(main())
