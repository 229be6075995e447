"""Ranking metrics and the full-ranking evaluator."""

from negspace.evaluation.evaluator import evaluate, evaluate_folds
from negspace.evaluation.metrics import (RANKING_METRICS, average_precision, hit_rate,
                                         median_rank_popularity, ndcg, precision, recall)

__all__ = ["RANKING_METRICS", "average_precision", "evaluate", "evaluate_folds", "hit_rate",
           "median_rank_popularity", "ndcg", "precision", "recall"]
