"""What one training run returns."""

from __future__ import annotations

from dataclasses import dataclass

from negspace.data.interactions import Interactions
from negspace.models.base import EmbeddingModel


@dataclass
class RunOutput:
    """Test metrics (with `train_seconds`), history, the selected model, the split, seconds;
    `start_seconds`: of the model's start, before the first epoch (counted in train_seconds)."""

    metrics: dict[str, float]
    history: list[dict]
    model: EmbeddingModel
    train: Interactions
    test: Interactions
    seconds: float
    start_seconds: float = 0.0
