"""End-to-end CLI: train, evaluate, recommend and the one-line errors, on a small synthetic CSV."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from negspace.cli import main


@pytest.fixture
def csv_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["user,item"]
    for u in range(40):
        for i in rng.choice(60, size=12, replace=False, p=np.arange(60, 0, -1) / 1830):
            rows.append(f"u{u},i{i}")
    path = tmp_path / "toy.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _train(csv: Path, out: Path, *extra: str) -> int:
    return main(["train", "--dataset", str(csv), "--model", "cml", "--sampler", "two-stage",
                 "--negatives", "2", "--batch-size", "64", "--dim", "8", "--epochs", "2",
                 "--lr", "0.01", "--seed", "1", "--no-progress", "--out", str(out), *extra])


def test_train_writes_the_run_directory(csv_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(csv_dataset, out) == 0
    for name in ("config.json", "metrics.json", "history.csv", "model.safetensors", "ids.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    # the test metrics against a plain computation: the test fold is every pair of the file that
    # the run did not train on, ranked by the saved vectors
    from negspace.pipeline.rundir import load_run
    from tests.reference import reference_metrics, rows_of, scores_of
    run = load_run(out)
    pairs = [line.split(",") for line in csv_dataset.read_text().split()[1:]]
    train_rows = rows_of(run.train.matrix)
    test_rows: dict[int, set[int]] = {}
    for user, item in pairs:
        u, i = run.train.user_index(user), run.train.item_index(item)
        if i not in train_rows[u]:
            test_rows.setdefault(u, set()).add(i)
    assert 0 < sum(map(len, test_rows.values())) < len(pairs)
    scores = scores_of(run.user_vectors, run.item_vectors, run.measure)
    for k in (20, 50):
        want = reference_metrics(scores, train_rows, test_rows, k)
        for key in (f"map@{k}", f"ndcg@{k}", f"recall@{k}", f"hit@{k}", f"mmr@{k}"):
            assert metrics[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    assert metrics["n_eval_users"] == len(test_rows)
    config = json.loads((out / "config.json").read_text())
    assert config["sampler"] == "two-stage" and config["negatives"] == 2 and config["loss"] == "triplet"
    ids = json.loads((out / "ids.json").read_text())
    assert len(ids["users"]) == 40 and len(ids["items"]) <= 60
    from safetensors.torch import load_file
    vectors = load_file(str(out / "model.safetensors"))
    assert vectors["user_embeddings"].shape == (40, 8)
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,seconds") and len(history) == 3

    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    for key in ("map@50", "ndcg@20"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)

    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u3", "-k", "5", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    row = run.train.user_index("u3")
    train_items = set(run.train.item_ids[run.train.indices[run.train.indptr[row]:run.train.indptr[row + 1]]])
    assert len(rec["items"]) == 5 and not train_items & set(rec["items"])


def test_same_seed_same_metrics(csv_dataset, tmp_path):
    assert _train(csv_dataset, tmp_path / "a") == 0
    assert _train(csv_dataset, tmp_path / "b") == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "train_seconds" not in a  # timings live in timing.json: metrics.json is seed-only
    assert a == b
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_toml_config_and_flag_override(csv_dataset, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'dataset = "{csv_dataset}"\nsampler = "uniform"\nnegatives = 3\ndim = 8\n'
                   'epochs = 1\nbatch-size = 64\nprogress = false\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--negatives", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["sampler"] == "uniform" and config["negatives"] == 1 and config["dim"] == 8


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "no-such-dataset", "--out", "{tmp}/r"], "no-such-dataset"),
    (["train", "--dataset", "{csv}", "--model", "mf", "--negatives", "0", "--out", "{tmp}/r"], "--negatives"),
    (["train", "--dataset", "{csv}", "--sampler", "bogus", "--out", "{tmp}/r"], "--sampler"),
    (["train", "--dataset", "{csv}", "--lr", "abc", "--out", "{tmp}/r"], "lr"),
    (["train", "--dataset", "{tmp}/missing.csv", "--out", "{tmp}/r"], "missing.csv"),
    (["train", "--config", "{tmp}/none.toml", "--out", "{tmp}/r"], "none.toml"),
    (["evaluate", "{tmp}/not-a-run"], "not-a-run"),
    (["grid", "{tmp}/none.toml"], "none.toml"),
])
def test_bad_input_is_one_line_and_exit_2(csv_dataset, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path, csv=csv_dataset) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("negspace: error:") and "\n" not in err and message in err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_unknown_user_and_refusal_to_overwrite(csv_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(csv_dataset, out) == 0
    before = (out / "metrics.json").read_bytes()
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "nobody"]) == 2
    assert "unknown user" in capsys.readouterr().err
    assert _train(csv_dataset, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "negspace.cli", "recommend", str(tmp_path), "--user", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_rejected_file_exits_2_every_time(tmp_path):
    """The one-line error, then exit 2, in every run: pyarrow's I/O thread used to release a
    Python transcoder while the interpreter exited, and about 1 run in 4 aborted (SIGABRT, 134).
    Up to 50 runs, as many as 30 s allow (at least 10)."""
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"user,item\n1,2\n3\n\x00\xff,zz\n")
    command = [sys.executable, "-m", "negspace", "train", "--dataset", str(bad), "--model", "cml",
               "--sampler", "uniform", "--out", str(tmp_path / "b")]
    codes, start = [], time.monotonic()
    while len(codes) < 50 and (len(codes) < 10 or time.monotonic() - start < 30):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        codes.append(proc.returncode)
        assert proc.stderr == f"negspace: error: {bad} line 3: expected 2 fields, got 1\n", codes
    assert codes == [2] * len(codes)


def test_a_closed_pipe_ends_quietly(csv_dataset, tmp_path):
    """`negspace recommend ... | head -2`: the reader goes away; no error message, no traceback."""
    out = tmp_path / "run"
    assert _train(csv_dataset, out) == 0
    proc = subprocess.Popen([sys.executable, "-m", "negspace.cli", "recommend", str(out),
                             "--user", "u3", "-k", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the command writes anything: its first write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_train_names_a_files_columns(csv_dataset, tmp_path, capsys):
    csv = tmp_path / "renamed.csv"
    csv.write_text(csv_dataset.read_text().replace("user,item", "who,what", 1))
    assert _train(csv, tmp_path / "bad") == 2
    assert "name it with --user-col" in capsys.readouterr().err
    out = tmp_path / "run"
    assert _train(csv, out, "--user-col", "who", "--item-col", "what") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["user_col"] == "who" and config["item_col"] == "what"
    assert len(json.loads((out / "ids.json").read_text())["users"]) == 40
    assert main(["evaluate", str(out)]) == 0  # reads the file again with the same columns


@pytest.fixture
def timed_csv(tmp_path: Path) -> Path:
    """40 users, 12 items each, every interaction at its own time (no ties)."""
    rng = np.random.default_rng(5)
    rows, times = ["user,item,timestamp"], rng.permutation(40 * 12) * 10 + 1000
    for u in range(40):
        for j, i in enumerate(rng.choice(60, size=12, replace=False)):
            rows.append(f"u{u},i{i},{times[u * 12 + j]}")
    path = tmp_path / "timed.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("split", ["time", "last"])
def test_time_splits_through_the_command_line(timed_csv, tmp_path, split):
    """--split time|last hold out what their names say (checked from the file), and the test
    metrics are those of the held-out pairs, ranked by the saved vectors."""
    from negspace.pipeline.rundir import load_run
    from tests.reference import reference_metrics, rows_of, scores_of
    out = tmp_path / split
    assert _train(timed_csv, out, "--split", split, "--time-cut", "0.75", "--last-n", "2") == 0
    rows = [line.split(",") for line in timed_csv.read_text().split()[1:]]
    if split == "time":
        cut = sorted(int(t) for _, _, t in rows)[int(0.75 * len(rows))]
        held = {(u, i) for u, i, t in rows if int(t) >= cut}
        assert 0.2 < len(held) / len(rows) < 0.3
    else:
        by_user: dict[str, list] = {}
        for u, i, t in rows:
            by_user.setdefault(u, []).append((int(t), i))
        held = {(u, i) for u, seen in by_user.items() for _, i in sorted(seen)[-2:]}
    run = load_run(out)
    train_pairs = {(str(run.train.user_ids[u]), str(run.train.item_ids[i]))
                   for u, items in rows_of(run.train.matrix).items() for i in items}
    assert train_pairs == {(u, i) for u, i, _ in rows} - held
    test_rows: dict[int, set[int]] = {}
    for u, i in held:
        if i in set(run.train.item_ids.tolist()):  # an item first seen in the test has no row
            test_rows.setdefault(run.train.user_index(u), set()).add(run.train.item_index(i))
    want = reference_metrics(scores_of(run.user_vectors, run.item_vectors, run.measure),
                             rows_of(run.train.matrix), test_rows, 50)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("map@50", "ndcg@50", "recall@50"):
        assert metrics[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
