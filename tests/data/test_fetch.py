"""fetch_dataset against a local HTTP server serving zips built from the shared copies."""

from __future__ import annotations

import functools
import gzip
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from negspace.data import fetch_dataset, load_dataset
from negspace.data.loaders import list_datasets
from negspace.errors import NegspaceError

ML_PATH = "datasets/movielens/ml-100k.zip"
LASTFM_PATH = "datasets/hetrec2011/hetrec2011-lastfm-2k.zip"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """(web root, base url) of a server on 127.0.0.1 that lives for one test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("NEGSPACE_DATA", raising=False)
    monkeypatch.delenv("NEGSPACE_MIRROR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _shared(name: str) -> Path:
    where = next(row["where"] for row in list_datasets() if row["name"] == name)
    if where == "missing":
        pytest.skip(f"{name} not available locally")
    return Path(where)


def _make_zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _counts(name: str, data_dir: str | None = None) -> tuple[int, int, int]:
    inter = load_dataset(name, data_dir).interactions
    return inter.n_users, inter.n_items, inter.nnz


def test_fetch_movielens_from_mirror(server, tmp_path, isolated):
    shared = _shared("movielens-100k")
    expected = _counts("movielens-100k", str(shared.parent))
    root, base = server
    files = ["u.data", "u.item", "u.user", "u.genre", "README"]
    _make_zip(root / ML_PATH, {f"ml-100k/{f}": gzip.decompress((shared / f"{f}.gz").read_bytes())
                               for f in files})
    data_dir = tmp_path / "data"
    target = fetch_dataset("movielens-100k", str(data_dir), base_url=base)
    assert target == data_dir / "movielens-100k"
    assert sorted(p.name for p in target.iterdir()) == ["u.data.gz", "u.item.gz", "u.user.gz"]
    assert [p.name for p in data_dir.iterdir()] == ["movielens-100k"]  # no temporary leftovers
    assert _counts("movielens-100k", str(data_dir)) == expected
    assert load_dataset("movielens-100k", str(data_dir)).item_features.shape == (expected[1], 20)


def test_fetch_lastfm_zip_without_folder_via_env_mirror(server, tmp_path, isolated, monkeypatch):
    shared = _shared("lastfm-hetrec2011")
    expected = _counts("lastfm-hetrec2011", str(shared.parent))
    root, base = server
    data = gzip.decompress((shared / "user_artists.dat.gz").read_bytes())
    _make_zip(root / LASTFM_PATH, {"user_artists.dat": data, "readme.txt": b"hello"})
    monkeypatch.setenv("NEGSPACE_MIRROR", base + "/")
    # neither a data dir nor $NEGSPACE_DATA, and no ../shared/data: the cache is the place
    monkeypatch.setattr("negspace.data.roots._repo_shared_data", lambda: None)
    target = fetch_dataset("lastfm-hetrec2011")  # into ~/.cache/negspace/data
    assert target == tmp_path / "home" / ".cache" / "negspace" / "data" / "lastfm-hetrec2011"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _counts("lastfm-hetrec2011", str(empty)) == expected  # found through the cache fallback


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    root, base = server
    _make_zip(root / ML_PATH, {"ml-100k/u.data": b"1\t2\t5\t0\n", "ml-100k/u.item": b"",
                               "ml-100k/u.user": b""})
    data_dir = tmp_path / "data"
    with pytest.raises(NegspaceError, match="checksum mismatch for u.data"):
        fetch_dataset("movielens-100k", str(data_dir), base_url=base)
    assert list(data_dir.iterdir()) == []


def test_corrupted_member_of_real_zip(server, tmp_path):
    shared = _shared("movielens-100k")
    root, base = server
    members = {f"ml-100k/{f}": gzip.decompress((shared / f"{f}.gz").read_bytes())
               for f in ("u.data", "u.item", "u.user")}
    members["ml-100k/u.user"] = members["ml-100k/u.user"].replace(b"technician", b"technicien", 1)
    _make_zip(root / ML_PATH, members)
    with pytest.raises(NegspaceError, match="checksum mismatch for u.user"):
        fetch_dataset("movielens-100k", str(tmp_path / "data"), base_url=base)
    assert not (tmp_path / "data" / "movielens-100k").exists()


def test_bad_zip_and_missing_member(server, tmp_path):
    root, base = server
    (root / ML_PATH).parent.mkdir(parents=True)
    (root / ML_PATH).write_bytes(b"this is not a zip")
    with pytest.raises(NegspaceError, match="not a valid zip"):
        fetch_dataset("movielens-100k", str(tmp_path / "data"), base_url=base)
    _make_zip(root / LASTFM_PATH, {"artists.dat": b"x"})
    with pytest.raises(NegspaceError, match="does not contain user_artists.dat"):
        fetch_dataset("lastfm-hetrec2011", str(tmp_path / "data"), base_url=base)
    assert list((tmp_path / "data").iterdir()) == []


def test_download_errors(server, tmp_path):
    _, base = server
    with pytest.raises(NegspaceError, match="could not download .*ml-100k.zip"):
        fetch_dataset("movielens-100k", str(tmp_path / "data"), base_url=base)  # 404
    with pytest.raises(NegspaceError, match="cannot be downloaded automatically"):
        fetch_dataset("amazon-book-kgat", str(tmp_path / "data"))
    with pytest.raises(NegspaceError, match="unknown dataset"):
        fetch_dataset("nope", str(tmp_path / "data"))


def test_fetch_honours_negspace_data_and_what_is_already_there(server, tmp_path, isolated,
                                                                monkeypatch, capsys):
    from negspace.cli import main

    _, base = server  # serves nothing: any download would fail with a 404
    env = tmp_path / "env"
    (env / "movielens-100k").mkdir(parents=True)
    for name in ("u.data.gz", "u.item", "u.user.gz"):  # stored as is or compressed
        (env / "movielens-100k" / name).write_bytes(b"")
    monkeypatch.setenv("NEGSPACE_DATA", str(env))
    monkeypatch.setenv("NEGSPACE_MIRROR", base)
    assert fetch_dataset("movielens-100k") == env / "movielens-100k"
    assert main(["data", "fetch", "movielens-100k"]) == 0
    assert "already present in " + str(env / "movielens-100k") in capsys.readouterr().out
    assert not (tmp_path / "home" / ".cache").exists()
    with pytest.raises(NegspaceError, match="could not download"):  # force does download
        fetch_dataset("movielens-100k", force=True)


def test_fetch_stores_into_negspace_data(server, tmp_path, isolated, monkeypatch):
    shared = _shared("lastfm-hetrec2011")
    root, base = server
    data = gzip.decompress((shared / "user_artists.dat.gz").read_bytes())
    _make_zip(root / LASTFM_PATH, {"user_artists.dat": data})
    monkeypatch.setenv("NEGSPACE_DATA", str(tmp_path / "env"))
    target = fetch_dataset("lastfm-hetrec2011", base_url=base)
    assert target == tmp_path / "env" / "lastfm-hetrec2011"
    assert (target / "user_artists.dat.gz").exists()
    assert not (tmp_path / "home" / ".cache").exists()
