"""A loaded dataset: its interactions, its protocol and optional side features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from negspace.data.interactions import Interactions

Protocol = Literal["kfold", "given"]


@dataclass
class Dataset:
    """Args:
        name: dataset name or path it was loaded from.
        protocol: "kfold" (split `interactions` with kfold_split) or "given" (use `test`).
        interactions: every interaction (k-fold) or the published training set (given split).
        test: the published test set, same id space as `interactions` (given split only).
        user_features / item_features: optional side features indexed by external id.
        notes: counts worth reporting (rows dropped by filtering, test items unseen in training...).
        times: time of each interaction of `interactions`, in its CSR order (a pair seen several
            times keeps its first time), when the file had a time column; else None.
    """

    name: str
    protocol: Protocol
    interactions: Interactions
    test: Interactions | None = None
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    notes: dict[str, int] = field(default_factory=dict)
    times: np.ndarray | None = None
