"""CCL / MML training: shared vs per-row negatives, config validation, the run directory."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from negspace.cli import main
from negspace.errors import NegspaceError
from negspace.pipeline.build import build_sampler
from negspace.pipeline.fit import run_training
from negspace.models import CML, MF, SimpleX
from negspace.samplers import SharedNegativeSampler
from negspace.config import make_config
from negspace.training.objective import Objective

from ..conftest import random_interactions




@pytest.mark.parametrize("loss", ["ccl", "mml"])
@pytest.mark.parametrize("make", [
    lambda i: MF(i.n_users, i.n_items, 8, measure="cosine"),
    lambda i: CML(i.n_users, i.n_items, 8),
    lambda i: SimpleX(i.n_users, i.n_items, 8, i, aggregator="user_attention", dropout=0.0),
])
def test_shared_matmul_equals_per_row_scores(loss, make):
    inter = random_interactions(seed=2)
    model = make(inter)
    objective = Objective(loss=loss, margin=0.2, negative_weight=5.0,
                          margins=(0.0, 0.3), margin_weights=(0.4, 0.6))
    users, items = (torch.from_numpy(a[:40]) for a in inter.pairs())
    neg = torch.randint(0, inter.n_items, (25,))
    keep = torch.from_numpy(~inter.contains(users[:, None].numpy(), neg[None, :].numpy()))
    shared = objective(model, users, items, neg, keep)
    per_row = objective(model, users, items, neg.expand(len(users), -1), keep)
    assert torch.allclose(shared, per_row, atol=1e-5)
    assert shared.item() > 0


def test_cosine_losses_refuse_non_cosine_models():
    inter = random_interactions()
    users, items = (torch.from_numpy(a[:4]) for a in inter.pairs())
    for model in (MF(inter.n_users, inter.n_items, 8), CML(inter.n_users, inter.n_items, 8, norm="ball")):
        with pytest.raises(NegspaceError, match="cosine"):
            Objective(loss="ccl")(model, users, items, torch.zeros(4, 2, dtype=torch.long))


@pytest.mark.parametrize("law", ["uniform", "popularity"])
def test_shared_sampler_masks_exactly_the_users_positives(law):
    inter = random_interactions(seed=5)
    sampler = SharedNegativeSampler(law, seed=1).fit(inter)
    users, items = inter.pairs()
    neg, keep = sampler.sample_shared(users[:64], items[:64], 200)
    assert neg.shape == (200,) and keep.shape == (64, 200)
    assert np.array_equal(keep, ~inter.contains(users[:64, None], neg[None, :]))
    assert (~keep).any()  # user 0 holds most of the catalogue: something is masked
    assert not keep[items[:64, None] == neg[None, :]].any()  # a row's own positive never counts
    # the per-row protocol still holds (delegates to the per-row sampler of the same law)
    rows = sampler.sample(users[:64], items[:64], 7)
    assert not inter.contains(users[:64, None], rows).any()


def test_shared_popularity_follows_the_popularity_law():
    inter = random_interactions(seed=5)
    sampler = SharedNegativeSampler("popularity", beta=1.0, seed=0).fit(inter)
    draws = np.concatenate([sampler.sample_shared(np.array([1]), np.array([0]), 5000)[0]
                            for _ in range(20)])
    freq = np.bincount(draws, minlength=inter.n_items) / len(draws)
    counts = inter.item_counts()
    assert np.abs(freq - counts / counts.sum()).max() < 0.01


def test_config_parses_and_checks_margins():
    cfg = make_config({"model": "mf", "loss": "mml", "margins": "0.6, 0.7,0.8,0.9",
                       "margin_weights": [0.05, 0.15, 0.2, 0.6]})
    assert cfg.margin_list == [0.6, 0.7, 0.8, 0.9]
    assert cfg.margin_weight_list == [0.05, 0.15, 0.2, 0.6]
    assert make_config({"model": "simplex"}).resolved_loss == "ccl"
    assert make_config({"model": "mf", "loss": "ccl"}).to_dict()["margin"] == 0.9
    for n, mode in [(10, "per-row"), (199, "per-row"), (200, "shared"), (800, "shared")]:
        cfg = make_config({"model": "mf", "loss": "ccl", "sampler": "uniform", "negatives": n})
        assert cfg.resolved_negative_mode == mode and cfg.to_dict()["negative_mode"] == mode
    assert make_config({"model": "mf", "loss": "ccl", "sampler": "two-stage",
                        "negatives": 800}).resolved_negative_mode == "per-row"
    assert make_config({"model": "cml"}).resolved_negative_mode == "per-row"
    for bad, match in [({"margin_weights": "0.5,0.6,0.2,0.1"}, "sum to 1"),
                       ({"margins": "0.6,0.7"}, "same length"),
                       ({"margins": "0.6,x,0.8,0.9"}, "comma-separated"),
                       ({"margins": "0.6,0.7,0.8,1.5"}, r"\[-1, 1\]"),
                       ({"loss": "ccl", "margin": 2.0}, r"\[-1, 1\]"),
                       ({"loss": "ccl", "model": "cml", "norm": "ball"}, "sphere"),
                       ({"loss": "ccl", "negative_mode": "shared", "sampler": "two-stage"}, "shared"),
                       ({"gamma": 1.2}, "gamma")]:
        with pytest.raises(NegspaceError, match=match):
            make_config({"model": "mf", **bad})


def test_cli_bad_margin_weights_exit_2(toy_csv, tmp_path, capsys):
    code = main(["train", "--dataset", str(toy_csv), "--model", "mf", "--loss", "mml",
                 "--margins", "0.6,0.9", "--margin-weights", "0.5,0.6", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sum to 1" in err[0]


@pytest.mark.parametrize("argv", [
    ["--model", "mf", "--loss", "ccl", "--sampler", "uniform", "--margin", "0.5"],
    ["--model", "simplex", "--loss", "mml", "--sampler", "popularity", "--aggregator", "self_attention",
     "--gamma", "0.5", "--margins", "0.3,0.6", "--margin-weights", "0.4,0.6"],
    ["--model", "simplex", "--loss", "ccl", "--sampler", "uniform", "--negative-mode", "per-row"],
    ["--model", "cml", "--loss", "mml", "--sampler", "two-stage"],
])
def test_train_evaluate_recommend_agree(toy_csv, tmp_path, capsys, argv):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(toy_csv), "--negatives", "20", "--batch-size", "32",
                 "--dim", "8", "--epochs", "2", "--lr", "0.01", "--negative-weight", "10",
                 "--no-progress", "--out", str(out), *argv]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    vectors = load_file(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    if config["model"] != "cml":
        # cosine models export unit vectors, so a dot-product index ranks as the cosine does
        for name in ("user_embeddings", "item_embeddings"):
            assert torch.allclose(vectors[name].norm(dim=-1), torch.ones(len(vectors[name])), atol=1e-5)
    assert main(["evaluate", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    for key in ("recall@20", "ndcg@20", "ndcg@50"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    # recommend ranks by the exported vectors under the run's measure, training items left out
    from negspace import Recommender
    from negspace.pipeline.rundir import load_run
    run = load_run(out)
    u, v = vectors["user_embeddings"].double(), vectors["item_embeddings"].double()
    for user in run.train.user_ids[:3]:
        row = run.train.user_index(user)
        capsys.readouterr()
        assert main(["recommend", str(out), "--user", str(user), "-k", "5", "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        score = -(u[row] - v).pow(2).sum(1) if run.measure == "l2" else v @ u[row]
        seen = run.train.indices[run.train.indptr[row]:run.train.indptr[row + 1]]
        score[torch.from_numpy(seen.astype(np.int64))] = -float("inf")
        top = torch.topk(score, 5)
        assert got["items"] == run.train.item_ids[top.indices.numpy()].tolist()
        assert np.allclose(got["scores"], top.values.numpy(), atol=1e-5)
        assert Recommender.load(out).recommend(user, k=5).item.tolist() == got["items"]


def test_simplex_export_reads_the_whole_training_history(toy_csv):
    cfg = make_config(dict(dataset=str(toy_csv), model="simplex", sampler="uniform", negatives=10,
                           batch_size=32, dim=8, epochs=1, validation=0.3, progress=False))
    out = run_training(cfg)
    hist, mask = out.model.history(torch.arange(out.train.n_users))
    assert torch.equal(mask.sum(1), torch.from_numpy(np.minimum(out.train.user_degrees(), 50)))


def test_shared_and_per_row_runs_are_deterministic(toy_csv):
    def once(mode):
        cfg = make_config(dict(dataset=str(toy_csv), model="mf", loss="mml", sampler="uniform",
                               negative_mode=mode, negatives=10, batch_size=16, dim=8, epochs=2,
                               lr=0.01, seed=3, progress=False))
        assert isinstance(build_sampler(cfg), SharedNegativeSampler) == (mode == "shared")
        return run_training(cfg).model.items.weight.detach().clone()
    for mode in ("shared", "per-row"):
        assert torch.equal(once(mode), once(mode))
    assert not torch.equal(once("shared"), once("per-row"))
