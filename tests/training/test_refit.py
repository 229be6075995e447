"""--refit: the validated run chooses the epochs and decays, the refit trains on all the data."""

import json

import pytest
import torch

from negspace.pipeline.refit import fold_back_config, refit_config
from negspace.pipeline.fit import run_training
from negspace.config import make_config, resolve_for_data, with_default_recipe
from negspace.training.schedule import refit_plan


def _values(csv, **extra):
    return {**dict(dataset=str(csv), model="mf", loss="softmax", sampler="full", batch_by="user",
                   dim=8, epochs=12, lr=0.05, temperature=0.2, seed=1, progress=False), **extra}


def test_refit_plan_keeps_the_epochs_the_best_weights_hold_and_replays_the_decays():
    # epoch 3 did not improve: the plateau reloaded epoch 2's weights and decayed the rate
    history = [{"epoch": 1, "lr": 0.1, "val_m": 0.1}, {"epoch": 2, "lr": 0.1, "val_m": 0.2},
               {"epoch": 3, "lr": 0.1, "val_m": 0.15}, {"epoch": 4, "lr": 0.01, "val_m": 0.25},
               {"epoch": 5, "lr": 0.01, "val_m": 0.24}]
    assert refit_plan(history, "val_m", 4, True, 0.1) == {
        "epochs": 3, "lr_schedule": "steps", "lr_steps": "2"}
    assert refit_plan(history, "val_m", 2, False, 0.1) == {"epochs": 2}


def test_refit_config_trains_on_everything_for_the_chosen_epochs(toy_csv, monkeypatch):
    cfg = make_config(_values(toy_csv, refit="yes"))
    history = [{"epoch": e, "lr": 0.05, "val_recall@20": 0.1 * e} for e in (1, 2, 3)]
    final = refit_config(cfg, history, 3, "recall@20")
    assert (final.validation, final.epochs, final.refit, final.lr_steps) == (0.0, 3, "no", "")
    import negspace.pipeline.build as build  # where the pipeline builds its Trainer
    trained_on, real = [], build.Trainer
    monkeypatch.setattr(build, "Trainer", lambda *a, **k: trained_on.append(a[3]) or real(*a, **k))
    out = run_training(final)
    monkeypatch.undo()
    assert len(out.history) == 3 and not any(k.startswith("val_") for k in out.history[-1])
    assert trained_on[0].nnz == out.train.nnz  # the whole training split, nothing held out
    # every training interaction: the same weights as a run told so directly
    plain = run_training(make_config(_values(toy_csv, epochs=3, validation=0.0)))
    assert torch.equal(out.model.items.weight, plain.model.items.weight)
    held_out = run_training(make_config(_values(toy_csv, epochs=3, validation=0.2)))
    assert not torch.equal(out.model.items.weight, held_out.model.items.weight)


def _rows(text: str) -> list[dict]:
    import csv
    import io
    return [{k: float(v) for k, v in row.items() if v != ""}
            for row in csv.DictReader(io.StringIO(text))]


def test_a_refit_run_is_the_validated_runs_choice_retrained_on_all_data(toy_csv, tmp_path):
    out = run_training(make_config(_values(toy_csv, refit="yes")), tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["validation"] == 0.0 and config["refit"] == "no"
    assert config["epochs"] == out.metrics["refit_epochs"] == len(out.history)
    selection = _rows((tmp_path / "run" / "selection.csv").read_text())
    key = "val_ndcg@50"  # a file: the k-fold protocol's selection metric
    best = int(out.metrics["selection_best_epoch"])
    scores = [r[key] for r in selection]
    assert best == selection[scores.index(max(scores))]["epoch"]  # the first best epoch
    # the refit trains what the validated run's best weights hold, its decays replayed
    plan = refit_plan(selection, key, best, True, 0.1)
    assert config["epochs"] == plan["epochs"] == len(out.history)
    assert config["lr_steps"] == plan.get("lr_steps", "")
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["selection_best_epoch"] == out.metrics["selection_best_epoch"]
    # the refit is exactly a plain run of its own config.json: same seed, same weights
    plain = run_training(make_config({k: v for k, v in config.items()
                                      if k not in ("protocol", "commit")}))
    assert torch.equal(out.model.items.weight, plain.model.items.weight)
    # and it differs from the validated run's model, which never saw the held-out 10%
    validated = run_training(make_config(_values(toy_csv)))
    assert not torch.equal(out.model.items.weight, validated.model.items.weight)


def test_refit_auto_refits_small_data_and_folds_back_up_to_4e9_cells():
    cfg = make_config(with_default_recipe({}))
    assert cfg.refit == "auto"
    assert resolve_for_data(cfg, 6_022, 3_043).refit == "yes"
    # asked to fold back on small data: 7 epochs at a tenth of the rate, validated at the first
    asked = resolve_for_data(make_config(with_default_recipe({"refit": "fold-back"})), 6_022, 3_043)
    assert (asked.fold_back_epochs, asked.fold_back_lr_scale) == (7, 0.1)
    assert (asked.max_decays, asked.lr_floor) == (0, asked.lr)
    large = resolve_for_data(cfg, 70_679, 24_915)
    assert (large.refit, large.fold_back_epochs, large.fold_back_lr_scale) == ("fold-back", 3, 1)
    assert resolve_for_data(cfg, 52_643, 91_599).refit == "no"  # 4.8e9 cells: past the cap
    two = make_config(with_default_recipe({"nproc": 2}))
    assert resolve_for_data(two, 70_679, 24_915).refit == "no"
    no_validation = make_config(with_default_recipe({"validation": 0.0}))
    assert resolve_for_data(no_validation, 100, 100).refit == "no"
    # what the user gives stays
    given = make_config(with_default_recipe({"fold_back_epochs": 2, "fold_back_lr_scale": 1.0}))
    mine = resolve_for_data(given, 6_022, 3_043)
    assert (mine.fold_back_epochs, mine.fold_back_lr_scale) == (2, 1.0)
    assert make_config({"model": "mf"}).fold_back_lr_scale == 1.0  # outside the recipe: --lr


@pytest.mark.parametrize("refit", ["yes", "fold-back"])
def test_refit_yes_needs_a_validation_split(refit):
    with pytest.raises(Exception, match="needs validation > 0"):
        make_config({"model": "mf", "refit": refit, "validation": 0.0})


def test_the_python_api_refits_too(toy_csv):
    from negspace import Recommender
    rec = Recommender("mf", **{k: v for k, v in _values(toy_csv, refit="yes").items()
                               if k not in ("dataset", "model")})
    rec.fit(str(toy_csv))
    assert rec.config.validation == 0.0 and rec.config.epochs == len(rec.history)


def test_fold_back_config_goes_on_without_validation_or_schedule(toy_csv):
    cfg = make_config(_values(toy_csv, refit="fold-back", fold_back_epochs=2))
    final = fold_back_config(cfg)
    assert (final.refit, final.validation, final.val_users, final.epochs, final.lr_schedule,
            final.lr) == ("no", 0.0, 0, 2, "none", cfg.lr)
    decayed = fold_back_config(make_config(_values(toy_csv, refit="fold-back", lr=0.02,
                                                   fold_back_lr_scale=0.25)))
    assert decayed.lr == pytest.approx(0.005)


def test_a_fold_back_run_goes_on_from_the_validated_model_over_all_data(toy_csv, tmp_path):
    values = _values(toy_csv, refit="fold-back", fold_back_epochs=2)
    out = run_training(make_config(values), tmp_path / "run")
    assert len(out.history) == 2 == out.metrics["fold_back_epochs"]
    assert not any(k.startswith("val_") for k in out.history[-1])
    assert (tmp_path / "run" / "selection.csv").exists() and out.metrics["selection_best_epoch"] >= 1
    # config.json records the whole run: repeating it gives the same model (same seed)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["refit"], config["fold_back_epochs"], config["validation"]) == (
        "fold-back", 2, 0.1)
    again = run_training(make_config({k: v for k, v in config.items()
                                      if k not in ("protocol", "commit")}))
    assert torch.equal(out.model.items.weight, again.model.items.weight)
    # the second run starts from the validated run's model, not from a new one
    validated = run_training(make_config(_values(toy_csv)), evaluate_test=False)
    by_hand = run_training(fold_back_config(make_config(values)), start=validated.model)
    assert torch.equal(out.model.items.weight, by_hand.model.items.weight)
    fresh = run_training(fold_back_config(make_config(values)))
    assert not torch.equal(out.model.items.weight, fresh.model.items.weight)


def test_fold_back_over_the_graph_reads_every_training_interaction(toy_csv):
    validated = run_training(make_config(_values(toy_csv, layers=2)), evaluate_test=False)
    graph_before = validated.model.graph
    folded = run_training(fold_back_config(make_config(_values(toy_csv, layers=2,
                                                               refit="fold-back"))),
                          start=validated.model)
    # the model's graph was set to all the training data (a new buffer) before the epochs
    assert folded.model.graph is not graph_before
    assert folded.model.graph._nnz() == folded.train.nnz


def test_the_python_api_folds_back_too(toy_csv):
    from negspace import Recommender
    values = _values(toy_csv, refit="fold-back", fold_back_epochs=2)
    rec = Recommender("mf", **{k: v for k, v in values.items() if k not in ("dataset", "model")})
    rec.fit(str(toy_csv))
    assert rec.config.refit == "fold-back" and len(rec.history) == 2
