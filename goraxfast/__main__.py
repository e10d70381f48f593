"""``python -m goraxfast``: the same command as the ``goraxfast`` console script."""

import sys

from goraxfast.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
