"""negspace data synth: a planted, seeded train/test split in the given-split layout."""

import numpy as np
import pytest
import torch

from negspace.cli import main
from negspace.data import synth
from negspace.data.loaders import load_dataset
from negspace.data.synth import SynthSpec, generate, item_topics
from negspace.errors import NegspaceError

SMALL = SynthSpec(users=700, items=300, topics=6, pairs_per_user=14, seed=5)


def _files(folder):
    return {name: (folder / name).read_bytes() for name in ("train.txt", "test.txt", "synth.json")}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b")
    generate(SynthSpec(**{**SMALL.__dict__, "seed": 6}), tmp_path / "c")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a")["train.txt"] != _files(tmp_path / "c")["train.txt"]


def test_smaller_chunks_keep_every_user_and_the_size(tmp_path, monkeypatch):
    spec = SynthSpec(users=300, items=200, topics=4, pairs_per_user=10)
    generate(spec, tmp_path / "a")
    monkeypatch.setattr(synth, "CHUNK_USERS", 64)  # chunks differ: the users' draws do too,
    generate(spec, tmp_path / "b")                    # so only the counts are compared
    a, b = load_dataset(str(tmp_path / "a")), load_dataset(str(tmp_path / "b"))
    assert a.interactions.n_users == b.interactions.n_users == 300
    assert abs(a.interactions.nnz - b.interactions.nnz) < 0.05 * a.interactions.nnz


def test_sizes_split_and_loadable_as_a_given_split(tmp_path):
    info = generate(SMALL, tmp_path / "s")
    ds = load_dataset(str(tmp_path / "s"))
    train, test = ds.interactions, ds.test
    assert ds.protocol == "given" and train.n_users == SMALL.users
    assert train.n_items == info["items_used"] <= SMALL.items
    assert (train.nnz, test.nnz) == (info["train_pairs"], info["test_pairs"])
    per_user = (train.nnz + test.nnz) / SMALL.users
    assert abs(per_user - SMALL.pairs_per_user) < 0.1 * SMALL.pairs_per_user
    assert abs(test.nnz / (train.nnz + test.nnz) - SMALL.test_fraction) < 0.02
    assert train.user_degrees().min() >= 1 and test.user_degrees().min() >= 1
    assert ds.notes["train_test_overlap"] == 0 and ds.notes["duplicates_merged"] == 0


def test_users_concentrate_on_few_topics(tmp_path):
    spec = SynthSpec(users=400, items=600, topics=20, pairs_per_user=20, concentration=0.05)
    generate(spec, tmp_path / "s")
    ds = load_dataset(str(tmp_path / "s"))
    topic, _, _ = item_topics(spec)
    users, items = ds.interactions.pairs()
    items = ds.interactions.item_ids[items].astype(np.int64)
    counts = np.zeros((spec.users, spec.topics))
    np.add.at(counts, (users, topic[items]), 1)
    top_share = (counts.max(1) / counts.sum(1)).mean()
    assert top_share > 0.5  # 1/20 = 0.05 if the items ignored the topics


def test_the_planted_structure_is_learnable(tmp_path):
    """Our MF (the default recipe), trained briefly, ranks test items well above popularity."""
    from negspace.evaluation.evaluator import evaluate
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config, with_default_recipe
    generate(SynthSpec(users=1000, items=400, topics=12, pairs_per_user=20, seed=3), tmp_path / "s")
    ds = load_dataset(str(tmp_path / "s"))
    pop = torch.from_numpy(ds.interactions.item_counts().astype(np.float32))
    popularity = evaluate(lambda rows: pop.expand(len(rows), -1), ds.interactions, ds.test,
                          ks=(20,))["recall@20"]
    out = run_training(make_config(with_default_recipe(dict(
        dataset=str(tmp_path / "s"), dim=32, epochs=8, refit="no", progress=False, threads=1))))
    assert out.metrics["recall@20"] > 1.5 * popularity  # measured 0.51 against 0.25


@pytest.mark.parametrize("flags, says", [
    (["--users", "0"], "--users"), (["--topics", "0"], "--topics"),
    (["--items", "100", "--topics", "101"], "--topics"),
    (["--pairs-per-user", "1"], "--pairs-per-user"), (["--test-fraction", "1"], "--test-fraction"),
    (["--concentration", "0"], "--concentration"), (["--exponent", "-1"], "--exponent"),
    (["--users", "ten"], "--users"), (["--seed", "-1"], "--seed")])
def test_bad_options_exit_2_in_one_line(tmp_path, capsys, flags, says):
    assert main(["data", "synth", "--out", str(tmp_path / "s"), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_cli_writes_and_refuses_to_replace_without_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["data", "synth", "--out", str(out), "--users", "50", "--items", "40", "--topics", "3",
            "--pairs-per-user", "6"]
    assert main(args) == 0 and "50 users" in capsys.readouterr().out
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folder left


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*_):
        raise NegspaceError("disk full")
    monkeypatch.setattr(synth, "_write", fail)
    with pytest.raises(NegspaceError):
        generate(SMALL, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []
