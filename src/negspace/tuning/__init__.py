"""`negspace tune`: Optuna studies over `negspace train` options (space files in configs/spaces/)."""

from negspace.tuning.space import Space, load_space
from negspace.tuning.tune import TuneResult, run_tune

__all__ = ["Space", "load_space", "run_tune", "TuneResult"]
