"""`recommend_cold`: the two-tower cold start of one new user from a run directory, through
`Recommender` (as `negspace recommend --features` and `negspace serve` answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from negspace.api.recommender import Recommender
from negspace.errors import NegspaceError


def recommend_cold(run_dir: str | Path, features: dict[str, Any] | None, items: list,
                   k: int = 10, device: str | None = None) -> tuple[list, list[float]]:
    """Top-k items for a user unseen in training, from side features and the items they know.

    Args:
        run_dir: a finished two-tower run directory.
        features: the user's side features by column name (as in the dataset's user file);
            missing columns (or None) encode as unknown; a column the run does not read, a
            category value absent from the training data, a non-number for a numeric column,
            or any feature for a run without user features is an error naming the valid ones.
        items: external ids of items the user interacted with (excluded from the ranking).
        k: number of items.
        device: where the scores are computed (default auto).

    Returns:
        (external item ids, scores), best first.
    """
    rec = Recommender.load(run_dir, device=device)
    known = {str(v) for v in rec.train.item_ids}
    unknown = [str(i) for i in items if str(i) not in known]
    if unknown:
        raise NegspaceError(f"item(s) not in the run's catalogue: {', '.join(unknown[:5])}")
    by_name = {str(v): v for v in rec.train.item_ids}
    top = rec.recommend_new({0: [by_name[str(i)] for i in items]}, k=k, features={0: features})
    return top.item.tolist(), [float(s) for s in top.score]


__all__ = ["recommend_cold"]
