"""The named datasets: where each one's files are, its protocol, its default filters (listed in
`loaders.py`'s module docstring) and the readers of its side features.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from negspace.data.dataset import Dataset, Protocol
from negspace.data.formats import Filters, load_given_split, load_table
from negspace.data.readers import _find_file, _need_file, _one_line, _read_text
from negspace.errors import NegspaceError


def _side_features(path: Path | None, read: Callable[[Path], pd.DataFrame],
                   ids: np.ndarray) -> pd.DataFrame | None:
    """Reads an optional side-feature file indexed by external id, in the order of `ids`.

    Returns:
        The features, or None when there is no such file; a malformed file raises NegspaceError
        naming it, in one line.
    """
    if path is None:
        return None
    try:
        return read(path).reindex(ids)
    except NegspaceError:
        raise
    except Exception as e:  # pandas and numpy raise many types on malformed tables
        raise NegspaceError(f"{path}: cannot read side features ({type(e).__name__}: "
                            f"{_one_line(e)})") from None


_ML_GENRES = ["unknown", "action", "adventure", "animation", "children", "comedy", "crime",
              "documentary", "drama", "fantasy", "film_noir", "horror", "musical", "mystery",
              "romance", "sci_fi", "thriller", "war", "western"]


def _ml_users(path: Path) -> pd.DataFrame:
    users = pd.read_csv(path, sep="|", header=None, encoding="latin-1",
                        names=["user_id", "age", "gender", "occupation", "zip"],
                        dtype={"zip": str}).set_index("user_id")
    users["gender"] = users["gender"].astype("category")
    users["occupation"] = users["occupation"].astype("category")
    return users


def _ml_items(path: Path) -> pd.DataFrame:
    items = pd.read_csv(path, sep="|", header=None, encoding="latin-1",
                        names=["item_id", "title", "release_date", "video_date", "url", *_ML_GENRES])
    features = items.set_index("item_id")[_ML_GENRES].astype(np.int8)
    dates = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
    features["year"] = dates.dt.year.to_numpy(np.float64)
    return features


def _with_features(folder: Path, name: str, filters: Filters, files: tuple[str, str, str],
                   read_users: Callable[[Path], pd.DataFrame],
                   read_items: Callable[[Path], pd.DataFrame]) -> Dataset:
    """The interactions of `files[0]` with the user and item side features of `files[1:]`."""
    ds = load_table(_need_file(folder, files[0]), name, filters)
    inter = ds.interactions
    ds.user_features = _side_features(_find_file(folder, files[1]), read_users, inter.user_ids)
    ds.item_features = _side_features(_find_file(folder, files[2]), read_items, inter.item_ids)
    return ds


def _movielens_100k(folder: Path, name: str, filters: Filters) -> Dataset:
    return _with_features(folder, name, filters, ("u.data", "u.user", "u.item"),
                          _ml_users, _ml_items)


def _lastfm(folder: Path, name: str, filters: Filters) -> Dataset:
    return load_table(_need_file(folder, "user_artists.dat"), name, filters)


def _rejoin(parts: list[str]) -> str:
    return html.unescape(";".join(parts)).strip()


def _bx_items(path: Path) -> pd.DataFrame:
    """items_info.dat: every ';' of the original CSV became a tab (so '&amp;' reads '&amp<TAB>'),
    which splits some titles and publishers over several fields; the three image URLs close each
    line and the year is the first all-digit field after title and author."""
    rows = []
    for line in _read_text(path).splitlines()[1:]:
        fields = line.rstrip("\t").split("\t")
        if len(fields) < 9 or not fields[0].isdigit():
            continue
        middle = fields[2:-3]  # title..., author, year, publisher...
        k = next((j for j in range(2, len(middle)) if middle[j].strip().isdigit()), None)
        if k is None:
            continue
        year = int(middle[k])
        rows.append((int(fields[0]), _rejoin(middle[k - 1:k]), _rejoin(middle[k + 1:]),
                     float(year) if year > 0 else np.nan))
    return pd.DataFrame(rows, columns=["item_id", "author", "publisher", "year"]).set_index("item_id")


def _bx_users(path: Path) -> pd.DataFrame:
    users = pd.read_csv(path, sep="\t", usecols=[0, 1, 2], dtype=str, keep_default_na=False)
    users.columns = ["user_id", "location", "age"]
    return pd.DataFrame({
        "age": pd.to_numeric(users["age"], errors="coerce").to_numpy(),
        "country": users["location"].str.rsplit(",", n=1).str[-1].str.strip().to_numpy(),
    }, index=users["user_id"].astype(np.int64))


def _book_crossing(folder: Path, name: str, filters: Filters) -> Dataset:
    return _with_features(folder, name, filters,
                          ("book_ratings.dat", "users_info.dat", "items_info.dat"),
                          _bx_users, _bx_items)


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its protocol, the files that must be present and its default filters."""

    name: str
    protocol: Protocol
    required: tuple[str, ...]
    defaults: Filters
    build: Callable[[Path, str, Filters], Dataset]


REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("movielens-100k", "kfold", ("u.data",), Filters(4, 4, None), _movielens_100k),
    DatasetSpec("lastfm-hetrec2011", "kfold", ("user_artists.dat",), Filters(5, 21, 5), _lastfm),
    DatasetSpec("book-crossing-caserec-subset", "kfold", ("book_ratings.dat",),
                Filters(5, 11, None), _book_crossing),
    DatasetSpec("movielens-1m-lcfn", "given", ("train.txt", "test.txt"), Filters(), load_given_split),
    DatasetSpec("amazon-cds-bgcf", "given", ("train.txt", "test.txt"), Filters(), load_given_split),
    DatasetSpec("amazon-book-kgat", "given", ("train.txt", "test.txt"), Filters(), load_given_split),
    DatasetSpec("gowalla-lightgcn", "given", ("train.txt", "test.txt"), Filters(), load_given_split),
)}


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return folder.is_dir() and all(_find_file(folder, f) is not None for f in files)
