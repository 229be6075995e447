"""Top-k retrieval with seen-item filtering."""

from negspace.retrieval.topk import ScoreFn, csr_entries, topk_items

__all__ = ["ScoreFn", "csr_entries", "topk_items"]
