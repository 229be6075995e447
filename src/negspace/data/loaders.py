"""Load the named datasets, a train/test folder, or a CSV/TSV/Parquet file into a `Dataset`.

Lookup of a named dataset: `<root>/<name>/` where root is the `data_dir` argument, else
$NEGSPACE_DATA, else `../shared/data` beside the repository (found by walking up from this file to
the folder holding `pyproject.toml`); `~/.cache/negspace/data` (where `negspace data fetch` stores)
is always tried last. Every file may be stored as is or gzip-compressed (`<file>.gz`).

Filtering, in this order, each step optional: duplicate (user, item) rows are merged (ratings keep
the highest, play counts are summed); rows with value < `rating_threshold` are dropped; then users
with fewer than `min_user_interactions` rows and items with fewer than `min_item_interactions` rows
are dropped, repeatedly until both minima hold (a k-core; the paper does not say, and in a single
pass dropping rare artists leaves 126 Last.fm users under the user minimum, 6 of them with
fewer than 4 interactions). The keyword arguments override the defaults below one by one;
0 disables a threshold or a minimum.

Defaults (Tran et al. 2019 binarise and filter each dataset; our stand-ins follow the paper's rule
for the dataset of the same kind):
- movielens-100k (k-fold): rating >= 4 (the usual MovieLens binarisation), users with >= 4
  positives (one test item per user in each of the 4 folds). Side features: u.user (age, gender,
  occupation, zip), u.item (19 genre flags, release year).
- lastfm-hetrec2011 (k-fold, music, stands in for Echonest): the paper's Echonest rule: play count
  >= 5, users with > 20 interactions, items with >= 5 users.
- book-crossing-caserec-subset (k-fold): the paper's Book-Crossing rule applied to the explicit
  ratings: rating >= 5, users with > 10 interactions. We read `book_ratings.dat` (the explicit 1-10
  ratings), not `book_history.dat`: the history mixes implicit "accessed" events, which carry no
  rating and so cannot be binarised at ">= 5" as the paper does. Side features: users_info.dat
  (age, country), items_info.dat (author, publisher, year). The subset was pre-filtered by its
  publisher, so its counts are not the paper's (see its PROVENANCE.md).
- movielens-1m-lcfn, amazon-cds-bgcf, amazon-book-kgat, gowalla-lightgcn (given split; the last
  is the NGCF/LightGCN Gowalla check-in split, sparse): loaded as published, no
  filtering (filtering would change the published split, so it is refused). Train and test share
  one id space built over their union; `notes` records test items never seen in training.
"""

from __future__ import annotations

from pathlib import Path

from negspace.data.catalogue import REGISTRY, DatasetSpec, _complete
from negspace.data.dataset import Dataset
from negspace.data.fetch import DOWNLOADS, SOURCES
from negspace.data.roots import search_roots
from negspace.data.formats import Filters, load_given_split, load_table
from negspace.errors import NegspaceError

# Re-exported: these lived in this module before it was split (readers.py, formats.py,
# catalogue.py), and other modules and tests import them from here.
from negspace.data.readers import (  # noqa: F401
    _ITEM_COLUMNS, _USER_COLUMNS, Columns, Table, _choose_columns, _find_file, _need_file, _pick,
    _sniff, read_table, read_user_lists)


# ---------------------------------------------------------------------------------------------
# Finding files

def find_data_dir(data_dir: str | None) -> Path | None:
    """The first existing folder that named datasets are looked up in.

    Args:
        data_dir: explicit folder; None uses $NEGSPACE_DATA, then `../shared/data` beside the
            repository, then `~/.cache/negspace/data`.

    Returns:
        The folder, or None when none of them exists.
    """
    return next((root for root in search_roots(data_dir) if root.is_dir()), None)


# ---------------------------------------------------------------------------------------------
# Named datasets, folders and files

def _locate(spec: DatasetSpec, data_dir: str | None) -> Path:
    roots = search_roots(data_dir)
    for root in roots:
        if _complete(root / spec.name, spec.required):
            return root / spec.name
    looked = ", ".join(str(r / spec.name) for r in roots)
    if spec.name in DOWNLOADS:
        how = f"`negspace data fetch {spec.name}` downloads it"
    else:
        how = (f"it cannot be downloaded automatically: get {SOURCES.get(spec.name, 'it')} and put "
               f"the files ({', '.join(spec.required)}, optionally .gz) in <data dir>/{spec.name}/")
    raise NegspaceError(f"dataset {spec.name} not found (looked in {looked}); {how}")


def _resolve(defaults: Filters, rating_threshold: float | None, min_user: int | None,
             min_item: int | None) -> Filters:
    """Each given keyword replaces its default; 0 turns a default off."""
    def pick(given, default):
        value = default if given is None else given
        return None if value == 0 else value
    return Filters(pick(rating_threshold, defaults.rating_threshold),
                   pick(min_user, defaults.min_user_interactions),
                   pick(min_item, defaults.min_item_interactions))


def load_dataset(name_or_path: str, data_dir: str | None = None, *,
                 rating_threshold: float | None = None, min_user_interactions: int | None = None,
                 min_item_interactions: int | None = None, columns: Columns = Columns()
                 ) -> Dataset:
    """Loads a named dataset, a train/test folder or an interaction file.

    Args:
        name_or_path: a name from `list_datasets()`; a folder holding train.txt and test.txt
            (given split) or named like a known dataset; or a CSV/TSV/Parquet file (k-fold).
        data_dir: folder holding the named datasets (see the module docstring for the lookup).
        rating_threshold: keep rows whose rating (or play count) is >= this; 0 keeps all.
        min_user_interactions: drop users with fewer rows; 0 keeps all.
        min_item_interactions: drop items with fewer rows (after the user filter); 0 keeps all.
        columns: a file's user, item, weight and time columns by name (see `Columns`); only
            for a CSV/TSV/Parquet file.

    Returns:
        The Dataset; `notes` holds the counts dropped or worth reporting.
    """
    def filters_for(defaults: Filters) -> Filters:
        return _resolve(defaults, rating_threshold, min_user_interactions, min_item_interactions)

    path = Path(name_or_path).expanduser()
    if columns.given() and not path.is_file():
        flag = next(iter(columns.given())).replace("_", "-")
        raise NegspaceError(f"--{flag} names a column of a CSV/TSV/Parquet file; {name_or_path} "
                            "is a named dataset or a folder, read with its own layout")

    spec = REGISTRY.get(name_or_path)
    if spec is not None:
        return spec.build(_locate(spec, data_dir), spec.name, filters_for(spec.defaults))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if _complete(path, ("train.txt", "test.txt")):
            return load_given_split(path, str(path), filters_for(Filters()))
        spec = REGISTRY.get(path.name)
        if spec is not None:
            if not _complete(path, spec.required):
                raise NegspaceError(f"{path} lacks {', '.join(spec.required)} (or .gz)")
            return spec.build(path, spec.name, filters_for(spec.defaults))
        raise NegspaceError(f"{path} holds neither train.txt and test.txt nor a known dataset")
    if path.is_file():
        return load_table(path, str(path), filters_for(Filters()), columns)
    for root in search_roots(data_dir):  # an unregistered train/test folder beside the named ones
        if _complete(root / name_or_path, ("train.txt", "test.txt")):
            return load_given_split(root / name_or_path, name_or_path, filters_for(Filters()))
    raise NegspaceError(f"unknown dataset {name_or_path!r}: neither a known name "
                        f"({', '.join(REGISTRY)}) nor an existing file or folder")


def list_datasets(data_dir: str | None = None) -> list[dict[str, object]]:
    """The named datasets with their protocol, where each was found ("missing" if nowhere) and
    whether `negspace data fetch` can download it."""
    rows = []
    for spec in REGISTRY.values():
        try:
            where = str(_locate(spec, data_dir))
        except NegspaceError:
            where = "missing"
        rows.append({"name": spec.name, "protocol": spec.protocol, "where": where,
                     "fetchable": spec.name in DOWNLOADS})
    return rows
