"""Loading named datasets, train/test folders and interaction files; validation and lookup."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from negspace.data import load_dataset
from negspace.data.loaders import find_data_dir, list_datasets
from negspace.errors import NegspaceError

# name -> (users, items, interactions, test interactions) under the default filters.
EXPECTED = {
    "movielens-100k": (940, 1447, 55369, None),
    "lastfm-hetrec2011": (1684, 2579, 67110, None),
    "book-crossing-caserec-subset": (1294, 14550, 60839, None),
    "movielens-1m-lcfn": (6022, 3043, 796244, 99455),
    "amazon-cds-bgcf": (43169, 35648, 604475, 172951),
    "amazon-book-kgat": (70679, 24915, 652514, 193920),
    "gowalla-lightgcn": (29858, 40981, 810128, 217242),
}


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No $NEGSPACE_DATA and an empty home, so only folders given explicitly are searched."""
    monkeypatch.delenv("NEGSPACE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _where(name: str) -> str:
    return next(row["where"] for row in list_datasets() if row["name"] == name)


@pytest.mark.slow  # loads every shared dataset (amazon-book: 2.4M interactions)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_dataset_counts(name):
    if find_data_dir(None) is None or _where(name) == "missing":
        pytest.skip(f"{name} not available locally")
    users, items, nnz, test_nnz = EXPECTED[name]
    ds = load_dataset(name)
    assert ds.name == name
    assert (ds.interactions.n_users, ds.interactions.n_items, ds.interactions.nnz) == (users, items, nnz)
    if test_nnz is None:
        assert ds.protocol == "kfold" and ds.test is None
    else:
        assert ds.protocol == "given" and ds.test.nnz == test_nnz
        assert ds.test.n_items == items and ds.test.n_users == users  # one shared id space
        assert ds.notes["test_items_not_in_train"] == 0


def test_side_features_and_overrides():
    if find_data_dir(None) is None or _where("movielens-100k") == "missing":
        pytest.skip("movielens-100k not available locally")
    ds = load_dataset("movielens-100k")
    assert list(ds.user_features.index) == list(ds.interactions.user_ids)
    assert {"age", "gender", "occupation", "zip"} <= set(ds.user_features.columns)
    assert "year" in ds.item_features.columns and ds.item_features.shape == (1447, 20)
    raw = load_dataset("movielens-100k", rating_threshold=0, min_user_interactions=0)
    assert (raw.interactions.n_users, raw.interactions.n_items, raw.interactions.nnz) == (943, 1682, 100000)


@pytest.mark.slow
def test_kgat_notes_users_without_test():
    if find_data_dir(None) is None or _where("amazon-book-kgat") == "missing":
        pytest.skip("amazon-book-kgat not available locally")
    assert load_dataset("amazon-book-kgat").notes["users_without_test_items"] == 88


# --- given split from a folder ---------------------------------------------------------------

TRAIN = "0 0 1 2\r\n1 2 2\r\n\r\n2\r\n"  # CRLF, a blank line, a duplicate, a user with no items
TEST = "0 3\r\n1 1\r\n2 4\r\n"


def _write(path: Path, text: str, gz: bool) -> None:
    if gz:
        with gzip.open(f"{path}.gz", "wt", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, newline="")


@pytest.mark.parametrize("gz", [False, True])
def test_given_split_folder(tmp_path, gz):
    _write(tmp_path / "train.txt", TRAIN, gz)
    _write(tmp_path / "test.txt", TEST, gz)
    ds = load_dataset(str(tmp_path))
    assert ds.protocol == "given"
    assert list(ds.interactions.user_ids) == [0, 1, 2]
    assert list(ds.interactions.item_ids) == [0, 1, 2, 3, 4]  # test-only items are in the catalogue
    assert ds.interactions.nnz == 4 and ds.test.nnz == 3
    assert set(ds.interactions.matrix.data) == {1.0}  # the duplicate was merged, not summed
    assert ds.notes["test_items_not_in_train"] == 2
    assert ds.notes["test_users_without_train_items"] == 1
    assert ds.notes["duplicates_merged"] == 1
    assert ds.test.contains([2], [4])[0]


def test_given_split_by_name_in_data_dir(isolated):
    folder = isolated / "data" / "mysplit"
    folder.mkdir(parents=True)
    _write(folder / "train.txt", TRAIN, True)
    _write(folder / "test.txt", TEST, False)
    assert load_dataset("mysplit", str(isolated / "data")).test.nnz == 3


def test_given_split_refuses_filters(tmp_path):
    _write(tmp_path / "train.txt", TRAIN, False)
    _write(tmp_path / "test.txt", TEST, False)
    with pytest.raises(NegspaceError, match="published train/test split"):
        load_dataset(str(tmp_path), min_user_interactions=5)


@pytest.mark.parametrize("gz", [False, True])
def test_malformed_line_names_file_and_line(tmp_path, gz):
    _write(tmp_path / "train.txt", "0 1 2\n\n1 3 x1 4\n2 x2\n", gz)
    _write(tmp_path / "test.txt", TEST, False)
    name = "train.txt.gz" if gz else "train.txt"
    with pytest.raises(NegspaceError, match=rf"{name} line 3: expected integer ids, got 'x1'"):
        load_dataset(str(tmp_path))


def test_malformed_user_id(tmp_path):
    _write(tmp_path / "train.txt", "0 1\n", False)
    _write(tmp_path / "test.txt", "0 2\n1.5 3\n", False)
    with pytest.raises(NegspaceError, match=r"test.txt line 2: .*'1.5'"):
        load_dataset(str(tmp_path))


# --- tables ---------------------------------------------------------------------------------

def test_csv_with_header_merges_duplicates_and_filters(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,5,0\n1,11,3,0\n2,10,4,0\n1,10,2,0\n\n3,12,4,0\n")
    ds = load_dataset(str(path))
    assert ds.protocol == "kfold"
    assert ds.interactions.nnz == 4 and ds.notes["duplicates_merged"] == 1
    kept = load_dataset(str(path), rating_threshold=4)
    assert kept.interactions.nnz == 3  # (1,10) kept its highest rating, 5
    assert list(kept.interactions.user_ids) == [1, 2, 3]


def test_tsv_gz_without_header(tmp_path):
    path = tmp_path / "u.data.gz"
    with gzip.open(path, "wt") as f:
        f.write("1\t10\t5\t881250949\n2\t10\t1\t881250949\n2\t11\t4\t881250949\n")
    ds = load_dataset(str(path), rating_threshold=4)
    assert (ds.interactions.n_users, ds.interactions.n_items, ds.interactions.nnz) == (2, 2, 2)


def test_string_ids_and_play_counts_summed(tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text("user_id\tartist_id\tplays\nann\ta\t3\nann\ta\t4\nbob\tb\t1\n")
    ds = load_dataset(str(path), rating_threshold=5)
    assert list(ds.interactions.user_ids) == ["ann"] and ds.interactions.matrix.data[0] == 7


def test_parquet(tmp_path):
    path = tmp_path / "inter.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [5, 6, 5, 7],
                  "weight": [1.0, 2.0, 3.0, 4.0]}).to_parquet(path)
    ds = load_dataset(str(path), min_item_interactions=2)
    assert (ds.interactions.n_users, ds.interactions.n_items, ds.interactions.nnz) == (2, 1, 2)


@pytest.mark.parametrize("text, message", [
    ("user,item,rating\n1,2,5\n1,3,abc\n", r"line 3: expected a number in column rating, got 'abc'"),
    ("user,item,rating\n1,2,5\n,3,4\n", r"line 3: missing user id"),
    ("user,item,rating\n1,2,5\n2,3,4\n2,4,4,9\n", r"line 4: expected 3 fields, got 4"),
    ("user,item,rating\n1,2,5\n2\n", r"line 3: expected 3 fields, got 1"),
    ("user,item,rating\n1,2,5\n2,,4\n", r"line 3: missing item id"),
    ("user,item,rating\n1,2,5\n2,3,1e400\n", r"line 3: expected a number in column rating, got '1e400'"),
    ("\n\nuser,item\r\n1,2\r\n\r\n\r\n2,3,4\r\n", r"line 7: expected 2 fields, got 3"),
    ("person,thing\n1,2\n", r"no user column"),
])
def test_csv_validation(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(NegspaceError, match=message) as info:
        load_dataset(str(path))
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


def test_empty_after_filtering(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n2,2,4\n")
    with pytest.raises(NegspaceError, match="empty after filtering"):
        load_dataset(str(path), rating_threshold=5)
    with pytest.raises(NegspaceError, match="empty after filtering"):
        load_dataset(str(path), min_user_interactions=2)


def test_threshold_without_rating_column(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item\n1,2\n")
    with pytest.raises(NegspaceError, match="no rating"):
        load_dataset(str(path), rating_threshold=1)


# --- lookup ---------------------------------------------------------------------------------

def test_folder_named_like_a_dataset(isolated):
    folder = isolated / "movielens-100k"
    folder.mkdir()
    rows = [f"{u}\t{i}\t{5 if i % 2 else 3}\t0" for u in range(1, 4) for i in range(1, 11)]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    ds = load_dataset(str(folder))  # defaults apply: rating >= 4, users with >= 4
    assert ds.name == "movielens-100k" and ds.interactions.nnz == 15
    assert ds.user_features is None


def test_missing_dataset_messages(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(NegspaceError, match="negspace data fetch movielens-100k") as info:
        load_dataset("movielens-100k", str(empty))
    assert str(empty / "movielens-100k") in str(info.value)
    with pytest.raises(NegspaceError, match="cannot be downloaded automatically"):
        load_dataset("amazon-book-kgat", str(empty))
    with pytest.raises(NegspaceError, match="unknown dataset"):
        load_dataset("no-such-dataset", str(empty))


def test_lookup_order_env_and_cache(isolated, monkeypatch):
    env_root = isolated / "env"
    (env_root / "amazon-cds-bgcf").mkdir(parents=True)
    monkeypatch.setenv("NEGSPACE_DATA", str(env_root))
    assert find_data_dir(None) == env_root
    cache = isolated / "home" / ".cache" / "negspace" / "data" / "amazon-cds-bgcf"
    cache.mkdir(parents=True)
    _write(cache / "train.txt", TRAIN, True)
    _write(cache / "test.txt", TEST, True)
    # The env folder lacks the files, so the cache copy is used.
    assert load_dataset("amazon-cds-bgcf").test.nnz == 3
    rows = {row["name"]: row for row in list_datasets()}
    assert rows["amazon-cds-bgcf"]["where"] == str(cache)
    assert rows["movielens-100k"]["where"] == "missing" and rows["movielens-100k"]["fetchable"]
    assert not rows["amazon-cds-bgcf"]["fetchable"]


def test_default_lookup_finds_shared_data(monkeypatch):
    monkeypatch.delenv("NEGSPACE_DATA", raising=False)
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("no shared data beside the repository")
    assert find_data_dir(None) == shared
    assert np.all([row["where"].startswith(str(shared)) for row in list_datasets()])


def test_junk_named_gz_is_not_a_gzip_file(tmp_path):
    path = tmp_path / "plays.csv.gz"
    path.write_bytes(b"user,item\r\nu1,\x00\x9c junk \r i1\n" * 3)  # not gzip: no magic bytes
    with pytest.raises(NegspaceError, match=r"plays\.csv\.gz: not a gzip file"):
        load_dataset(str(path))


def test_columns_named_by_the_user(tmp_path):
    from negspace.data.loaders import Columns

    path = tmp_path / "log.csv"
    path.write_text("who,what,stars,when,plays\n"
                    "a,x,3,100,1\na,y,5,50,2\nb,x,4,70,3\nb,x,2,80,4\n")
    ds = load_dataset(str(path), columns=Columns("who", "what", "stars", "when"))
    inter = ds.interactions
    assert inter.user_ids.tolist() == ["a", "b"] and inter.item_ids.tolist() == ["x", "y"]
    assert inter.matrix.toarray().tolist() == [[3, 5], [4, 0]]  # a rating: duplicates keep the max
    assert ds.times is not None
    counts = load_dataset(str(path), columns=Columns("who", "what", weight="plays")).interactions
    assert counts.matrix.toarray().tolist() == [[1, 2], [7, 0]]  # a count: duplicates summed
    with pytest.raises(NegspaceError, match=r"no column 'whom' \(user_col\) among"):
        load_dataset(str(path), columns=Columns(user="whom", item="what"))
    with pytest.raises(NegspaceError, match="no user column .* name it with user_col"):
        load_dataset(str(path))  # without names: neither who nor what is a known column name
    with pytest.raises(NegspaceError, match="names a column of a CSV/TSV/Parquet file"):
        load_dataset("movielens-100k", columns=Columns(user="who"))
