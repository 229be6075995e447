"""Faults during training: kill and resume, SIGTERM, NaN stop, refusal to overwrite, grids that
lose no finished cell, and same seed same bytes for every sampler."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from negspace.cli import main
from negspace.errors import NegspaceError
from negspace.pipeline.fit import resume_training, run_training
from negspace.config import schema as config_module
from negspace.training import trainer as trainer_module
from negspace.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from negspace.config import SAMPLER_NAMES, make_config

# Runs `negspace` with every training step slowed down, so that the test can watch the checkpoint
# file and kill the process from outside while it is in the middle of an epoch.
SLOW_CLI = """
import sys, time
from negspace.training import trainer
step = trainer.Trainer.step
def slow(self, users, items):
    time.sleep(0.02)
    return step(self, users, items)
trainer.Trainer.step = slow
from negspace.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    rows = ["user,item"]
    for u in range(60):
        for i in rng.choice(80, size=20, replace=False, p=np.arange(80, 0, -1) / 3240):
            rows.append(f"u{u},i{i}")
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _args(csv_path: Path, sampler: str = "two-stage", epochs: int = 3) -> list[str]:
    return ["--dataset", str(csv_path), "--sampler", sampler, "--negatives", "2",
            "--batch-size", "16", "--dim", "8", "--epochs", str(epochs), "--lr", "0.01",
            "--seed", "3", "--threads", "1", "--no-progress", "--checkpoint-every", "5"]


@pytest.fixture(scope="module")
def reference(toy_csv, tmp_path_factory) -> Path:
    """An uninterrupted run of `_args(toy_csv)`."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", *_args(toy_csv), "--out", str(out)]) == 0
    return out


def _history_without_seconds(run: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    return [{k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")} for row in rows]


def assert_same_run(a: Path, b: Path) -> None:
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert _history_without_seconds(a) == _history_without_seconds(b)
    assert not (a / CHECKPOINT_FILE).exists() and not (b / CHECKPOINT_FILE).exists()


def _position(checkpoint: Path) -> dict | None:
    try:
        return torch.load(checkpoint, weights_only=True)["position"]
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


def _start_slow(csv_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, "train", *_args(csv_path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, epoch: int) -> dict:
    """Polls until a checkpoint taken in the middle of `epoch` exists."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pos = _position(out / CHECKPOINT_FILE)
        if pos is not None and pos["epoch"] == epoch and pos["step"] > 0:
            return pos
        if proc.poll() is not None:
            pytest.fail(f"training ended before a checkpoint of epoch {epoch}: {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("no mid-epoch checkpoint within 120 s")


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(toy_csv, reference, tmp_path):
    out = tmp_path / "run"
    proc = _start_slow(toy_csv, out)
    pos = _wait_for_checkpoint(proc, out, epoch=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close(), proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()  # recognisably unfinished
    assert pos["step"] > 0
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(out, reference)


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(toy_csv, reference, tmp_path):
    out = tmp_path / "run"
    proc = _start_slow(toy_csv, out)
    _wait_for_checkpoint(proc, out, epoch=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"negspace train --resume {out}" in err
    assert not (out / "metrics.json").exists()
    assert main(["train", "--resume", str(out), "--threads", "1"]) == 0
    assert_same_run(out, reference)


class _Crash(Exception):
    pass


def _crash_at(monkeypatch, global_step: int) -> None:
    """Makes the trainer die (an exception, as close to a kill as in-process gets) before the
    given step of the run."""
    step = trainer_module.Trainer.step
    def crashing(self, users, items):
        if self.global_step + 1 == global_step:
            raise _Crash
        return step(self, users, items)
    monkeypatch.setattr(trainer_module.Trainer, "step", crashing)


SAMPLER_CASES = [("uniform", {}), ("popularity", {}), ("two-stage", {"refresh_every": 5}),
                 ("two-stage-released", {}), ("two-stage", {"model": "mf"})]
if "shared" in getattr(config_module, "NEGATIVE_MODES", ()):  # one draw shared by the batch
    SAMPLER_CASES += [("uniform", {"negative_mode": "shared", "model": "mf", "loss": "ccl"}),
                      ("popularity", {"negative_mode": "shared", "model": "mf", "loss": "mml"})]
# Embedding-level negatives (issue 3): the bank's stored vectors and the drift snapshots are resumed.
SAMPLER_CASES += [("in-batch", {"model": "two-tower", "mask_positives": True}),
                  ("uniform-softmax", {"model": "two-tower", "measure": "cosine",
                                       "temperature": 0.2}),
                  ("memory-bank", {"model": "two-tower", "bank_size": 48, "warmup": 4,
                                   "logq_strength": 0.5}),
                  ("memory-bank", {"bank_size": 48, "warmup": 4})]  # CML + triplet, cross-batch


@pytest.mark.parametrize("sampler, extra", SAMPLER_CASES)
def test_resume_equals_uninterrupted_for_each_sampler(toy_csv, tmp_path, monkeypatch, sampler, extra):
    values = dict(dataset=str(toy_csv), sampler=sampler, negatives=2, batch_size=32, dim=8,
                  epochs=3, lr=0.01, seed=5, progress=False, checkpoint_every=3, **extra)
    ref = run_training(make_config(values), tmp_path / "ref")
    in_memory = run_training(make_config(values))  # checkpoints change nothing
    assert torch.equal(in_memory.model.item_vectors(None), ref.model.item_vectors(None))
    with monkeypatch.context() as m:
        _crash_at(m, 38)  # epoch 2 (25 steps an epoch), 2 steps after the checkpoint at step 36
        with pytest.raises(_Crash):
            run_training(make_config(values), tmp_path / "run")
    pos = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["position"]
    assert (pos["epoch"], pos["global_step"]) == (2, 36)
    resume_training(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "ref")


def _model_loss_cases() -> list[tuple[str, str | None]]:
    """Every model with its default loss and every loss on a model that accepts it, as the
    configuration lists them today (new models and losses join these tests by themselves)."""
    cases: list[tuple[str, str | None]] = [(model, None) for model in config_module.MODELS]
    for loss in config_module.LOSSES:
        for model in ("cml", "mf", *config_module.MODELS):
            try:
                make_config(dict(model=model, loss=loss))
            except NegspaceError:
                continue
            cases.append((model, loss))
            break
    return cases


@pytest.mark.parametrize("model, loss", _model_loss_cases())
def test_resume_equals_uninterrupted_for_each_model_and_loss(toy_csv, tmp_path, monkeypatch, model,
                                                             loss):
    values = dict(dataset=str(toy_csv), sampler="uniform", model=model, loss=loss, negatives=2,
                  batch_size=32, dim=8, epochs=2, lr=0.01, seed=5, progress=False,
                  checkpoint_every=4)
    run_training(make_config(values), tmp_path / "ref")
    with monkeypatch.context() as m:
        _crash_at(m, 31)  # epoch 2, 3 steps after the checkpoint at step 28
        with pytest.raises(_Crash):
            run_training(make_config(values), tmp_path / "run")
    resume_training(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "ref")


def test_resume_at_an_epoch_end_and_before_any_checkpoint(toy_csv, tmp_path, monkeypatch):
    values = dict(dataset=str(toy_csv), sampler="uniform", negatives=2, batch_size=32, dim=8,
                  epochs=2, lr=0.01, seed=5, progress=False)
    run_training(make_config(values), tmp_path / "ref")
    for crash, name in ((26, "end"), (3, "none")):  # 25 steps an epoch; no step checkpoints
        with monkeypatch.context() as m:
            _crash_at(m, crash)
            with pytest.raises(_Crash):
                run_training(make_config(values), tmp_path / name)
        assert (tmp_path / name / CHECKPOINT_FILE).exists() == (name == "end")
        resume_training(tmp_path / name)
        assert_same_run(tmp_path / name, tmp_path / "ref")


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(toy_csv, tmp_path, monkeypatch):
    values = dict(dataset=str(toy_csv), sampler="uniform", negatives=2, batch_size=32, dim=8,
                  epochs=2, lr=0.01, seed=5, progress=False, checkpoint_every=10)
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        if obj["position"]["global_step"] == 20:
            f.write(b"half a checkpoint")
            raise _Crash
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(_Crash):
        run_training(make_config(values), tmp_path / "run")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["position"]["global_step"] == 10
    assert not list((tmp_path / "run").glob(".*.tmp"))
    resume_training(tmp_path / "run")
    run_training(make_config(values), tmp_path / "ref")
    assert_same_run(tmp_path / "run", tmp_path / "ref")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(toy_csv, tmp_path,
                                                                          monkeypatch, capsys):
    objective = trainer_module.Trainer.step
    def poisoned(self, users, items):
        if self.global_step + 1 == 33:  # epoch 2, step 8 (25 steps an epoch)
            self.objective = lambda *a: torch.tensor(float("nan"), requires_grad=True)
            assert self.fused is not None  # CML's hand-written step: its loss is checked too
            self.fused = lambda *a: (torch.tensor(float("nan")), lambda: None)
        return objective(self, users, items)
    monkeypatch.setattr(trainer_module.Trainer, "step", poisoned)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(toy_csv), "--sampler", "uniform", "--batch-size", "32",
                 "--dim", "8", "--epochs", "3", "--no-progress", "--checkpoint-every", "5",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "loss became nan at epoch 2, step 8 of 25 (step 33 of the run)" in err
    assert "epoch 2, after step 5" in err and str(out / CHECKPOINT_FILE) in err
    state = load_checkpoint(out / CHECKPOINT_FILE)
    assert state["position"]["global_step"] == 30
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()


def test_nan_parameter_is_caught_before_a_checkpoint(toy_csv, tmp_path, monkeypatch):
    step = trainer_module.Trainer.step
    def corrupting(self, users, items):
        loss = step(self, users, items)
        if self.global_step + 1 == 10:  # after the update of step 10, before its checkpoint
            with torch.no_grad():
                self.model.items.weight[3, 0] = float("inf")
        return loss
    monkeypatch.setattr(trainer_module.Trainer, "step", corrupting)
    cfg = make_config(dict(dataset=str(toy_csv), sampler="uniform", batch_size=32, dim=8,
                           epochs=2, progress=False, checkpoint_every=5))
    with pytest.raises(NegspaceError, match=r"parameter items.weight became non-finite by step 10"):
        run_training(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["position"]["global_step"] == 5


def test_run_dir_is_never_overwritten_silently(toy_csv, tmp_path, capsys):
    base = ["train", "--dataset", str(toy_csv), "--sampler", "uniform", "--batch-size", "64",
            "--dim", "8", "--epochs", "1", "--no-progress"]
    out = tmp_path / "run"
    assert main([*base, "--out", str(out)]) == 0
    finished = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    for args, message in (
            ([*base, "--out", str(out)], "--overwrite"),
            (["train", "--resume", str(out)], "finished run"),
            (["train", "--resume", str(out), "--out", str(out)], "drop --out"),
            (["train", "--resume", str(tmp_path / "nothing")], "no config.json")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == finished

    (out / "metrics.json").unlink()  # now an unfinished run
    assert main([*base, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "--lr is 0.001" in capsys.readouterr().err
    assert main([*base, "--out", str(out), "--overwrite", "--seed", "9"]) == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 9


def test_interrupted_grid_loses_no_finished_cell(toy_csv, tmp_path, monkeypatch):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'out = "{tmp_path / "g"}"\n[base]\ndataset = "{toy_csv}"\nsampler = "uniform"\n'
                    'dim = 8\nepochs = 2\nbatch_size = 32\nthreads = 1\ncheckpoint_every = 4\n'
                    '[grid]\nnegatives = [1, 2]\n')
    with monkeypatch.context() as m:
        step = trainer_module.Trainer.step
        calls = {"n": 0}
        def counting(self, users, items):
            calls["n"] += 1
            if calls["n"] == 60:  # the second cell, epoch 2 (the first cell takes 50 steps)
                raise _Crash
            return step(self, users, items)
        m.setattr(trainer_module.Trainer, "step", counting)
        with pytest.raises(_Crash):
            main(["grid", str(grid)])
    cells = tmp_path / "g" / "cells"
    first = cells / "negatives=1"
    kept = (first / "metrics.json").read_bytes(), (first / "metrics.json").stat().st_mtime_ns
    assert (cells / "negatives=2" / CHECKPOINT_FILE).exists()
    assert main(["grid", str(grid)]) == 0
    assert ((first / "metrics.json").read_bytes(), (first / "metrics.json").stat().st_mtime_ns) == kept
    timing = json.loads((cells / "negatives=2" / "timing.json").read_text())
    assert timing["resumed"] is True
    run_training(make_config(dict(dataset=str(toy_csv), sampler="uniform", dim=8, epochs=2,
                                  batch_size=32, negatives=2, progress=False)), tmp_path / "ref")
    assert_same_run(cells / "negatives=2", tmp_path / "ref")


@pytest.mark.parametrize("sampler", [s for s in SAMPLER_NAMES if s != "auto"] + ["default"])
def test_same_seed_same_bytes(toy_csv, tmp_path, sampler):
    # "default": the default recipe as `negspace train` gives it (sampler auto, sized dim, refit)
    args = (["--dataset", str(toy_csv), "--epochs", "2", "--seed", "3", "--threads", "1",
             "--no-progress"] if sampler == "default" else _args(toy_csv, sampler, epochs=2))
    for name in ("a", "b"):
        assert main(["train", *args, "--out", str(tmp_path / name)]) == 0
    if sampler == "default":
        config = json.loads((tmp_path / "a" / "config.json").read_text())
        assert config["sampler"] == "full" and (tmp_path / "a" / "selection.csv").exists()
    assert_same_run(tmp_path / "a", tmp_path / "b")


def _crash_second_run_at(monkeypatch, global_step: int) -> None:
    """As `_crash_at`, in a --refit run's second run only (the one trained without validation)."""
    step = trainer_module.Trainer.step
    def crashing(self, users, items):
        if self.validation is None and self.global_step + 1 == global_step:
            raise _Crash
        return step(self, users, items)
    monkeypatch.setattr(trainer_module.Trainer, "step", crashing)


@pytest.mark.parametrize("refit, crash", [("yes", _crash_at), ("fold-back", _crash_at),
                                          ("fold-back", _crash_second_run_at)])
def test_a_refit_run_killed_in_either_run_resumes_to_the_same_files(toy_csv, tmp_path, monkeypatch,
                                                                    refit, crash):
    values = dict(dataset=str(toy_csv), model="mf", loss="softmax", sampler="full",
                  batch_by="user", batch_size=8, dim=8, epochs=4, lr=0.05, temperature=0.2,
                  seed=5, progress=False, checkpoint_every=3, refit=refit, fold_back_epochs=2)
    run_training(make_config(values), tmp_path / "ref")
    with monkeypatch.context() as m:
        crash(m, 12)  # epoch 2 of 8 steps, 3 steps after the checkpoint at step 9
        with pytest.raises(_Crash):
            run_training(make_config(values), tmp_path / "run")
    first = crash is _crash_at
    assert (tmp_path / "run" / "selection-checkpoint.pt").exists() == first
    assert (tmp_path / "run" / CHECKPOINT_FILE).exists() != first
    assert not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(NegspaceError, match="resume"):  # never overwritten silently
        run_training(make_config(values), tmp_path / "run")
    resume_training(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "ref")
    assert (tmp_path / "run" / "selection.csv").read_text().count("\n") == \
        (tmp_path / "ref" / "selection.csv").read_text().count("\n")
    assert not (tmp_path / "run" / "selection-checkpoint.pt").exists()
