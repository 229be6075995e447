"""Reading interaction files: plain or gzip text, `user item item ...` lists and CSV/TSV/Parquet
tables (separator and header sniffed, columns found by name or given by the user, times parsed).

This is the exact (pandas) path, which names the file and line of the first problem;
`formats.load_table` tries the streaming one (data/arrow.py) first. `loaders.py` is the entry point.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from negspace.errors import NegspaceError


# ---------------------------------------------------------------------------------------------
# Files, as is or gzip-compressed

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


def _text_lines(path: Path) -> list[str]:
    """The file's lines (gzip or not, whatever its name), decoded as latin-1 (every byte is a
    character, so nothing fails to decode), split on LF only with a trailing CR removed."""
    text = _read_text(path, "latin-1")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


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
