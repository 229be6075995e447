"""Large interaction files read with pyarrow in blocks, ids coded as int32, filtered in numpy.

The pandas reader in `readers.py` holds every field as a Python string (a 9.8M-row CSV cost
several GB); this one streams the file in 16 MB blocks, keeps only the columns it needs as
Arrow arrays (8 bytes per id), and codes the ids to int32 with a hash table (`pc.unique` +
`pc.index_in`). It accepts only clean files: on anything unusual (a parse error, an empty or null
field, a non-numeric or non-finite value, a separator pyarrow does not take, text that is not
ASCII, pyarrow missing) it returns None and `readers.read_table`, the exact pandas path, reads
the file and reports the first bad line. Both paths end in `filter_coded`, so they build the same
interactions (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError

# pyarrow's CSV reader takes single-byte delimiters only; "::" and whitespace go to pandas.
_ARROW_SEPARATORS = (",", "\t", ";", "|")
_BLOCK = 16 << 20

ColumnPicker = Callable[[list[str], bool], "tuple[str, str, str | None, str | None, str | None] | None"]
"""(column names, has header) -> (user, item, value or None, value kind or None, time or None)
columns, or None when the file's columns do not fit (see readers._choose_columns)."""


@dataclass
class Coded:
    """Rows of an interaction file with ids coded against sorted id maps.

    Args:
        users, items: int32 codes, one per row (positions in user_ids / item_ids).
        user_ids, item_ids: sorted external ids (int64, or object arrays of str).
        values: float64 rating or count per row, or None.
        kind: "rating" (duplicates keep the max), "count" (summed) or None.
        times: float64 time per row (seconds, or whatever unit the file uses), or None.
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    values: np.ndarray | None
    kind: str | None
    times: np.ndarray | None


def code_ids(users: np.ndarray, items: np.ndarray, values: np.ndarray | None, kind: str | None,
             times: np.ndarray | None) -> Coded:
    """Codes external id arrays (the pandas path's output) as `Coded` with np.unique."""
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    return Coded(u.astype(np.int32).reshape(-1), i.astype(np.int32).reshape(-1), user_ids,
                 item_ids, values, kind, times)


def read_coded(path: Path, sep: str, header: bool, pick: ColumnPicker) -> Coded | None:
    """Reads a CSV/TSV (gzip or not) or Parquet file with pyarrow; None when it cannot be done
    cleanly (the caller then uses the pandas path, which names the offending line).

    Args:
        path: the file.
        sep: the sniffed separator (ignored for Parquet).
        header: whether the first non-blank line is a header (ignored for Parquet).
        pick: finds (user, item, value, kind, time) column names among the file's columns.

    Returns:
        The coded rows, or None.
    """
    try:
        import pyarrow as pa
    except ImportError:
        return None
    try:
        if path.name.endswith((".parquet", ".pq")):
            return _read_parquet(path, pick)
        if sep not in _ARROW_SEPARATORS:
            return None
        return _read_csv(path, sep, header, pick)
    except (pa.ArrowException, OSError, ValueError, TypeError, EOFError, UnicodeError):
        return None


def _read_csv(path: Path, sep: str, header: bool, pick: ColumnPicker) -> Coded | None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    def stream() -> pa.NativeFile:
        return pa.input_stream(str(path), compression="gzip" if gz else None)
    # UTF-8, pyarrow's native decoding: any other encoding adds a Python transcoder that arrow's
    # I/O thread may release during interpreter exit, which aborts the process (SIGABRT). Text
    # that is not ASCII goes to the pandas path (latin-1 there, so ids could read differently).
    read = pcsv.ReadOptions(autogenerate_column_names=not header, block_size=_BLOCK)
    parse = pcsv.ParseOptions(delimiter=sep)
    # Only an empty field is null: "NA" or "nan" are ids to the pandas path (keep_default_na=False).
    convert = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                  quoted_strings_can_be_null=False)
    with stream() as s:
        names = pcsv.open_csv(s, read_options=read, parse_options=parse,
                              convert_options=convert).schema.names
    if not all(n.isascii() for n in names):
        return None
    chosen = pick(names, header)
    if chosen is None:
        return None
    wanted = [c for c in chosen[:3] + chosen[4:] if c is not None]
    convert.include_columns = wanted
    parts: dict[str, list] = {c: [] for c in wanted}
    with stream() as s:
        reader = pcsv.open_csv(s, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:  # one block at a time: only the wanted columns are kept
            for c in wanted:
                parts[c].append(batch.column(c))
    columns = {c: pa.chunked_array(parts[c]) if parts[c] else None for c in wanted}
    if any(col is not None and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
           and not pc.all(pc.string_is_ascii(col)).as_py() for col in columns.values()):
        return None
    return _code(columns, chosen)


def _read_parquet(path: Path, pick: ColumnPicker) -> Coded | None:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    chosen = pick(names, True)
    if chosen is None:
        return None
    wanted = [c for c in chosen[:3] + chosen[4:] if c is not None]
    table = pq.read_table(path, columns=wanted)
    return _code({c: table.column(c) for c in wanted}, chosen)


def _code(columns: dict, chosen: tuple) -> Coded | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    user_col, item_col, value_col, kind, time_col = chosen
    users, items = columns[user_col], columns[item_col]
    if users is None or len(users) == 0 or users.null_count or items.null_count:
        return None
    coded = []
    for col in (users, items):
        if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type)
                or pa.types.is_large_string(col.type)):
            return None  # floats ("7.5") and the rest: the pandas path decides
        if pa.types.is_integer(col.type):
            col = col.cast(pa.int64())
        elif (pc.any(pc.match_substring_regex(col, r"^\s|\s$")).as_py()
              or pc.all(pc.match_substring_regex(col, r"^[+-]?\d+$")).as_py()):
            return None  # padded or all integer-like strings: pandas' int conversion decides
        uniq = pc.unique(col)
        uniq = uniq.take(pc.sort_indices(uniq))
        codes = pc.index_in(col, value_set=uniq).to_numpy().astype(np.int32, copy=False)
        coded.append((codes, uniq.to_numpy(zero_copy_only=False)))
    values = None
    if value_col is not None:
        col = columns[value_col]
        if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            return None
        values = col.cast(pa.float64()).to_numpy()
        if not np.isfinite(values).all():
            return None
    times = _times(columns[time_col]) if time_col is not None else None
    (u, user_ids), (i, item_ids) = coded
    return Coded(u, i, user_ids, item_ids, values, kind, times)


def _times(col) -> np.ndarray | None:
    """Seconds (or the file's own unit for numbers) per row; None when not a clean time column."""
    import pyarrow as pa

    if col is None or col.null_count:
        return None
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        out = col.cast(pa.float64()).to_numpy()
        return out if np.isfinite(out).all() else None
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        seconds = col.cast(pa.timestamp("s")) if pa.types.is_date(col.type) else col
        return seconds.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy().astype(np.float64)
    return None


def filter_coded(c: Coded, name: str, threshold: float | None, min_user: int | None,
                 min_item: int | None, describe: str) -> tuple[Interactions, np.ndarray | None,
                                                               dict[str, int]]:
    """Merges duplicates, binarises and filters (the order of the loaders' module docstring).

    Args:
        c: coded rows.
        name: the dataset's name, for errors.
        threshold: keep rows with value >= this (None: no threshold).
        min_user, min_item: k-core minima (None or <= 1: none).
        describe: the filters in words, for the "empty" error.

    Returns:
        (interactions, time of each interaction in CSR order or None, notes). A pair seen several
        times keeps its first time: it was known from then on, so a time split never puts a pair
        that training saw into the test set.
    """
    n_i = len(c.item_ids)
    notes = {"rows_read": len(c.users)}
    if c.values is None and threshold is not None:
        raise NegspaceError(f"{name} has no rating or count column; rating_threshold does not apply")
    keys = c.users.astype(np.int64) * n_i + c.items
    values = times = None
    if c.values is None and c.times is None:
        keys = np.unique(keys)
    else:
        order = np.argsort(keys, kind="stable")  # stable: duplicates reduce in file order
        keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        keys = keys[starts]
        if c.values is not None:
            reduce = np.maximum if c.kind == "rating" else np.add
            values = reduce.reduceat(c.values[order], starts)
        if c.times is not None:
            times = np.minimum.reduceat(c.times[order], starts)
        del order, starts
    notes["duplicates_merged"] = notes["rows_read"] - len(keys)
    if threshold is not None:
        keep = values >= threshold
        notes["dropped_below_threshold"] = int((~keep).sum())
        keys, values = keys[keep], values[keep]
        times = None if times is None else times[keep]
    users, items = keys // n_i, keys % n_i
    del keys
    n_users = int(np.count_nonzero(np.bincount(users, minlength=len(c.user_ids))))
    n_items = int(np.count_nonzero(np.bincount(items, minlength=n_i)))
    keep = _k_core(users, items, len(c.user_ids), n_i, min_user, min_item)
    if keep is not None:
        users, items = users[keep], items[keep]
        values = None if values is None else values[keep]
        times = None if times is None else times[keep]
    if min_user or min_item:
        notes["dropped_users"] = n_users - int(np.count_nonzero(np.bincount(users)))
        notes["dropped_items"] = n_items - int(np.count_nonzero(np.bincount(items)))
    if len(users) == 0:
        raise NegspaceError(f"{name} is empty after filtering ({describe})")
    return _csr(users, items, values, c.user_ids, c.item_ids), times, notes


def _k_core(users: np.ndarray, items: np.ndarray, n_u: int, n_i: int, min_user: int | None,
            min_item: int | None) -> np.ndarray | None:
    """Mask of the rows kept once both minima hold at once; None when no minimum applies."""
    if not ((min_user or 0) > 1 or (min_item or 0) > 1):
        return None
    keep = np.ones(len(users), bool)
    changed = True
    while changed and keep.any():
        changed = False
        for codes, size, minimum in ((users, n_u, min_user), (items, n_i, min_item)):
            if minimum and minimum > 1:
                counts = np.bincount(codes[keep], minlength=size)
                drop = keep & (counts[codes] < minimum)
                if drop.any():
                    keep &= ~drop
                    changed = True
    return keep


def _csr(users: np.ndarray, items: np.ndarray, values: np.ndarray | None, user_ids: np.ndarray,
         item_ids: np.ndarray) -> Interactions:
    """CSR over the users and items left, numbered in sorted external-id order. The rows come
    sorted by (user, item), which is CSR order already: no scipy COO round trip."""
    live_u = np.bincount(users, minlength=len(user_ids)) > 0
    live_i = np.bincount(items, minlength=len(item_ids)) > 0
    new_u = np.cumsum(live_u) - 1
    new_i = (np.cumsum(live_i) - 1).astype(np.int32)
    counts = np.bincount(new_u[users], minlength=int(live_u.sum()))
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    indices = new_i[items]
    data = np.ones(len(users), np.float32) if values is None else values.astype(np.float32)
    index_type = np.int32 if len(users) < 2**31 else np.int64
    m = sp.csr_matrix((data, indices.astype(index_type, copy=False),
                       indptr.astype(index_type)), shape=(int(live_u.sum()), int(live_i.sum())))
    m.has_sorted_indices = True
    return Interactions(m, user_ids[live_u], item_ids[live_i])
