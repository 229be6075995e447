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
- movielens-1m-lcfn, amazon-cds-bgcf, amazon-book-kgat (given split): loaded as published, no
  filtering (filtering would change the published split, so it is refused). Train and test share
  one id space built over their union; `notes` records test items never seen in training.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from negspace.data.arrow import code_ids, filter_coded, read_coded
from negspace.data.dataset import Dataset, Protocol
from negspace.data.fetch import DOWNLOADS, SOURCES, default_cache_dir
from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


@dataclass(frozen=True)
class Filters:
    """Binarisation and filtering; None means "not applied"."""

    rating_threshold: float | None = None
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None

    def active(self) -> bool:
        return (self.rating_threshold is not None or (self.min_user_interactions or 0) > 1
                or (self.min_item_interactions or 0) > 1)

    def describe(self) -> str:
        parts = [f"rating >= {self.rating_threshold:g}" if self.rating_threshold is not None else "",
                 f"users with >= {self.min_user_interactions}" if self.min_user_interactions else "",
                 f"items with >= {self.min_item_interactions}" if self.min_item_interactions else ""]
        return ", ".join(p for p in parts if p) or "no filter"


# ---------------------------------------------------------------------------------------------
# Finding files

def _repo_shared_data() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            candidate = parent.parent / "shared" / "data"
            return candidate if candidate.is_dir() else None
    return None


def _roots(data_dir: str | None) -> list[Path]:
    """Folders searched for a named dataset, in order."""
    env = os.environ.get("NEGSPACE_DATA")
    primary = (Path(data_dir).expanduser() if data_dir else Path(env).expanduser() if env
               else _repo_shared_data())
    roots = [primary] if primary is not None else []
    cache = default_cache_dir()
    return roots + ([cache] if cache not in roots else [])


def find_data_dir(data_dir: str | None) -> Path | None:
    """The first existing folder that named datasets are looked up in.

    Args:
        data_dir: explicit folder; None uses $NEGSPACE_DATA, then `../shared/data` beside the
            repository, then `~/.cache/negspace/data`.

    Returns:
        The folder, or None when none of them exists.
    """
    return next((root for root in _roots(data_dir) if root.is_dir()), None)


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _need_file(folder: Path, name: str) -> Path:
    path = _find_file(folder, name)
    if path is None:
        raise NegspaceError(f"{folder} has no {name} (or {name}.gz)")
    return path


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise NegspaceError(f"{path}: corrupt gzip data ({_one_line(e)})") from None
    elif path.name.endswith(".gz"):  # else junk would be parsed as text and fail on a later symptom
        raise NegspaceError(f"{path}: not a gzip file (named .gz, but it does not start with "
                            "gzip's magic bytes)")
    return raw.decode(encoding, errors="replace")


# ---------------------------------------------------------------------------------------------
# Given split: `user item item ...` per line

def read_user_lists(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parses a LightGCN-style file, one line per user: `user item item ...`.

    Args:
        path: the file (gzip-compressed or not; CRLF and blank lines tolerated).

    Returns:
        (users, items) int64 arrays, one entry per listed item, and every user heading a line
        (users with an empty list included).
    """
    lines = _text_lines(path)
    heads: list[str] = []
    lengths: list[int] = []
    tokens: list[str] = []
    for line in lines:
        parts = line.split()
        if parts:
            heads.append(parts[0])
            lengths.append(len(parts) - 1)
            tokens.extend(parts[1:])
    try:
        # One C-level pass; only when it fails do we look for the offending line.
        head_ids = np.fromiter(map(int, heads), np.int64, len(heads))
        items = np.fromiter(map(int, tokens), np.int64, len(tokens))
    except ValueError:
        raise NegspaceError(_first_bad_token(path, lines)) from None
    users = np.repeat(head_ids, np.asarray(lengths, np.int64))
    return users, items, head_ids


def _first_bad_token(path: Path, lines: list[str]) -> str:
    for number, line in enumerate(lines, 1):
        for token in line.split():
            try:
                int(token)
            except ValueError:
                return f"{path} line {number}: expected integer ids, got {token!r}"
    return f"{path}: expected integer ids"  # not reached: the fast pass failed on some token


def _shared_index(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    return np.searchsorted(universe, ids)


def _binary(users: np.ndarray, items: np.ndarray, user_ids: np.ndarray,
            item_ids: np.ndarray) -> tuple[Interactions, int]:
    """Binary interactions in the given id space; returns them and the number of duplicates merged."""
    u, i = _shared_index(users, user_ids), _shared_index(items, item_ids)
    keys = np.unique(u * len(item_ids) + i)
    inter = Interactions.from_indices(keys // len(item_ids), keys % len(item_ids), user_ids, item_ids)
    return inter, len(users) - len(keys)


def load_given_split(folder: Path, name: str, filters: Filters = Filters()) -> Dataset:
    """Loads `train.txt` / `test.txt` from folder; ids are shared over the union of both files.

    Args:
        folder: holds train.txt and test.txt (or .gz).
        name: the dataset's name in the result.
        filters: must be inactive: a published split is used as it is.

    Returns:
        A "given" Dataset whose catalogue holds every user and item of either file.
    """
    if filters.active():
        raise NegspaceError(f"{name} is a published train/test split; rating threshold and "
                            f"minimum-interaction filters would change it ({filters.describe()})")
    tr_u, tr_i, tr_heads = read_user_lists(_need_file(folder, "train.txt"))
    te_u, te_i, te_heads = read_user_lists(_need_file(folder, "test.txt"))
    for file, users in (("train.txt", tr_u), ("test.txt", te_u)):
        if len(users) == 0:
            raise NegspaceError(f"{name}: {file} holds no interactions")
    user_ids = np.unique(np.concatenate([tr_heads, te_heads]))
    item_ids = np.unique(np.concatenate([tr_i, te_i]))
    train, dup_train = _binary(tr_u, tr_i, user_ids, item_ids)
    test, dup_test = _binary(te_u, te_i, user_ids, item_ids)
    train_items = train.item_counts() > 0
    test_items = test.item_counts() > 0
    train_deg, test_deg = train.user_degrees(), test.user_degrees()
    notes = {
        "train_interactions": train.nnz,
        "test_interactions": test.nnz,
        "test_items_not_in_train": int((test_items & ~train_items).sum()),
        "test_interactions_on_items_not_in_train": int((~train_items[test.indices]).sum()),
        "test_users_without_train_items": int(((test_deg > 0) & (train_deg == 0)).sum()),
        "users_without_test_items": int((test_deg == 0).sum()),
        "train_test_overlap": int(test.contains(*train.pairs()).sum()),
        "duplicates_merged": dup_train + dup_test,
    }
    return Dataset(name=name, protocol="given", interactions=train, test=test, notes=notes)


# ---------------------------------------------------------------------------------------------
# Tables: one interaction per row

def _norm(column: object) -> str:
    return re.sub(r"[\s_\-]", "", str(column)).lower()


_USER_COLUMNS = ("user", "userid", "uid", "u", "users", "customer", "customerid", "reviewerid",
                 "visitorid", "memberid", "listener", "listenerid")
_ITEM_COLUMNS = ("item", "itemid", "iid", "i", "items", "movie", "movieid", "artist", "artistid",
                 "book", "bookid", "isbn", "product", "productid", "asin", "song", "songid",
                 "track", "trackid")
_RATING_COLUMNS = ("rating", "ratings", "score", "stars", "overall", "bookrating")
_COUNT_COLUMNS = ("weight", "count", "playcount", "plays", "clicks", "value", "accessed", "listens")
_TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "date", "unixreviewtime", "eventtime",
                 "createdat", "created")


@dataclass(frozen=True)
class Columns:
    """Column names a user gives for a file (`--user-col`, `--item-col`, `--weight-col`,
    `--time-col`); None: found by name as usual (see `read_table`)."""

    user: str | None = None
    item: str | None = None
    weight: str | None = None
    time: str | None = None

    def given(self) -> dict[str, str]:
        """{option name: column} of the names given."""
        return {f"{k}_col": v for k, v in vars(self).items() if v is not None}


@dataclass
class Table:
    """Interaction rows read from a file. `kind` says how duplicate rows merge: "rating" keeps
    the highest value, "count" sums them; None when there is no value column."""

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray | None
    kind: str | None
    times: np.ndarray | None = None


def _pick(columns: list[object], names: tuple[str, ...]) -> object | None:
    normed = {_norm(c): c for c in columns}
    return next((normed[n] for n in names if n in normed), None)


def _sniff(path: Path) -> tuple[str, bool]:
    """(separator, has_header) from the first non-blank line."""
    return _sniff_line(_first_line(path))


def _sniff_line(first: str) -> tuple[str, bool]:
    """(separator, has_header) of a file whose first non-blank line is `first`."""
    sep = next((s for s in ("\t", "::", ",", ";", "|") if s in first), r"\s+")
    fields = re.split(sep, first.strip()) if sep == r"\s+" else first.split(sep)
    known = _USER_COLUMNS + _ITEM_COLUMNS + _RATING_COLUMNS + _COUNT_COLUMNS
    # Without a known column name, a first line whose two leading fields are not integers is still
    # a header (of unknown names, reported as such) rather than data.
    integers = all(re.fullmatch(r"\s*-?\d+\s*", f) for f in fields[:2])
    return sep, any(_norm(f) in known for f in fields) or not integers


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="latin-1") if gz
          else open(path, encoding="latin-1")) as f:
        return next((line.rstrip("\r\n") for line in f if line.strip()), "")


def _ids(column: pd.Series) -> np.ndarray:
    """Integer ids when every value is an integer, else the strings themselves."""
    try:
        return column.astype(np.int64).to_numpy()
    except (ValueError, OverflowError):
        return column.astype(str).to_numpy()


def read_table(path: Path, names: Columns = Columns()) -> Table:
    """Reads a CSV/TSV (optionally .gz; separator and header sniffed) or Parquet file.

    Columns are found by name (user/user_id/userId..., item/item_id/movieId/artistID...,
    rating/score... or weight/count/plays..., timestamp/time/date...); a file without a header
    (its first line starts with two integers) is read as `user, item[, rating[, timestamp]]`.
    This is the exact (pandas) path; `load_table` tries the streaming one (data/arrow.py) first.

    Args:
        path: the file.
        names: columns named by the user, replacing the guess for each one given.

    Returns:
        The rows, validated: a missing id or a non-numeric value raises NegspaceError naming the
        file and the line (row for Parquet) of the first problem.
    """
    parquet = path.name.endswith((".parquet", ".pq"))
    header_lines = 0
    if parquet:
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types
            raise NegspaceError(f"{path}: cannot read Parquet file ({e})") from None
    else:
        df, header_lines = _read_delimited(path)
    # Rows keep their position in the file as index (blank lines included), hence the line numbers.
    where = (lambda r: f"row {r + 1}") if parquet else (lambda r: f"line {r + 1}")
    user_col, item_col, value_col, kind, time_col = _choose_columns(
        path, list(df.columns), bool(parquet or header_lines), parquet, names)
    if df.empty:
        raise NegspaceError(f"{path} holds no interaction rows")
    for col, what in ((user_col, "user id"), (item_col, "item id")):
        missing = (df[col].isna() | (df[col].astype(str) == "")).to_numpy()
        if missing.any():
            raise NegspaceError(f"{path} {where(int(df.index[missing.argmax()]))}: missing {what}")
    values = None
    if value_col is not None:
        raw = df[value_col]
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(numbers)
        if bad.any():
            r = int(bad.argmax())
            raise NegspaceError(f"{path} {where(int(df.index[r]))}: expected a number in column "
                                f"{value_col!s}, got {raw.iloc[r]!r}")  # nan and inf included
        values = numbers
    times = _parse_times(df[time_col]) if time_col is not None else None
    return Table(_ids(df[user_col]), _ids(df[item_col]), values, kind, times)


def _choose_columns(path: Path, columns: list, named: bool, parquet: bool = False,
                    names: Columns = Columns()
                    ) -> tuple[object, object, object | None, str | None, object | None]:
    """(user, item, value, value kind, time) columns of a file; the value kind is "rating",
    "count" or None. `named`: the columns have names (a header or Parquet); else they are
    taken by position as user, item[, rating[, timestamp]]. `names`: the user's choice of
    columns, each given one replacing the guess."""
    if len({_norm(c) for c in columns}) < len(columns):
        raise NegspaceError(f"{path} {'schema' if parquet else 'header'}: duplicate column "
                            f"names in {[str(c) for c in columns]}")
    if names.given():
        return _named_columns(path, columns, named, names)
    if named:
        user_col, item_col = _pick(columns, _USER_COLUMNS), _pick(columns, _ITEM_COLUMNS)
        value_col = _pick(columns, _RATING_COLUMNS)
        kind = "rating" if value_col is not None else None
        if value_col is None:
            value_col = _pick(columns, _COUNT_COLUMNS)
            kind = "count" if value_col is not None else None
        if user_col is None or item_col is None:
            raise NegspaceError(f"{path}: no {'user' if user_col is None else 'item'} column among "
                                f"{[str(c) for c in columns]} (expected e.g. user/user_id/userId "
                                f"and item/item_id/itemId/movieId); name it with "
                                f"--{'user' if user_col is None else 'item'}-col")
        return user_col, item_col, value_col, kind, _pick(columns, _TIME_COLUMNS)
    if len(columns) < 2:
        raise NegspaceError(f"{path} line 1: expected at least 2 columns (user, item), got 1")
    value_col, kind = (columns[2], "rating") if len(columns) > 2 else (None, None)
    return columns[0], columns[1], value_col, kind, columns[3] if len(columns) > 3 else None


def _named_columns(path: Path, columns: list, named: bool, names: Columns
                   ) -> tuple[object, object, object | None, str | None, object | None]:
    """`_choose_columns` with the user's names: each given name must be a column (exactly, or
    up to case, spaces, dashes and underscores); the others are guessed by name as usual. A
    weight column merges duplicate rows by its maximum when named like a rating, else by sum."""
    flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in names.given().items())
    if not named:
        raise NegspaceError(f"{path}: {flags} need a header line naming the columns; the first "
                            "line looks like data")
    def find(name: str | None, option: str, guess: tuple[str, ...]) -> object | None:
        if name is None:
            return _pick(columns, guess) if guess else None
        exact = [c for c in columns if str(c) == name] or \
            [c for c in columns if _norm(c) == _norm(name)]
        if not exact:
            raise NegspaceError(f"{path}: no column {name!r} (--{option}) among "
                                f"{[str(c) for c in columns]}")
        return exact[0]
    user_col = find(names.user, "user-col", _USER_COLUMNS)
    item_col = find(names.item, "item-col", _ITEM_COLUMNS)
    if user_col is None or item_col is None:
        what = "user" if user_col is None else "item"
        raise NegspaceError(f"{path}: no {what} column among {[str(c) for c in columns]}; "
                            f"name it with --{what}-col")
    if names.weight is not None:
        value_col = find(names.weight, "weight-col", ())
        kind = "rating" if _norm(value_col) in _RATING_COLUMNS else "count"
    else:
        value_col, kind = _pick(columns, _RATING_COLUMNS), "rating"
        if value_col is None:
            value_col, kind = _pick(columns, _COUNT_COLUMNS), "count"
        kind = kind if value_col is not None else None
    time_col = find(names.time, "time-col", _TIME_COLUMNS)
    chosen = [c for c in (user_col, item_col, value_col, time_col) if c is not None]
    if len(set(map(str, chosen))) < len(chosen):
        raise NegspaceError(f"{path}: one column chosen for two roles ({flags})")
    return user_col, item_col, value_col, kind, time_col


def _parse_times(column: pd.Series) -> np.ndarray | None:
    """Numbers as they are, dates as Unix seconds; None when some value is neither (a time
    column is optional: only the time splits need it, and they say so)."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    if np.isfinite(numbers).all():
        return numbers
    try:
        dates = pd.to_datetime(column, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):
        return None
    if dates.isna().any():
        return None
    return (dates.astype("int64").to_numpy() // 10**9).astype(np.float64)


def _read_delimited(path: Path) -> tuple[pd.DataFrame, int]:
    """Reads a delimited text file (gzip or not, whatever its name; LF or CRLF) as strings.

    Returns:
        The rows, indexed by their 0-based line number in the file, blank lines dropped, columns
        named by the header when there is one; and the number of header lines (0 or 1).
    """
    numbers, lines = [], []
    for number, line in enumerate(_text_lines(path), 1):
        if line.strip():
            if "\r" in line:  # pandas would end the row there and every later line number shift
                raise NegspaceError(f"{path} line {number}: stray carriage return inside the line")
            numbers.append(number)
            lines.append(line)
    if not lines:
        raise NegspaceError(f"{path} is empty")
    sep, header = _sniff_line(lines[0])
    # pandas pads short lines with empty fields, so count them here (quoted lines are left to it)
    count = (lambda line: len(line.split())) if sep == r"\s+" else (lambda line: line.count(sep) + 1)
    width = count(lines[0])
    for number, line in zip(numbers, lines):
        if '"' not in line and count(line) != width:
            raise NegspaceError(f"{path} line {number}: expected {width} fields, got {count(line)}")
    try:
        # header=None: the first line fixes the field count, a longer line is an error (with
        # header=0 pandas silently turns extra fields into an index or drops them).
        df = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, header=None, dtype=str,
                         keep_default_na=False, index_col=False,
                         engine="python" if len(sep) > 1 else "c")
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m and int(m[2]) <= len(numbers):
            raise NegspaceError(f"{path} line {numbers[int(m[2]) - 1]}: expected {m[1]} fields, "
                                f"got {m[3]}") from None
        raise NegspaceError(f"{path}: {_one_line(e)}") from None
    except (ValueError, csv.Error) as e:
        raise NegspaceError(f"{path}: cannot read ({type(e).__name__}: {_one_line(e)})") from None
    if len(df) != len(numbers):  # a quoted field spanning lines: line numbers would be wrong
        raise NegspaceError(f"{path}: a quoted field spans several lines (unbalanced quote?)")
    df.index = np.asarray(numbers) - 1
    if header:
        df.columns = list(df.iloc[0])
        df = df.iloc[1:]
    return df, int(header)


def _text_lines(path: Path) -> list[str]:
    """The file's lines (gzip or not, whatever its name), decoded as latin-1 (every byte is a
    character, so nothing fails to decode), split on LF only with a trailing CR removed."""
    text = _read_text(path, "latin-1")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def load_table(path: Path, name: str | None = None, filters: Filters = Filters(),
               names: Columns = Columns()) -> Dataset:
    """Loads a CSV/TSV/Parquet interaction file as a k-fold dataset (see `read_table`).

    Clean files stream through pyarrow (data/arrow.py: int32 codes, no Python strings); anything
    else, or a file that fails there, is read by the exact pandas path, which names the first bad
    line. A time column, when there is one, is kept (`Dataset.times`) for the time splits.
    """
    label = name or str(path)
    parquet = path.name.endswith((".parquet", ".pq"))
    try:
        sep, header = (",", True) if parquet else _sniff(path)
    except (OSError, EOFError, zlib.error):  # corrupt gzip: the pandas path says so
        sep, header = "", False

    def pick(columns: list[str], named: bool):
        try:
            return _choose_columns(path, columns, named, parquet, names)
        except NegspaceError:
            return None  # the pandas path reports it
    coded = read_coded(path, sep, header, pick)
    if coded is None:
        table = read_table(path, names)
        coded = code_ids(table.users, table.items, table.values, table.kind, table.times)
        del table
    inter, times, notes = filter_coded(
        coded, label, filters.rating_threshold, filters.min_user_interactions,
        filters.min_item_interactions, filters.describe())
    return Dataset(name=label, protocol="kfold", interactions=inter, notes=notes, times=times)


# ---------------------------------------------------------------------------------------------
# Named datasets

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


def _movielens_100k(folder: Path, name: str, filters: Filters) -> Dataset:
    ds = load_table(_need_file(folder, "u.data"), name, filters)
    inter = ds.interactions
    ds.user_features = _side_features(_find_file(folder, "u.user"), _ml_users, inter.user_ids)
    ds.item_features = _side_features(_find_file(folder, "u.item"), _ml_items, inter.item_ids)
    return ds


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
    ds = load_table(_need_file(folder, "book_ratings.dat"), name, filters)
    inter = ds.interactions
    ds.user_features = _side_features(_find_file(folder, "users_info.dat"), _bx_users, inter.user_ids)
    ds.item_features = _side_features(_find_file(folder, "items_info.dat"), _bx_items, inter.item_ids)
    return ds


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
)}


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return folder.is_dir() and all(_find_file(folder, f) is not None for f in files)


def _locate(spec: DatasetSpec, data_dir: str | None) -> Path:
    roots = _roots(data_dir)
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
    for root in _roots(data_dir):  # an unregistered train/test folder beside the named ones
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
