"""Metrics and the full-ranking evaluator."""

from negspace.evaluation.evaluator import evaluate, evaluate_folds

__all__ = ["evaluate", "evaluate_folds"]
