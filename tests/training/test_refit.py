"""--refit: the validated run chooses the epochs and decays, the refit trains on all the data."""

import json

import pytest
import torch

from negspace.pipeline.refit import refit_config
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


def test_refit_auto_is_yes_on_small_data_only():
    cfg = make_config(with_default_recipe({}))
    assert cfg.refit == "auto"
    assert resolve_for_data(cfg, 6_022, 3_043).refit == "yes"
    assert resolve_for_data(cfg, 70_679, 24_915).refit == "no"
    no_validation = make_config(with_default_recipe({"validation": 0.0}))
    assert resolve_for_data(no_validation, 100, 100).refit == "no"


def test_refit_yes_needs_a_validation_split():
    with pytest.raises(Exception, match="needs validation > 0"):
        make_config({"model": "mf", "refit": "yes", "validation": 0.0})


def test_the_python_api_refits_too(toy_csv):
    from negspace import Recommender
    rec = Recommender("mf", **{k: v for k, v in _values(toy_csv, refit="yes").items()
                               if k not in ("dataset", "model")})
    rec.fit(str(toy_csv))
    assert rec.config.validation == 0.0 and rec.config.epochs == len(rec.history)
