"""Property-based tests: the loaders and `negspace train` on random and malformed files either load
them correctly or fail with one line naming the file (and the line, where one is at fault); never a
traceback, never a partial run directory."""

from __future__ import annotations

import contextlib
import gzip
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from negspace.cli import main
from negspace.data import load_dataset
from negspace.errors import NegspaceError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SEPARATORS = [",", "\t", ";", "::", " ", "|"]
SUFFIXES = [".csv", ".tsv", ".dat", ".txt", ""]
ids = st.one_of(st.integers(0, 30).map(str), st.sampled_from(["u1", "a", "x y", "7.5", "-3"]))
junk = st.sampled_from(["", " ", '"', '"a,b"', "nan", "NA", "1e400", "\x00", "é", "#", "1,2", "\\"])
field = st.one_of(ids, junk, st.text(max_size=6))
header = st.sampled_from(["", "user,item", "user_id,item_id,rating", "userId\tmovieId\trating\ttimestamp",
                          "uid;iid;count", "foo,bar", "rating,user", "user::item::plays"])


def _store(text: str, gz: bool, suffix: str, folder: Path) -> Path:
    raw = text.encode("latin-1", errors="replace")
    path = folder / f"data{suffix}{'.gz' if gz and suffix else ''}"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _check_error(e: NegspaceError, path: Path) -> None:
    message = str(e)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message


@st.composite
def messy_files(draw) -> tuple[str, bool, str]:
    sep = draw(st.sampled_from(SEPARATORS))
    rows = draw(st.lists(st.lists(field, min_size=0, max_size=5), max_size=12))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [draw(header)] + [sep.join(r) for r in rows]
    text = eol.join(lines) + draw(st.sampled_from(["", eol, eol * 3]))
    return text, draw(st.booleans()), draw(st.sampled_from(SUFFIXES))


@FUZZ
@given(messy_files())
def test_messy_tables_load_or_fail_in_one_line(case):
    text, gz, suffix = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _store(text, gz, suffix, Path(tmp))
        try:
            ds = load_dataset(str(path), min_user_interactions=0)
        except NegspaceError as e:
            _check_error(e, path)
        else:
            assert ds.interactions.nnz > 0


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8"))),
       st.sampled_from(SUFFIXES + [".parquet"]))
def test_random_bytes_load_or_fail_in_one_line(raw, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(raw)
        try:
            load_dataset(str(path))
        except NegspaceError as e:
            _check_error(e, path)


@st.composite
def valid_tables(draw) -> tuple[str, set[tuple[str, str]], bool, str]:
    pairs = draw(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=40))
    with_header = draw(st.booleans())
    named = draw(st.booleans()) and with_header  # string ids need a header to be told apart
    sep = draw(st.sampled_from([",", "\t", ";", "::"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    fmt = (lambda p: (f"u{p[0]}", f"i{p[1]}")) if named else (lambda p: (str(p[0]), str(p[1])))
    lines = (["user" + sep + "item"] if with_header else []) + [sep.join(fmt(p)) for p in pairs]
    blank = draw(st.integers(0, len(lines)))
    lines.insert(blank, "")
    return eol.join(lines) + eol, {fmt(p) for p in pairs}, draw(st.booleans()), sep


@FUZZ
@given(valid_tables())
def test_valid_tables_load_exactly_with_duplicates_merged(case):
    text, expected, gz, sep = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _store(text, gz, ".csv", Path(tmp))
        ds = load_dataset(str(path))
    inter = ds.interactions
    users, items = inter.pairs()
    got = {(str(inter.user_ids[u]), str(inter.item_ids[i])) for u, i in zip(users, items)}
    assert got == expected
    assert ds.notes["duplicates_merged"] == ds.notes["rows_read"] - len(expected)


BAD_ROWS = [("{u}{s}{s}4", "missing item id"), ("{s}{i}{s}4", "missing user id"),
            ("{u}{s}{i}{s}high", "expected a number"), ("{u}{s}{i}{s}inf", "expected a number"),
            ("{u}{s}{i}{s}4{s}9{s}9", "expected 3 fields, got 5"), ("{u}{s}{i}", "expected 3 fields, got 2"),
            ("{u}{s}{i}\r{s}4", "stray carriage return")]


@FUZZ
@given(st.integers(1, 30), st.integers(0, 29), st.sampled_from(BAD_ROWS),
       st.sampled_from([",", "\t"]), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_the_first_bad_line_is_named(n_rows, at, bad, sep, eol, gz):
    at = min(at, n_rows)
    rows = [f"{r % 7}{sep}{r % 5}{sep}{r % 5 + 1}" for r in range(n_rows)]
    template, message = bad
    rows.insert(at, template.format(u=3, i=4, s=sep))
    text = eol.join([f"user{sep}item{sep}rating", *rows]) + eol
    with tempfile.TemporaryDirectory() as tmp:
        path = _store(text, gz, ".csv", Path(tmp))
        try:
            load_dataset(str(path))
        except NegspaceError as e:
            _check_error(e, path)
            assert f"line {at + 2}" in str(e) and message in str(e), (str(e), at + 2)
        else:
            raise AssertionError("a bad line was accepted")


user_lines = st.lists(st.lists(st.one_of(st.integers(0, 20).map(str), junk), max_size=6), max_size=8)


@FUZZ
@given(user_lines, user_lines, st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_given_split_files_load_or_fail_in_one_line(train, test, gz, eol):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, rows in (("train.txt", train), ("test.txt", test)):
            _store(eol.join(" ".join(r) for r in rows), gz, "", folder).rename(folder / name)
        try:
            ds = load_dataset(str(folder))
        except NegspaceError as e:
            assert "\n" not in str(e) and str(folder) in str(e), str(e)
        else:
            assert ds.interactions.nnz > 0 and ds.test.nnz > 0
            assert ds.notes["test_items_not_in_train"] >= 0


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(messy_files(), valid_tables().map(lambda c: (c[0], c[2], ".csv"))),
       st.lists(st.sampled_from([
           ["--negatives", "0"], ["--negatives", "2"], ["--batch-size", "-1"], ["--batch-size", "8"],
           ["--lr", "nan"], ["--lr", "inf"], ["--lr", "0.05"], ["--sampler", "popularity"],
           ["--sampler", "bogus"], ["--model", "mf"], ["--dim", "x"], ["--validation", "0"],
           ["--checkpoint-every", "3"], ["--checkpoint-every", "-2"], ["--fold", "7"],
           ["--min-user-interactions", "2"], ["--rating-threshold", "3"], ["--unknown"]]), max_size=3))
def test_cli_train_on_random_input_never_leaves_a_traceback_or_partial_run(case, options):
    text, gz, suffix = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _store(text, gz, suffix, Path(tmp))
        out = Path(tmp) / "run"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", "--dataset", str(path), "--dim", "4", "--epochs", "1",
                         "--threads", "1", "--no-progress", "--batch-size", "16",
                         *[a for o in options for a in o], "--out", str(out)])
        message = err.getvalue()
        if code == 0:
            assert (out / "metrics.json").exists() and (out / "model.safetensors").exists()
        else:
            assert code == 2, message
            assert message.startswith("negspace: error:") and message.count("\n") == 1, message
            assert not out.exists(), sorted(p.name for p in out.iterdir())


@FUZZ
@given(st.sampled_from(["u.user", "u.item"]), st.lists(st.lists(field, max_size=8), max_size=6),
       st.booleans())
def test_malformed_side_features_fail_in_one_line(name, rows, gz):
    """Named datasets read side-feature files too: those are validated like the rest."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "movielens-100k"
        folder.mkdir()
        (folder / "u.data").write_text("".join(f"{u}\t{i}\t5\t0\n" for u in range(1, 6) for i in range(1, 6)))
        _store("\n".join("|".join(r) for r in rows), gz, "", folder).rename(folder / name)
        try:
            ds = load_dataset(str(folder))
        except NegspaceError as e:
            assert "\n" not in str(e) and str(folder / name) in str(e), str(e)
        else:
            assert ds.interactions.nnz == 25
