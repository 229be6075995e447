"""negspace: embedding recommenders from implicit feedback, trained with better negatives."""

__version__ = "0.1.0"
