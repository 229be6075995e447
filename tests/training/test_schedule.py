"""Plateau learning-rate decay: the best weights come back, the rate drops, and training stops
after `patience` validations without improvement."""

import pytest
import torch

from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.config import make_config
from negspace.training.schedule import Decision, PlateauSchedule, floor_after
from negspace.training.trainer import Trainer, TrainerOptions
from negspace.data.splits import holdout_split
from tests.conftest import random_interactions


def _trainer(scores: list[float], schedule: str, patience: int = 3, epochs: int = 10,
             max_decays: int = 0):
    inter = random_interactions(seed=1)
    fit, val = holdout_split(inter, 0.2, 0)
    cfg = make_config(dict(model="mf", dim=8, negatives=2, progress=False))
    model = build_model(cfg, inter.n_users, inter.n_items)
    options = TrainerOptions(batch_size=32, negatives=2, epochs=epochs, lr=0.05, patience=patience,
                             min_epochs=0, select_metric="recall@20", progress=False,
                             lr_schedule=schedule, lr_decay=0.1, lr_floor=1e-6,
                             max_decays=max_decays)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), fit, options, val)
    feed = iter(scores)
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return {"recall@20": next(feed)}
    trainer.validate = validate
    return trainer, snapshots


def test_plateau_reloads_the_best_weights_and_decays_the_rate():
    trainer, snapshots = _trainer([0.1, 0.3, 0.2, 0.25, 0.4, 0.1, 0.1, 0.1], "plateau")
    seen = []
    original = trainer.run_epoch

    def run_epoch(bar, signals=None):  # the weights each epoch starts from
        seen.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return original(bar, signals)
    trainer.run_epoch = run_epoch
    result = trainer.fit()
    lrs = [row["lr"] for row in result.history]
    # epoch 3 and 4 do not improve on epoch 2: each decays the rate and restarts from epoch 2's
    # weights; epoch 5 improves; 6, 7, 8 do not: the third of those stops training.
    assert len(result.history) == 8 and result.best_epoch == 5
    assert lrs == pytest.approx([0.05, 0.05, 0.05, 0.005, 0.0005, 0.0005, 5e-05, 5e-06])
    for epoch_start, best in ((3, 1), (4, 1)):  # seen[i] is the start of epoch i + 1
        assert all(torch.equal(seen[epoch_start][k], snapshots[best][k]) for k in snapshots[best])
    assert not all(torch.equal(seen[2][k], snapshots[2][k]) for k in snapshots[2])
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], snapshots[4][k]) for k in final)


def test_no_schedule_keeps_the_rate_and_stops_on_patience():
    trainer, _ = _trainer([0.3, 0.2, 0.1, 0.1, 0.5], "none", patience=3)
    result = trainer.fit()
    assert [row["lr"] for row in result.history] == [0.05] * 4
    assert result.best_epoch == 1


def test_the_floor_ends_training():
    schedule = PlateauSchedule("plateau", 0.1, 1e-3, patience=10)
    assert not schedule.should_stop(1, 1e-2)
    assert schedule.should_stop(1, 1e-3)
    assert not PlateauSchedule("none", patience=10).should_stop(1, 1e-9)


def test_after_max_decays_the_next_validation_without_improvement_ends_training():
    scores = [0.1, 0.3, 0.2, 0.35, 0.32, 0.36, 0.37, 0.38, 0.1, 0.1, 0.1]
    # two decays (epochs 3 and 5), then improvements at 6 to 8 keep it going at the floor; the
    # next validation without improvement (9) ends training, where the patience of 3 needs 11
    result = _trainer(scores, "plateau", max_decays=2)[0].fit()
    assert [row["lr"] for row in result.history] == pytest.approx(
        [0.05, 0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005, 0.0005, 0.0005])
    assert result.best_epoch == 8
    unlimited = _trainer(scores, "plateau", epochs=9)[0].fit()  # same epochs before the stop
    assert [r["lr"] for r in unlimited.history] == [r["lr"] for r in result.history]
    assert len(_trainer(scores, "plateau", epochs=12)[0].fit().history) == 11


def test_the_floor_tolerates_the_rounding_of_repeated_decays():
    lr = 1e-2
    for _ in range(4):
        lr *= 0.1
    assert lr > 1e-6  # 1.0000000000000002e-06: one decay too many before the tolerance
    assert PlateauSchedule("plateau", 0.1, 1e-6, patience=10).should_stop(1, lr)
    assert floor_after(1e-2, 0.1, 1e-6, 2) == pytest.approx(1e-4)
    assert floor_after(1e-2, 0.1, 1e-6, 0) == 1e-6
    assert floor_after(1e-2, 0.1, 1e-3, 5) == 1e-3


def test_one_decision_for_the_trainer_and_the_replay():
    schedule = PlateauSchedule.for_rate("plateau", 1e-2, 0.1, 1e-6, max_decays=2)
    assert schedule.floor == pytest.approx(1e-4)  # the rate after two decays
    assert schedule.decide(0.2, float("-inf"), 0, 1e-2) == Decision(True, False, False, 0)
    assert schedule.decide(0.1, 0.2, 0, 1e-2) == Decision(False, True, False, 1)
    assert schedule.decide(0.1, 0.2, 0, 1e-2, last=True) == Decision(False, False, False, 1)
    assert schedule.decide(0.1, 0.2, 1, 1e-4) == Decision(False, False, True, 2)  # at the floor
    # an epoch without validation keeps the count; only the floor or the patience may stop
    assert schedule.decide(None, 0.2, 1, 1e-3) == Decision(False, False, False, 1)
    assert schedule.decide(None, 0.2, 1, 1e-4).stop
    plain = PlateauSchedule.for_rate("none", 1e-2, 0.1, 1e-6, patience=2)
    assert plain.floor == 1e-6
    assert plain.decide(0.1, 0.2, 1, 1e-2) == Decision(False, False, True, 2)


def test_the_default_recipe_stops_after_two_decays_one_on_large_data_none_before_a_fold_back():
    from negspace.config import resolve_for_data, with_default_recipe
    cfg = make_config(with_default_recipe({}))
    assert cfg.max_decays is None  # chosen with the refit, by the data's size
    assert resolve_for_data(cfg, 6_022, 3_043).max_decays == 2  # refit yes
    folded = resolve_for_data(cfg, 29_858, 40_981, 810_128)
    assert (folded.refit, folded.max_decays, folded.lr_floor) == ("fold-back", 0, cfg.lr)
    schedule = PlateauSchedule.for_rate("plateau", folded.lr, folded.lr_decay, folded.lr_floor,
                                        folded.max_decays)
    assert schedule.decide(0.1, 0.2, 0, folded.lr) == Decision(False, False, True, 1)
    huge = resolve_for_data(cfg, 300_000, 100_000, 7_800_000)  # 3e10 cells
    assert (huge.refit, huge.max_decays, huge.lr_floor) == ("no", 1, cfg.lr_floor)
    no_validation = make_config(with_default_recipe({"validation": 0.0}))
    assert resolve_for_data(no_validation, 29_858, 40_981).max_decays == 2
    given = make_config(with_default_recipe({"max_decays": 3}))
    assert resolve_for_data(given, 29_858, 40_981).max_decays == 3
    assert make_config(with_default_recipe({"model": "mf"})).max_decays == 0  # named: no recipe


def test_steps_replay_decays_without_validation():
    from negspace.tuning.tune import replayed_decays
    rates = [0.01, 0.01, 0.001, 0.001, 1e-5]
    replay = replayed_decays(rates, 0.1)
    assert replay == {"lr_schedule": "steps", "lr_steps": "2,4,4"}
    inter = random_interactions(seed=2)
    cfg = make_config(dict(model="mf", dim=8, negatives=2, progress=False, validation=0.0,
                           lr=0.01, epochs=5, **replay))
    model = build_model(cfg, inter.n_users, inter.n_items)
    options = TrainerOptions(batch_size=64, negatives=2, epochs=5, lr=0.01, progress=False,
                             lr_schedule="steps", lr_steps=cfg.lr_step_list, lr_decay=0.1)
    result = Trainer(model, build_sampler(cfg), build_objective(cfg), inter, options).fit()
    assert [row["lr"] for row in result.history] == pytest.approx(rates)
    assert replayed_decays([0.01, 0.01], 0.1) == {}


def test_the_default_recipe_and_its_sampler_for_the_data_size():
    from negspace.config import (DEFAULT_RECIPE, FULL_SOFTMAX_MAX_CELLS,
                                          FULL_SOFTMAX_MAX_ITEMS, resolve_for_data,
                                          with_default_recipe)
    cfg = make_config(with_default_recipe({"dim": 32}))
    assert cfg.model == "mf" and cfg.sampler == "auto" and cfg.dim == 32
    small = resolve_for_data(cfg, 100, 50)
    assert (small.sampler, small.batch_by, small.resolved_measure) == ("full", "user", "cosine")
    assert (small.dim, small.temperature) == (32, 0.15)  # the user's dim stays, T by size
    sized = make_config(with_default_recipe({}))
    assert (sized.dim, sized.temperature) == (0, 0)  # d and T chosen once the data's size is known
    assert make_config(with_default_recipe({"temperature": 0.2})).temperature == 0.2
    with pytest.raises(Exception, match="dim must be >= 4"):
        make_config({"model": "mf", "dim": 0})  # 0 means "by size" only with --sampler auto
    n = int(FULL_SOFTMAX_MAX_CELLS ** 0.5) + 1
    large = resolve_for_data(cfg, n, n)
    # above the full softmax's cap: its estimate from uniform draws, at most an eighth of the items
    assert (large.sampler, large.batch_by) == ("uniform-softmax", "user")
    assert large.negatives == n // 8
    synth = resolve_for_data(cfg, 300_000, 100_000)  # 1e9 / 300k draws a step
    assert (synth.sampler, synth.negatives) == ("uniform-softmax", 3333)
    assert resolve_for_data(cfg, 10_000_000, 100_000).negatives == 1000  # at least 1,000
    assert DEFAULT_RECIPE["negatives"] == 0  # chosen by the branch; a number given stays
    assert resolve_for_data(make_config(with_default_recipe({"negatives": 50})), n, n).negatives == 50
    amazon_book = resolve_for_data(cfg, 70_679, 24_915)  # 1.8e9 cells, short histories
    assert (amazon_book.sampler, amazon_book.batch_by, amazon_book.negatives) == (
        "uniform-softmax", "user", 24_915 // 8)
    long_history = resolve_for_data(cfg, 10_001, 10_001, 20 * 10_001)  # above 1e8 cells
    assert (long_history.dim, long_history.temperature) == (32, 0.1)  # the user's dim stays
    assert (long_history.layers, large.layers, small.layers) == (2, 0, 0)  # the graph encoder
    # batches by size: 1,024 users where each step propagates over the whole graph, else 256
    assert (long_history.batch_size, large.batch_size, small.batch_size) == (1024, 256, 64)
    # small data: batches halve (down to 64) until an epoch holds 20 steps
    assert [resolve_for_data(cfg, n_users, 3_000).batch_size
            for n_users in (1_294, 2_600, 6_022)] == [64, 128, 256]
    assert resolve_for_data(make_config(with_default_recipe({"batch_size": 64})), 10_001, 10_001,
                            20 * 10_001).batch_size == 64  # a batch size the user gives stays
    with pytest.raises(Exception, match="batch_size must be >= 1"):
        make_config({"model": "mf", "batch_size": 0})  # 0 means "by size" only with --sampler auto
    own = resolve_for_data(make_config(with_default_recipe({"layers": 0})), 10_001, 10_001, 20 * 10_001)
    assert own.layers == 0  # a layer count the user gives stays, 0 included
    weighted = make_config(with_default_recipe({"confidence": 1.0}))
    assert resolve_for_data(weighted, 10_001, 10_001, 20 * 10_001).layers == 0  # pair batches
    assert make_config({"model": "mf"}).layers == 0  # only the recipe chooses
    # validation on a seeded sample of users above 2e9 cells (the 8M-pair synthetic set: 20,000)
    assert (small.val_users, long_history.val_users, amazon_book.val_users) == (0, 0, 0)
    assert resolve_for_data(cfg, 300_000, 100_000).val_users == 20_000
    assert resolve_for_data(cfg, 2_000_000, 1_000_000).val_users == 10_000  # at least 10,000
    assert resolve_for_data(make_config(with_default_recipe({"val_users": 0})),
                            300_000, 100_000).val_users == 0  # the user's 0 stays: all users
    wide = resolve_for_data(cfg, 100, FULL_SOFTMAX_MAX_ITEMS + 1)  # few cells, a step too large
    assert (wide.sampler, wide.batch_by) == ("uniform-softmax", "user")
    # naming a model (or loss, sampler...) starts from the per-option defaults instead
    assert with_default_recipe({"model": "cml"}) == {"model": "cml"}
    with pytest.raises(Exception, match="sampler auto"):
        make_config({"sampler": "auto", "loss": "bpr", "model": "mf"})


@pytest.mark.parametrize("users, items, pairs, sampler, negatives, dim, temperature, layers", [
    # movielens-1m-lcfn: as before the sparse branch
    (6_022, 3_043, 796_244, "full", 1000, 512, 0.15, 0),
    (1_684, 2_579, 50_333, "full", 1000, 512, 0.15, 0),  # lastfm-hetrec2011, fold 0 training share
    # amazon-cds-bgcf: 14 items a user: the softmax estimated from 4,456 draws (n_items / 8)
    (43_169, 35_648, 604_475, "uniform-softmax", 4456, 256, 0.15, 0),
    (70_679, 24_915, 652_514, "uniform-softmax", 3114, 256, 0.15, 0),  # amazon-book-kgat: 9 a user
    # gowalla-lightgcn: 27 items a user, 1.2e9 cells: the full softmax and the graph encoder
    (29_858, 40_981, 810_128, "full", 1000, 192, 0.1, 2),
    # the 8M-pair synthetic set, 3e10 cells: 1e9 / 300k draws, validation on 20,000 users
    (300_000, 100_000, 7_909_185, "uniform-softmax", 3333, 256, 0.15, 0),
])
def test_the_default_recipe_by_the_data_statistics(users, items, pairs, sampler, negatives, dim,
                                                    temperature, layers):
    from negspace.config import resolve_for_data, with_default_recipe
    cfg = resolve_for_data(make_config(with_default_recipe({})), users, items, pairs)
    assert (cfg.sampler, cfg.batch_by, cfg.negatives, cfg.dim, cfg.temperature, cfg.layers) == (
        sampler, "user", negatives, dim, temperature, layers)


def test_runs_recorded_before_measure_was_mf_only_still_load():
    # config.json of older cml runs holds "measure": "dot" (the old default)
    assert make_config({"model": "cml", "measure": "dot"}).measure is None
    with pytest.raises(Exception, match="measure"):
        make_config({"model": "cml", "measure": "cosine"})


def test_the_pipeline_and_the_recommender_validate_on_the_recipes_sample(monkeypatch):
    """Above VALIDATION_MAX_CELLS the default recipe's validation keeps a seeded sample of users
    (config/recipe.py); both entry points apply it after resolving the recipe."""
    import pandas as pd
    from negspace.api import Recommender
    from negspace.config import recipe, with_default_recipe
    from negspace.data.dataset import Dataset
    from negspace.pipeline.fit import run_training
    from negspace.training.trainer import Trainer
    from tests.conftest import random_interactions
    monkeypatch.setattr(recipe, "VALIDATION_MAX_CELLS", 10)
    monkeypatch.setattr(recipe, "VALIDATION_MIN_USERS", 7)
    seen = []
    validate = Trainer.validate

    def spy(self):
        seen.append(int((self.validation.user_degrees() > 0).sum()))
        return validate(self)
    monkeypatch.setattr(Trainer, "validate", spy)
    data = random_interactions(n_users=40, n_items=30, density=0.3, seed=1, dense_user=False)
    values = with_default_recipe({"epochs": 1, "dim": 8, "progress": False, "refit": "no"})
    run_training(make_config(values), dataset=Dataset("toy", data, data), evaluate_test=False)
    users, items = data.pairs()
    Recommender(**values).fit(pd.DataFrame({"user": users, "item": items}))
    assert seen == [7, 7]


def test_min_gain_reaches_the_schedule():
    from negspace.training.options import TrainerOptions
    from negspace.training.schedule import PlateauSchedule
    from negspace.pipeline.build import build_trainer
    from tests.conftest import random_interactions
    cfg = make_config({"model": "mf", "min_gain": 0.01, "dim": 4})
    data = random_interactions(n_users=10, n_items=8, density=0.3, seed=0, dense_user=False)
    options = TrainerOptions.from_config(cfg, "recall@20", progress=False)
    schedule = build_trainer(cfg, 10, 8, data, None, options, torch.device("cpu")).schedule
    assert schedule.min_gain == 0.01
    assert not schedule.improves(0.2019, 0.2) and schedule.improves(0.2021, 0.2)
    assert PlateauSchedule().improves(0.2001, 0.2)  # the default: a relative 1e-4
