"""Two-tower runs end to end: side features, the exported vectors, drift, cold start, and the
memory bank in the training loop (with the two-tower model and with CML + triplet)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from negspace.cli import main
from negspace.data.features import FeatureEncoder
from negspace.errors import NegspaceError
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import run_training
from negspace.api.cold import recommend_cold
from negspace.pipeline.towers import cold_vectors, load_towers
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions

from ..conftest import random_interactions


@pytest.fixture(scope="module")
def ml_folder(tmp_path_factory) -> Path:
    """A small MovieLens-100k-shaped folder with u.user and u.item."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("data") / "movielens-100k"
    folder.mkdir()
    rows = [f"{u}\t{i}\t5\t0" for u in range(1, 41)
            for i in rng.choice(np.arange(1, 61), size=15, replace=False)]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    occupations = ["student", "writer", "engineer"]
    (folder / "u.user").write_text("".join(
        f"{u}|{18 + u}|{'MF'[u % 2]}|{occupations[u % 3]}|0{u:04d}\n" for u in range(1, 41)))
    genres = lambda i: "|".join("1" if (i + g) % 5 == 0 else "0" for g in range(19))
    (folder / "u.item").write_text("".join(
        f"{i}|Film {i}|01-Jan-{1950 + i}||http://x|{genres(i)}\n" for i in range(1, 61)))
    return folder


def _values(folder, **kw):
    values = dict(dataset=str(folder), model="two-tower", sampler="memory-bank", bank_size=64,
                  warmup=3, negatives=4, batch_size=32, dim=8, epochs=2, lr=0.01, seed=1,
                  progress=False, min_epochs=0)
    return {**values, **kw}


def test_two_tower_run_writes_towers_drift_and_full_history_vectors(ml_folder, tmp_path, capsys):
    out = run_training(make_config(_values(ml_folder)), tmp_path / "run")
    run = tmp_path / "run"
    meta = json.loads((run / "features.json").read_text())
    assert [c["name"] for c in meta["user"]] == ["age", "gender", "occupation"]  # zip: an identifier
    assert meta["n_item_features"] > 0 and (run / "drift.png").stat().st_size > 0
    history = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    assert all(float(row["drift_10"]) > 0 for row in history)
    vectors = load_file(str(run / "model.safetensors"))
    model = out.model
    assert int(model.hist_len.sum()) == out.train.nnz  # the whole training history, not fit_on
    with torch.no_grad():
        assert torch.allclose(vectors["user_embeddings"], model.user_vectors(None))
    # cold start: a training user's raw features and whole history give its stored vector, up
    # to the id part (the cold start stands the mean id embedding in for the user's own)
    towers, meta_json, stored = load_towers(run)  # rebuilt from the run directory alone
    encoder = FeatureEncoder.from_json(meta_json["user"])
    occupations = ["student", "writer", "engineer"]  # as ml_folder writes u.user
    for user in (3, 8, 17):
        row = stored.train.user_index(user)
        history = stored.train.indices[stored.train.indptr[row]:stored.train.indptr[row + 1]]
        raw = {"age": 18 + user, "gender": "MF"[user % 2], "occupation": occupations[user % 3]}
        cold = cold_vectors(towers, meta_json["user"], [raw], [history.tolist()])
        with torch.no_grad():
            # the raw features, encoded by the stored encoder, give the exported vector
            towers.user_x[row] = torch.from_numpy(encoder.transform(pd.DataFrame([raw])))[0]
            exported = vectors["user_embeddings"][row:row + 1]
            assert torch.allclose(towers.user_vectors(torch.tensor([row])), exported, atol=1e-5)
            own = towers.users.weight[row].clone()
            towers.users.weight[row] = towers.users.weight.mean(0)
            as_if_cold = towers.user_vectors(torch.tensor([row]))
            towers.users.weight[row] = own
            stored_vector = towers.user_vectors(torch.tensor([row]))
        assert torch.allclose(cold, as_if_cold, atol=1e-5), user
        assert not torch.allclose(cold, stored_vector, atol=1e-5)  # the id part does count
    # the CLI answers without retraining, exactly as recommend_cold
    feature_file = tmp_path / "new.json"
    feature_file.write_text(json.dumps({"features": {"age": 30, "gender": "F", "occupation": "writer"},
                                        "items": ["1", "2"]}))
    capsys.readouterr()
    assert main(["recommend", str(run), "--features", str(feature_file), "-k", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    items, scores = recommend_cold(run, {"age": 30, "gender": "F", "occupation": "writer"}, [1, 2], 5)
    assert len(items) == 5 and "1" not in map(str, items) and scores == sorted(scores, reverse=True)
    assert cli["items"] == items and np.allclose(cli["scores"], scores)
    # unknown features and values are refused in one line naming the valid ones
    for features, message in [
            ({"zip": "00001"}, "unknown user feature 'zip'; this run's user features are age, "
                               "gender, occupation"),
            ({"gender": "X"}, "user feature 'gender' has no value 'X'; the training data hold F, M"),
            ({"occupation": "pilot"}, "the training data hold engineer, student, writer"),
            ({"age": "old"}, "user feature 'age' is a number; got 'old'")]:
        with pytest.raises(NegspaceError, match=message):
            recommend_cold(run, features, [1], 5)
        feature_file.write_text(json.dumps({"features": features, "items": ["1"]}))
        assert main(["recommend", str(run), "--features", str(feature_file)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert recommend_cold(run, {"gender": None}, [1], 5)[0]  # a missing value counts as unknown
    with pytest.raises(NegspaceError, match="not in the run's catalogue"):
        recommend_cold(run, {}, ["nope"], 5)
    import negspace  # the same call is public at the top level (docs/guide.md runs it)
    assert negspace.recommend_cold is recommend_cold and "recommend_cold" in negspace.__all__


def test_no_side_features_falls_back_to_ids_and_history(ml_folder, tmp_path):
    run_training(make_config(_values(ml_folder, side_features=False, sampler="in-batch")),
                 tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "features.json").read_text())
    assert meta["user"] is None and meta["n_user_features"] == 0
    with pytest.raises(NegspaceError, match="reads no user side features"):
        recommend_cold(tmp_path / "run", {"age": 30}, [1], 5)  # would be dropped silently
    assert len(recommend_cold(tmp_path / "run", {}, [1], 5)[0]) == 5


@pytest.mark.parametrize("model, loss", [("two-tower", "softmax"), ("cml", "triplet"),
                                         ("mf", "ccl"), ("simplex", "mml"), ("cml", "mml")])
def test_bank_is_filled_after_the_loss_with_the_vectors_before_the_update(model, loss):
    inter = random_interactions(n_users=30, n_items=40, density=0.3, seed=3, dense_user=False)
    extra = {"measure": "cosine"} if model == "mf" else {}
    if loss in ("ccl", "mml"):  # margins every negative exceeds, so that the bank's terms count
        extra.update(margin=-0.99, margins=[-0.99, -0.98], margin_weights=[0.5, 0.5])
    cfg = make_config(dict(model=model, loss=loss, sampler="memory-bank", bank_size=100, warmup=1,
                           negatives=3, dim=8, lr=0.05, **extra))
    net = build_model(cfg, inter.n_users, inter.n_items, history=inter)
    trainer = Trainer(net, build_sampler(cfg), build_objective(cfg), inter,
                      TrainerOptions(batch_size=16, negatives=3, progress=False, drift=True,
                                     epochs=20))
    users, items = (torch.from_numpy(a[:16]) for a in inter.pairs())
    with torch.no_grad():
        before = net.item_vectors(items).clone()
    trainer.step(users, items)
    ids, stored = trainer.sampler.contents()
    assert ids.tolist() == items.tolist() and torch.equal(stored, before)
    with torch.no_grad():
        assert not torch.allclose(net.item_vectors(items), before)  # the update came after
    # the second step uses the bank (warm-up 1) and the loss reads it: it changes with the bank
    users2, items2 = (torch.from_numpy(a[16:32]) for a in inter.pairs())
    cands = trainer.sampler.candidates(users2.numpy(), items2.numpy(), 3)
    assert cands.bank_vectors is not None
    obj = trainer.objective
    neg = None if loss != "triplet" else torch.from_numpy(trainer.sampler.sample(users2.numpy(), items2.numpy(), 3))
    with torch.no_grad():
        with_bank = obj.with_candidates(net, users2, items2, cands, neg)
        cands.bank_vectors = None
        without = obj.with_candidates(net, users2, items2, cands, neg)
    assert with_bank.item() != without.item()


def _bank_holding_one_batch(cfg, inter, stale_scale: float = 1.0):
    """Model, objective, (first batch's items, second batch's users and items) and the second
    batch's candidates, after the first batch's item vectors (times `stale_scale`) entered the bank."""
    net = build_model(cfg, inter.n_users, inter.n_items, history=inter)
    sampler, obj = build_sampler(cfg), build_objective(cfg)
    sampler.fit(inter)
    users, items = (torch.from_numpy(a) for a in inter.pairs())
    u1, i1, u2, i2 = users[:20], items[:20], users[20:36], items[20:36]
    sampler.candidates(u1.numpy(), i1.numpy(), cfg.negatives)
    with torch.no_grad():
        sampler.enqueue(i1, net.item_vectors(i1) * stale_scale)
    return net, obj, (i1, u2, i2), sampler.candidates(u2.numpy(), i2.numpy(), cfg.negatives)


@pytest.mark.parametrize("loss", ["ccl", "mml"])
def test_cosine_losses_with_the_bank_equal_the_loss_on_hand_built_cosines(loss):
    """Batch and bank vectors are every row's negatives; the row's own positive never counts."""
    from negspace.losses import cosine_contrastive, multi_margin

    inter = random_interactions(n_users=30, n_items=40, density=0.3, seed=5, dense_user=False)
    cfg = make_config(dict(model="mf", measure="cosine", loss=loss, sampler="memory-bank",
                           bank_size=50, negatives=3, dim=8, margin=0.3, negative_weight=7.0))
    net, obj, (i1, u2, i2), cands = _bank_holding_one_batch(cfg, inter)
    with torch.no_grad():
        got = obj.with_candidates(net, u2, i2, cands)
        u, p = net.user_vectors(u2), net.item_vectors(i2)
        bank_ids = torch.cat([i2, i1])
        neg = u @ torch.cat([p, net.item_vectors(i1)]).T
        seen = {(int(a), int(b)) for a, b in zip(*inter.pairs())}
        mask = torch.tensor([[(int(a), int(b)) not in seen for b in bank_ids] for a in u2])
        assert not mask[torch.arange(16), torch.arange(16)].any()  # own positive masked
        pos = (u * p).sum(-1)
        if loss == "ccl":
            want = cosine_contrastive(pos, neg, 0.3, 7.0, mask).mean()
        else:
            want = multi_margin(pos, neg, obj.margins, obj.margin_weights, 1.0, 7.0, mask).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_split_bank_gradient_gives_the_item_side_the_in_batch_gradient_and_the_user_side_the_bank():
    """--split-bank-gradient: the item table's gradient is the in-batch softmax's, the user
    table's the one of the softmax over positive + batch + bank (MF: separate tables)."""
    inter = random_interactions(n_users=30, n_items=40, density=0.3, seed=7, dense_user=False)

    def grads(split: bool, bank: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
        cfg = make_config(dict(model="mf", loss="softmax", sampler="memory-bank", bank_size=50,
                               dim=8, temperature=0.5, split_bank_gradient=split))
        torch.manual_seed(0)
        # stale bank entries: unlike the current vectors
        net, obj, (_, u2, i2), cands = _bank_holding_one_batch(cfg, inter, stale_scale=3.0)
        if not bank:
            cands.bank_vectors = None
        loss = obj.with_candidates(net, u2, i2, cands)
        loss.backward()
        dense = lambda g: g.to_dense() if g.is_sparse else g
        return dense(net.users.weight.grad), dense(net.items.weight.grad), loss.item()

    user_split, item_split, _ = grads(split=True, bank=True)
    user_cbns, item_cbns, _ = grads(split=False, bank=True)
    user_inb, item_inb, _ = grads(split=False, bank=False)
    assert torch.allclose(item_split, item_inb, atol=1e-6)
    assert torch.allclose(user_split, user_cbns, atol=1e-6)
    assert not torch.allclose(item_split, item_cbns, atol=1e-4)  # the bank changed the paper's
    with pytest.raises(NegspaceError, match="split_bank_gradient needs"):
        make_config(dict(model="two-tower", sampler="in-batch", split_bank_gradient=True))


@pytest.mark.parametrize("values, message", [
    # Python terms (loss, bank_size): the same messages read --loss, --bank-size on the CLI
    (dict(sampler="in-batch", loss="bpr"), "needs loss triplet, ccl, mml, softmax or bsl"),
    (dict(model="two-tower", loss="softmax", negative_mode="shared", sampler="popularity"), "softmax"),
    (dict(model="two-tower", bank_size=0), "^bank_size must be >= 1"),
    (dict(model="two-tower", temperature=0), "^temperature must be > 0"),
])
def test_bad_options_fail_in_one_line(values, message):
    with pytest.raises(NegspaceError, match=message):
        make_config(values)


def test_new_options_enter_the_fingerprint_only_away_from_their_defaults():
    """Checkpoints written before these options existed still resume; changing one is refused."""
    from negspace.pipeline.fit import fingerprint

    inter = random_interactions(n_users=10, n_items=20, seed=4, dense_user=False)
    base = make_config(dict(sampler="uniform"))
    assert fingerprint(base, inter) == fingerprint(make_config(dict(sampler="uniform", bank_size=2048)), inter)
    assert fingerprint(base, inter) != fingerprint(make_config(dict(sampler="uniform", bank_size=512)), inter)
    assert fingerprint(base, inter) != fingerprint(make_config(dict(sampler="uniform", temperature=0.5)), inter)
