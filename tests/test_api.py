"""The Python API: building interactions, fit, recommend (filters, candidates), similar items,
fold-in of new users, evaluation and the save/load round trip with the CLI's run directory."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from negspace import NegspaceError, Recommender, interactions_from, time_split
from negspace.cli import main


def clustered(n_users: int = 240, n_items: int = 96, n_groups: int = 6, per_user: int = 12,
              seed: int = 0) -> pd.DataFrame:
    """Users of group g like mostly the items of group g, plus two random items each."""
    rng = np.random.default_rng(seed)
    group_items = np.array_split(rng.permutation(n_items), n_groups)
    rows = []
    for u in range(n_users):
        own = rng.choice(group_items[u % n_groups], size=per_user - 2, replace=False)
        other = rng.choice(n_items, size=2, replace=False)
        rows += [(f"u{u}", f"i{i}") for i in sorted(set(own) | set(other))]
    return pd.DataFrame(rows, columns=["user", "item"])


OPTIONS = dict(sampler="uniform", lr=0.05, dim=16, epochs=15, validation=0, progress=False,
               threads=1, batch_size=256, seed=0)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return clustered()


@pytest.fixture(scope="module", params=["mf", "cml"])
def fitted(request, data) -> Recommender:
    torch.set_num_threads(1)
    return Recommender(request.param, **OPTIONS).fit(data)


def _items_of(frame: pd.DataFrame, key) -> list:
    return frame[frame.user == key].sort_values("rank").item.tolist()


def test_recommend_filters_seen_items_and_ranks_by_score(fitted, data):
    users = ["u0", "u7", "u13"]
    recs = fitted.recommend(users, k=10)
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    for u in users:
        mine = recs[recs.user == u]
        assert mine["rank"].tolist() == list(range(1, 11))
        assert not set(mine.item) & set(data[data.user == u].item)
        assert (np.diff(mine.score.to_numpy()) <= 1e-6).all()
    # the scores are the model's: recompute one from the vectors
    row, col = fitted.train.user_index("u0"), fitted.train.item_index(recs.item.iloc[0])
    u, v = fitted.user_vectors[row], fitted.item_vectors[col]
    want = -(u - v).pow(2).sum() if fitted.measure == "l2" else (u * v).sum()
    assert recs.score.iloc[0] == pytest.approx(float(want), rel=1e-5, abs=1e-5)


def test_recommend_candidates_exclusions_and_seen(fitted, data):
    seen = data[data.user == "u1"].item.tolist()
    unfiltered = fitted.recommend("u1", k=5, filter_seen=False)
    assert set(unfiltered.item) & set(seen)  # a model that learned ranks own items first
    allowed = ["i1", "i2", "i3", seen[0]]
    only = fitted.recommend("u1", k=10, items=allowed)
    assert set(only.item) == set(allowed) - {seen[0]}  # fewer than k: no padding rows
    best = fitted.recommend("u1", k=3).item.tolist()
    without = fitted.recommend("u1", k=3, exclude=best[:1])
    assert best[0] not in set(without.item) and without.item.tolist()[:2] == best[1:]
    with pytest.raises(NegspaceError, match="unknown user"):
        fitted.recommend("nobody")
    with pytest.raises(NegspaceError, match="unknown item"):
        fitted.recommend("u1", items=["nope"])


def test_similar_items_leave_the_item_out_and_follow_the_measure(fitted):
    sims = fitted.similar_items(["i0", "i5"], k=4)
    assert list(sims.columns) == ["item", "rank", "similar", "score"]
    v = fitted.item_vectors
    for item in ("i0", "i5"):
        mine = sims[sims.item == item]
        assert item not in set(mine.similar) and len(mine) == 4
        i = fitted.train.item_index(item)
        if fitted.measure == "l2":
            score = -(v - v[i]).pow(2).sum(1)
        else:
            score = torch.nn.functional.cosine_similarity(v, v[i:i + 1])
        score[i] = -np.inf
        want = fitted.train.item_ids[torch.topk(score, 4).indices.numpy()]
        assert mine.similar.tolist() == want.tolist()


def test_fold_in_of_a_copied_history_gives_nearly_the_users_recommendations(fitted, data):
    users = [f"u{u}" for u in range(0, 240, 11)]
    histories = {f"copy-{u}": data[data.user == u].item.tolist() for u in users}
    new = fitted.recommend_new(histories, k=10)
    old = fitted.recommend(users, k=10)
    overlap = [len(set(_items_of(new, f"copy-{u}")) & set(_items_of(old, u))) / 10 for u in users]
    other = [len(set(_items_of(old, u)) & set(_items_of(old, users[(j + 1) % len(users)]))) / 10
             for j, u in enumerate(users)]
    assert np.mean(overlap) >= 0.7 and min(overlap) >= 0.4, overlap
    assert np.mean(other) <= 0.2  # another user's list would not pass
    for u in users:  # the given history counts as seen
        assert not set(_items_of(new, f"copy-{u}")) & set(histories[f"copy-{u}"])
    again = fitted.recommend_new(histories, k=10)
    pd.testing.assert_frame_equal(new, again)  # deterministic for the seed


def test_fold_in_of_a_model_trained_with_hard_negatives(data):
    # 2-stage negatives shape CML's user vectors in ways a refit only approximates (fold-in uses
    # hardest-of-draws negatives for it): measured mean overlap 0.65, against 0.04 for another user
    rec = Recommender("cml", **{**OPTIONS, "sampler": "two-stage"}).fit(data)
    users = [f"u{u}" for u in range(0, 240, 11)]
    new = rec.recommend_new({u: data[data.user == u].item.tolist() for u in users}, k=10)
    old = rec.recommend(users, k=10)
    overlap = [len(set(_items_of(new, u)) & set(_items_of(old, u))) / 10 for u in users]
    assert np.mean(overlap) >= 0.5, overlap


def test_fold_in_rejects_unknown_items_and_empty_histories(fitted):
    with pytest.raises(NegspaceError, match="unknown item"):
        fitted.recommend_new([["i1", "zzz"]])
    with pytest.raises(NegspaceError, match="at least one item"):
        fitted.recommend_new({"a": []})


def test_save_load_round_trip_and_cli_serves_it(fitted, tmp_path, capsys):
    out = fitted.save(tmp_path / "run")
    for name in ("config.json", "metrics.json", "history.csv", "model.safetensors", "ids.json",
                 "interactions.safetensors"):
        assert (out / name).exists(), name
    loaded = Recommender.load(out)
    users = ["u2", "u9"]
    pd.testing.assert_frame_equal(loaded.recommend(users, k=7), fitted.recommend(users, k=7))
    assert loaded.measure == fitted.measure and loaded.config.model == fitted.config.model
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u2", "-k", "7", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["items"] == _items_of(fitted.recommend("u2", k=7), "u2")
    with pytest.raises(NegspaceError, match="already holds"):
        fitted.save(out)


def test_a_cli_run_loads_in_python(tmp_path):
    csv = tmp_path / "toy.csv"
    clustered(n_users=40, n_items=30, per_user=6).to_csv(csv, index=False)
    run = tmp_path / "cli-run"
    assert main(["train", "--dataset", str(csv), "--model", "mf", "--sampler", "uniform",
                 "--dim", "8", "--epochs", "2", "--batch-size", "64", "--threads", "1",
                 "--no-progress", "--out", str(run)]) == 0
    rec = Recommender.load(run)
    from tests.reference import scores_of
    scores = scores_of(rec.user_vectors, rec.item_vectors, rec.measure)[rec.train.user_index("u3")]
    scores[rec.train.matrix[rec.train.user_index("u3")].indices] = -np.inf  # seen items
    order = np.argsort(-scores, kind="stable")[:5]
    got = rec.recommend("u3", k=5)
    assert got.item.tolist() == rec.train.item_ids[order].tolist()
    assert np.allclose(got.score, scores[order], atol=1e-5)


def test_evaluate_reports_accuracy_and_beyond_accuracy(fitted, data):
    train, test = time_split(data.assign(timestamp=np.arange(len(data))), 0.25)
    rec = Recommender(fitted.config.model, **OPTIONS).fit(train)
    metrics = rec.evaluate(test)
    # every value against the plain per-user computation from the definitions
    from tests.reference import reference_metrics, rows_of, scores_of
    scores = scores_of(rec.user_vectors, rec.item_vectors, rec.measure)
    for k in (20, 50):
        want = reference_metrics(scores, rows_of(rec.train.matrix), rows_of(test.matrix), k)
        for key, value in want.items():
            assert metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert metrics["recall@50"] > 0.3  # the clusters are easy to learn
    assert metrics["n_eval_users"] == test.user_degrees().astype(bool).sum()


def test_interactions_from_frames_matrices_and_bad_input():
    df = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": [3, 3, 4, 5],
                       "plays": [1, 2, 9, 0.5]})
    inter = interactions_from(df, weight="plays", min_weight=1)
    assert inter.user_ids.tolist() == ["a", "b"] and inter.item_ids.tolist() == [3, 4]
    assert inter.matrix.toarray().tolist() == [[3, 0], [0, 9]]  # duplicates summed
    m = sp.random(5, 7, density=0.4, format="csr", random_state=0)
    assert (interactions_from(m).matrix != m.astype(np.float32)).nnz == 0
    fixed = interactions_from(df, item_ids=np.array([4, 5, 6]))
    assert fixed.n_items == 3 and fixed.nnz == 2  # item 3 is not in the map: dropped
    with pytest.raises(NegspaceError, match="no column 'usr'"):
        interactions_from(df, user="usr")
    with pytest.raises(NegspaceError, match="non-numeric"):
        interactions_from(df.assign(plays=["x", 1, 2, 3]), weight="plays")
    with pytest.raises(NegspaceError, match="cannot build"):
        interactions_from([1, 2])


def test_time_split_holds_out_each_users_latest_rows():
    df = pd.DataFrame({"user": [1, 1, 1, 1, 2, 2], "item": [10, 11, 12, 13, 10, 11],
                       "timestamp": [4, 1, 3, 2, 5, 6]})
    train, test = time_split(df, 0.5)
    assert train.item_ids.tolist() == test.item_ids.tolist() == [10, 11, 12, 13]
    assert test.matrix.toarray().astype(bool).tolist() == [[True, False, True, False],
                                                           [False, True, False, False]]
    assert train.nnz + test.nnz == 6


def test_unfitted_recommender_says_so():
    with pytest.raises(NegspaceError, match="not fitted"):
        Recommender().recommend("u1")
    with pytest.raises(NegspaceError, match="^model must be one of .*; got 'nope'$"):
        Recommender("nope")


def test_without_faiss_the_index_is_one_clear_error(fitted, tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with pytest.raises(NegspaceError, match=r"pip install 'negspace\[faiss\]'"):
        fitted.build_index()
    out = fitted.save(tmp_path / "run")
    capsys.readouterr()
    assert main(["export", str(out), "--faiss"]) == 2
    assert main(["recommend", str(out), "--user", "u1", "--faiss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("faiss is not installed" in line for line in err)


def test_interactions_in_another_id_space_are_mapped_by_id():
    a = interactions_from(pd.DataFrame({"user": ["x", "y"], "item": [1, 2]}))
    b = interactions_from(a, user_ids=np.array(["y", "z"]), item_ids=np.array([2, 1, 7]))
    assert b.matrix.toarray().tolist() == [[1, 0, 0], [0, 0, 0]]  # x dropped, y-2 kept
    assert interactions_from(a, user_ids=a.user_ids) is a


def test_fold_in_constraint_follows_the_trained_vectors(fitted, data):
    assert fitted._constraint() == ("sphere" if fitted.config.model == "cml" else "none")
    from negspace.models import MF
    factory = Recommender(model=lambda n_users, n_items: MF(n_users, n_items, 8),
                          **{**OPTIONS, "epochs": 2}).fit(data)
    assert factory._constraint() == "none" and factory.measure == "dot"
    assert factory.config.model == "mf" and factory.config.resolved_loss == "bpr"
    assert len(factory.recommend_new([["i1", "i2"]], k=4)) == 4


def test_a_run_saved_from_python_records_its_data_and_evaluate_follows(data, tmp_path, capsys):
    options = {**OPTIONS, "epochs": 1}
    out = Recommender("mf", **options).fit(data).save(tmp_path / "memory")
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] is None and config["data"] == "DataFrame held in memory"
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2  # was a traceback (shapes of another dataset)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Recommender.evaluate(test)" in err

    csv = tmp_path / "plays.csv"  # a k-fold file: fit reads all of it, no test fold is left
    data.to_csv(csv, index=False)
    out = Recommender("mf", **options).fit(str(csv)).save(tmp_path / "kfold")
    assert json.loads((out / "config.json").read_text())["dataset"] == str(csv)
    assert main(["evaluate", str(out)]) == 2
    assert "no test fold" in capsys.readouterr().err

    folder = tmp_path / "split"  # a given split: evaluate reads its test part again
    folder.mkdir()
    users = {u: [int(i[1:]) for i in g.item] for u, g in data.groupby("user")}
    for name, part in (("train.txt", slice(None, -2)), ("test.txt", slice(-2, None))):
        (folder / name).write_text("".join(f"{u[1:]} {' '.join(map(str, items[part]))}\n"
                                           for u, items in users.items()))
    rec = Recommender("mf", **options).fit(str(folder))
    out = rec.save(tmp_path / "given")
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    got = json.loads((out / "metrics.json").read_text())
    from negspace.data import load_dataset
    want = rec.evaluate(load_dataset(str(folder)).test)
    assert got["ndcg@20"] == pytest.approx(want["ndcg@20"]) and got["n_eval_users"] == 240


def test_python_errors_speak_python_with_suggestions(data, tmp_path, capsys):
    cases = [(dict(epoch=2), "unknown option 'epoch'; did you mean 'epochs'"),
             (dict(factors=64), "unknown option 'factors'; did you mean 'dim'?"),  # implicit's
             (dict(learning_rate=0.1), "did you mean 'lr'?"),
             (dict(model="two_tower"), "got 'two_tower'; did you mean 'two-tower'?"),
             (dict(progress="maybe"), "^progress expects bool"),
             (dict(sampler="in-batch", loss="bpr"), "^sampler in-batch needs loss triplet, ccl")]
    for options, message in cases:
        with pytest.raises(NegspaceError, match=message) as caught:
            Recommender(**{"model": "mf", **options})
        assert "--" not in str(caught.value), str(caught.value)
    rec = Recommender("mf", **{**OPTIONS, "epochs": 1})
    with pytest.raises(NegspaceError, match="unknown keyword 'usr'.*did you mean 'user'"):
        rec.fit(data, usr="user")
    rec.fit(data)
    with pytest.raises(NegspaceError, match="unknown keyword 'k'.*did you mean 'ks'"):
        rec.evaluate(data, k=10)
    rec.save(tmp_path / "run")
    with pytest.raises(NegspaceError, match="pass overwrite=True to replace it$"):
        rec.save(tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")  # not a run: nothing to resume either
    with pytest.raises(NegspaceError, match="other files; pass overwrite=True to replace it$"):
        rec.save(tmp_path / "other")
    # the command line keeps its flags, and suggests flags
    capsys.readouterr()
    assert main(["train", "--factors", "64", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean --dim?" in capsys.readouterr().err
    assert main(["train", "--model", "two_tower", "--out", str(tmp_path / "x")]) == 2
    assert "--model must be one of" in capsys.readouterr().err
    toml = tmp_path / "c.toml"
    toml.write_text("epoch = 3\n")
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "x")]) == 2
    assert "unknown option 'epoch'; did you mean 'epochs'" in capsys.readouterr().err


def test_dataframes_with_the_column_names_files_use(data):
    renamed = {"userId": ("userId", "movieId"), "user_id": ("user_id", "item_id")}
    for user, item in renamed.values():
        frame = data.rename(columns={"user": user, "item": item})
        inter = interactions_from(frame)
        assert inter.nnz == len(data) and inter.n_users == 240
        rec = Recommender("mf", **{**OPTIONS, "epochs": 1}).fit(frame)
        assert rec.train.nnz == len(data)
    odd = data.rename(columns={"user": "who", "item": "what"})
    with pytest.raises(NegspaceError, match="no user column .*name it with user="):
        interactions_from(odd)
    assert interactions_from(odd, user="who", item="what").nnz == len(data)
    rec = Recommender("mf", **{**OPTIONS, "epochs": 1, "user_col": "who", "item_col": "what"})
    assert rec.fit(odd).train.nnz == len(data)  # the file options name a DataFrame's columns too
    train, test = time_split(odd.assign(t=np.arange(len(odd))), 0.25, user="who", item="what",
                             timestamp="t")
    assert train.nnz + test.nnz == len(data)


def test_evaluate_drops_unknown_users_and_items(fitted, data):
    known = data[data.user.isin([f"u{u}" for u in range(0, 240, 7)])].groupby("user").head(3)
    strangers = pd.DataFrame({"user": ["nobody", "nobody", "u0", "u7"],
                              "item": ["i1", "zzz", "zzz", "i999"]})
    base = fitted.evaluate(known, ks=(10,))
    mixed = fitted.evaluate(pd.concat([known, strangers]), ks=(10,))
    assert mixed == base  # unknown users and items leave the numbers as they were
    assert base["n_eval_users"] == known.user.nunique()
    with pytest.raises(NegspaceError, match="no test interaction .* known"):
        fitted.evaluate(strangers, ks=(10,))
