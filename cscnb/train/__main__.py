"""``python -m cscnb.train --preset NAME [--key value ...]`` (and ``torchrun ... -m cscnb.train``)."""
import sys

from .loop import main

if __name__ == "__main__":
    sys.exit(main())
