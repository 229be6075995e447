"""The pyarrow path (data/arrow.py) builds the same interactions as the pandas path, keeps the time
column, and hands anything unusual to the pandas path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from negspace.data import loaders
from negspace.data.arrow import code_ids, filter_coded, read_coded

pytest.importorskip("pyarrow")


def _fast(path: Path):
    parquet = path.name.endswith(".parquet")
    sep, header = (",", True) if parquet else loaders._sniff(path)
    return read_coded(path, sep, header,
                      lambda cols, named: loaders._choose_columns(path, cols, named, parquet))


def _both(path: Path, threshold=None, min_user=None, min_item=None):
    """(fast, pandas) results of the same file and filters."""
    fast = _fast(path)
    assert fast is not None, "the clean file should take the pyarrow path"
    t = loaders.read_table(path)
    slow = code_ids(t.users, t.items, t.values, t.kind, t.times)
    args = ("x", threshold, min_user, min_item, "filters")
    return filter_coded(fast, *args), filter_coded(slow, *args)


def _same(a, b) -> None:
    (ia, ta, na), (ib, tb, nb) = a, b
    assert na == nb
    assert list(ia.user_ids) == list(ib.user_ids) and list(ia.item_ids) == list(ib.item_ids)
    assert (ia.matrix != ib.matrix).nnz == 0
    assert np.array_equal(ia.matrix.data, ib.matrix.data)
    assert (ta is None) == (tb is None) and (ta is None or np.array_equal(ta, tb))


def _random_frame(seed: int, strings: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    users = rng.integers(0, 40, n)
    items = rng.integers(0, 60, n) * 7 - 20
    frame = pd.DataFrame({"user_id": users, "item_id": items,
                          "rating": rng.integers(1, 6, n), "timestamp": rng.integers(0, 10**6, n)})
    if strings:
        frame["user_id"] = [f"u{u}" for u in users]
    return frame


@pytest.fixture
def small_blocks(monkeypatch):
    """512-byte blocks: the 400-row files (about 6 KB) stream in a dozen blocks, not one."""
    import negspace.data.arrow as arrow
    monkeypatch.setattr(arrow, "_BLOCK", 512)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("strings", [False, True])
@pytest.mark.parametrize("filters", [(None, None, None), (4, None, None), (3, 3, 2)])
def test_arrow_and_pandas_paths_agree(tmp_path, seed, strings, filters, small_blocks):
    path = tmp_path / "inter.csv"
    _random_frame(seed, strings).to_csv(path, index=False)
    assert path.stat().st_size > 8 * 512
    _same(*_both(path, *filters))


def test_text_that_is_not_ascii_goes_to_the_pandas_path(tmp_path):
    """Latin-1 bytes and UTF-8 accents: the pandas path reads them (as latin-1, one character
    per byte), so ids do not depend on which path read the file."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,item\nb\xe9a,x\nzo\xeb,y\n".encode("latin-1"))
    utf8 = tmp_path / "utf8.csv"
    utf8.write_bytes("user,item\nb\xe9a,x\nzo\xeb,y\n".encode("utf-8"))
    for path in (latin, utf8):
        assert _fast(path) is None
        ds = loaders.load_dataset(str(path), min_user_interactions=0)
        assert sorted(ds.interactions.user_ids) == sorted(
            path.read_bytes().decode("latin-1").split("\n")[i].split(",")[0] for i in (1, 2))


def test_arrow_path_on_gzip_tsv_without_header_and_parquet(tmp_path, small_blocks):
    frame = _random_frame(3, False)
    tsv = tmp_path / "u.data.gz"
    with gzip.open(tsv, "wt") as f:
        frame.to_csv(f, sep="\t", header=False, index=False)
    _same(*_both(tsv, 4))
    pq = tmp_path / "inter.parquet"
    frame.rename(columns={"rating": "plays"}).to_parquet(pq)
    _same(*_both(pq, None, 2))


def test_first_time_of_a_pair_is_kept(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,timestamp\n1,10,50\n1,10,20\n1,11,30\n2,10,99\n")
    ds = loaders.load_dataset(str(path), min_user_interactions=0)
    assert ds.times.tolist() == [20.0, 30.0, 99.0]  # CSR order: (1,10), (1,11), (2,10)


def test_dates_become_seconds(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,date\na,x,1970-01-02\nb,y,1970-01-03\n")
    ds = loaders.load_dataset(str(path))
    assert ds.times.tolist() == [86400.0, 172800.0]


@pytest.mark.parametrize("text", [
    "user,item,rating\n1,2,5\n1,3,abc\n",    # a non-numeric value
    "user,item,rating\n1,2,5\n,3,4\n",       # a missing id
    "user,item,rating\n1,2,nan\n",           # a non-finite value
    "user,item\n7.5,1\n2,1\n",               # float-looking ids: pandas decides
    "user::item\n1::2\n",                    # a separator pyarrow does not take
])
def test_unusual_files_go_to_the_pandas_path(tmp_path, text):
    path = tmp_path / "r.csv"
    path.write_text(text)
    assert _fast(path) is None
