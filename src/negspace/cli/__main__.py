"""`python -m negspace.cli ...`, the same as `negspace ...`."""

import sys

from negspace.cli import main

if __name__ == "__main__":
    sys.exit(main())
