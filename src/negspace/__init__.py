"""negspace: embedding recommenders from implicit feedback, trained with better negatives."""

import os as _os

# Torch's OpenMP threads spin while they wait for each other; on a machine where other processes
# hold the cores (a grid beside a run, a shared CI box) an epoch then took 60 times longer
# (177 s instead of 3 s, docs/design.md). Passive waiting costs little on an idle machine. Only
# takes effect when negspace is imported before torch; a caller's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
