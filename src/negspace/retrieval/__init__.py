"""Top-k retrieval with seen-item filtering."""

from negspace.retrieval.topk import topk_items

__all__ = ["topk_items"]
