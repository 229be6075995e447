"""`python -m negspace ...`, as torchrun runs it: `torchrun --nproc-per-node N -m negspace train ...`."""

import sys

from negspace.cli import main

if __name__ == "__main__":
    sys.exit(main())
