"""Download the datasets whose publishers serve them at a stable public address.

`fetch_dataset` streams the official zip to a temporary file, extracts the files the loader reads,
checks each one against the sha256 recorded in `shared/data/<name>/PROVENANCE.md`, and stores them
gzip-compressed as `<root>/<name>/<file>.gz`: the same layout as the shared copies, so
`load_dataset` reads both the same way. Everything is written into a temporary folder beside the
target and renamed into place at the end, so a failed fetch leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from negspace.data.readers import _find_file
from negspace.data.roots import default_cache_dir, search_roots
from negspace.errors import NegspaceError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """Where a fetchable dataset lives and what to keep from its zip.

    Args:
        url: official address of the zip.
        files: file name (basename inside the zip) -> sha256 of its uncompressed bytes.
    """

    url: str
    files: dict[str, str]


# Only the files the loader reads are kept; their hashes are those in PROVENANCE.md.
DOWNLOADS: dict[str, Download] = {
    "movielens-100k": Download(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
         "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
         "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"}),
    "lastfm-hetrec2011": Download(
        "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        {"user_artists.dat": "650cd69d5a68db24b439042557aa539aec47e473273e12cdfdca2cd944b3773a"}),
}

# Where the others come from, for the error message (their terms forbid redistribution).
SOURCES: dict[str, str] = {
    "movielens-1m-lcfn": "train.txt/test.txt of data/ml-1m in github.com/xue-pai/UltraGCN (MovieLens terms apply)",
    "amazon-cds-bgcf": "train.txt/test.txt of data/amazoncds in github.com/xue-pai/UltraGCN",
    "amazon-book-kgat": "train.txt/test.txt of Data/amazon-book in "
                        "github.com/xiangwang1223/knowledge_graph_attention_network",
    "gowalla-lightgcn": "train.txt/test.txt of Data/gowalla in github.com/kuandeng/LightGCN",
    "book-crossing-caserec-subset": "Processed Datasets/BookCrossing/book_crossing.zip in "
                                    "github.com/caserec/Datasets-for-Recommender-Systems",
}


def _mirror_url(url: str, base_url: str | None) -> str:
    """Replaces scheme and host of `url` by `base_url` (or $NEGSPACE_MIRROR), keeping the path."""
    base = base_url or os.environ.get("NEGSPACE_MIRROR")
    if not base:
        return url
    return base.rstrip("/") + urllib.parse.urlsplit(url).path


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise NegspaceError(f"could not download {url}: {reason}") from None


def _extract(zip_path: Path, spec: Download, out_dir: Path, url: str) -> None:
    """Writes each wanted member gzip-compressed into out_dir, checking its sha256 on the way."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            # Match by basename: the official zips put files in a folder (ml-100k/...) or at the root.
            members = {Path(m.filename).name: m for m in zf.infolist() if not m.is_dir()}
            for name, expected in spec.files.items():
                if name not in members:
                    raise NegspaceError(f"{url} does not contain {name}; is it the right file?")
                digest = hashlib.sha256()
                with zf.open(members[name]) as src, open(out_dir / f"{name}.gz", "wb") as raw, \
                        gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0) as dst:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != expected:
                    raise NegspaceError(f"checksum mismatch for {name} from {url}: sha256 "
                                        f"{digest.hexdigest()}, expected {expected}; nothing stored")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise NegspaceError(f"{url} is not a valid zip file ({e}); nothing stored") from None


def find_present(name: str, data_dir: str | None = None) -> Path | None:
    """The folder holding every file `fetch_dataset` would store for `name` (each as is or .gz),
    searched where `load_dataset` looks: `data_dir`, else $NEGSPACE_DATA, else `../shared/data`
    beside the repository; then `~/.cache/negspace/data`. None when no folder holds them all."""
    spec = DOWNLOADS.get(name)
    if spec is None:
        return None
    for root in search_roots(data_dir):
        if all(_find_file(root / name, f) is not None for f in spec.files):
            return root / name
    return None


def store_root(data_dir: str | None = None) -> Path:
    """Where `fetch_dataset` stores a download: `data_dir`, else $NEGSPACE_DATA, else
    `~/.cache/negspace/data` (never `../shared/data`, which is read-only)."""
    env = os.environ.get("NEGSPACE_DATA")
    where = data_dir or env
    return Path(where).expanduser() if where else default_cache_dir()


def fetch_dataset(name: str, data_dir: str | None = None, base_url: str | None = None,
                  *, force: bool = False) -> Path:
    """Downloads a dataset whose publisher serves it publicly and stores it for `load_dataset`,
    unless `load_dataset` already finds it (see `find_present`).

    Args:
        name: `movielens-100k` or `lastfm-hetrec2011`.
        data_dir: root folder to store into; default $NEGSPACE_DATA, else
            `~/.cache/negspace/data`.
        base_url: replaces `https://files.grouplens.org` (also $NEGSPACE_MIRROR), e.g. a local mirror.
        force: download again into the store root even if the dataset is already present.

    Returns:
        The dataset folder: where it was found, or `<root>/<name>` after the download.
    """
    spec = DOWNLOADS.get(name)
    if spec is None:
        if name in SOURCES:
            raise NegspaceError(f"{name} cannot be downloaded automatically (its terms forbid "
                                f"redistribution); get it from {SOURCES[name]}")
        raise NegspaceError(f"unknown dataset {name!r}; fetchable: {', '.join(sorted(DOWNLOADS))}")
    present = None if force else find_present(name, data_dir)
    if present is not None:
        return present
    root = store_root(data_dir)
    target = root / name
    root.mkdir(parents=True, exist_ok=True)
    url = _mirror_url(spec.url, base_url)
    # The temporary folder sits beside the target so the final rename stays on one file system.
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))
    try:
        zip_path = work / "download.zip"
        _download(url, zip_path)
        out = work / name
        out.mkdir()
        _extract(zip_path, spec, out, url)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
