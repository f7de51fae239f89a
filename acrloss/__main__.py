"""``python -m acrloss ...``: the ``acrloss`` command (see :mod:`acrloss.cli`)."""
import sys

from acrloss.cli import main

if __name__ == "__main__":
    sys.exit(main())
