"""Interactions, datasets, loaders, downloads and splits."""

from negspace.data.dataset import Dataset
from negspace.data.fetch import fetch_dataset
from negspace.data.interactions import Interactions
from negspace.data.loaders import list_datasets, load_dataset
from negspace.data.splits import holdout_split, kfold_split

__all__ = ["Dataset", "Interactions", "fetch_dataset", "holdout_split", "kfold_split",
           "list_datasets", "load_dataset"]
