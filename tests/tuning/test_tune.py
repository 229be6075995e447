"""negspace tune on a tiny synthetic dataset: the study, the recipe, the refit, resume, errors."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("optuna")

import optuna  # noqa: E402

from negspace.cli import main  # noqa: E402
from negspace.errors import NegspaceError  # noqa: E402
from negspace.config import load_toml, make_config  # noqa: E402
from negspace.tuning import load_space, run_tune  # noqa: E402
from negspace.tuning.study import kept_epochs, parse_budget  # noqa: E402

from ..conftest import random_interactions  # noqa: E402

SPACE = """
[study]
startup_trials = 2
prune_after_trials = 1
warmup_epochs = 1

[fixed]
model = "mf"
dim = 8
batch_size = 128
epochs = 4
min_epochs = 1

[search]
lr = { log = [1e-3, 0.1] }
negatives = [1, 3]
loss = ["bpr", "triplet"]
margin = { uniform = [0.5, 1.5], when = { loss = "triplet" } }

[[seeds]]
lr = 0.05
negatives = 3
loss = "bpr"

[[seeds]]
lr = 0.001
loss = "triplet"
"""


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    inter = random_interactions(n_users=50, n_items=70, density=0.15, seed=3, dense_user=False)
    users, items = inter.pairs()
    path = tmp_path / "toy.csv"
    path.write_text("user,item\n" + "\n".join(f"{u},{i}" for u, i in zip(users, items)) + "\n")
    return path


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


def _tune(space: Path, toy: Path, out: Path, trials: int, **kw):
    return run_tune(space, "2m", trials=trials, out=out, overrides={"dataset": str(toy)}, **kw)


def _evaluations(monkeypatch) -> list[tuple[str, set]]:
    """(module, held-out pairs as external ids) of every evaluate call, wherever it is made:
    the run's test evaluation and the trainer's validations import evaluate each."""
    import negspace.pipeline.fit as run
    import negspace.training.trainer as trainer
    calls: list[tuple[str, set]] = []
    for module in (run, trainer):
        def counted(score_fn, train, truth, *a, _name=module.__name__, _real=module.evaluate, **k):
            users, items = truth.pairs()
            calls.append((_name, set(zip(truth.user_ids[users].tolist(),
                                         truth.item_ids[items].tolist()))))
            return _real(score_fn, train, truth, *a, **k)
        monkeypatch.setattr(module, "evaluate", counted)
    return calls


def test_study_recipe_refit_and_report(space, toy, tmp_path, monkeypatch):
    calls = _evaluations(monkeypatch)
    out = tmp_path / "out"
    result = _tune(space, toy, out, trials=5)
    test_reads = [pairs for name, pairs in calls if name.endswith(".fit")]
    assert len(test_reads) == 1  # only the refit reads the test split
    validations = [pairs for name, pairs in calls if name.endswith(".trainer")]
    assert validations and not any(v & test_reads[0] for v in validations)
    study = optuna.load_study(study_name=f"space-{toy.name}", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 5
    # the seeds come first, as written (unset keys sampled)
    assert study.trials[0].params == {"lr": 0.05, "negatives": 3, "loss": "bpr"}
    assert study.trials[1].params["lr"] == 0.001 and study.trials[1].params["loss"] == "triplet"
    assert "margin" in study.trials[1].params  # `when` holds: sampled
    assert all("margin" not in t.params for t in study.trials if t.params.get("loss") == "bpr")
    # every trial's curve is kept
    for t in study.trials:
        rec = json.loads((out / "trials" / f"trial-{t.number:04d}.json").read_text())
        assert rec["state"] == t.state.name and rec["params"] == t.params
        assert len(rec["history"]) >= 1 and "val_ndcg@50" in rec["history"][0]
    best = study.best_trial
    assert result.best_value == best.value
    assert result.best_value == max(r["val_ndcg@50"] for r in json.loads(
        (out / "trials" / f"trial-{best.number:04d}.json").read_text())["history"])
    # the recipe is a `negspace train --config` file: the choice, its epochs, no validation
    options = load_toml(result.recipe_path)
    cfg = make_config(options)
    assert cfg.epochs == result.best_epoch == best.user_attrs["refit_epochs"]
    assert cfg.validation == 0.0 and cfg.lr == best.params["lr"] and cfg.dim == 8
    assert result.recipe_path.read_text().startswith("# Found by: negspace tune")
    refit = json.loads((out / "refit" / "metrics.json").read_text())
    assert refit["ndcg@50"] == result.refit_metrics["ndcg@50"]
    assert json.loads((out / "refit" / "config.json").read_text())["validation"] == 0.0
    report = (out / "report.md").read_text()
    assert "| rank | trial | val ndcg@50 |" in report and "## Refit" in report
    for png in ("history.png", "curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_the_study_and_reuses_the_refit(space, toy, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _tune(space, toy, out, trials=3)
    storage = f"sqlite:///{out / 'study.db'}"
    first = [(t.number, t.params, t.value) for t in
             optuna.load_study(study_name=f"space-{toy.name}", storage=storage).trials]
    result = _tune(space, toy, out, trials=5)
    study = optuna.load_study(study_name=f"space-{toy.name}", storage=storage)
    assert [(t.number, t.params, t.value) for t in study.trials[:3]] == first
    assert len(study.trials) == 5  # the seeds were not enqueued again
    # the continued session's sampler is seeded anew: its first random draw is not trial 2's
    assert study.trials[3].params != study.trials[2].params
    assert result.counts.get("complete", 0) + result.counts.get("pruned", 0) == 5
    # nothing left to run: the same choice, and the finished refit is reused, not retrained
    import negspace.pipeline.fit as run
    monkeypatch.setattr(run, "run_training", lambda *a, **k: pytest.fail("refit retrained"))
    again = _tune(space, toy, out, trials=5)
    assert again.refit_metrics["ndcg@50"] == result.refit_metrics["ndcg@50"]


def test_a_continued_study_draws_anew(toy, tmp_path):
    """Random draws only (no seeds, startup_trials above the trial count): a second session
    seeded as the first would replay its draws, and its first trial repeat trial 0."""
    path = tmp_path / "r.toml"
    path.write_text(SPACE.split("[[seeds]]")[0].replace("startup_trials = 2", "startup_trials = 9"))
    out = tmp_path / "out"
    _tune(path, toy, out, trials=1, refit=False)
    _tune(path, toy, out, trials=2, refit=False)
    study = optuna.load_study(study_name=f"r-{toy.name}", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 2 and study.trials[1].params != study.trials[0].params


def test_same_seed_same_trials(space, toy, tmp_path):
    a = _tune(space, toy, tmp_path / "a", trials=4, refit=False)
    b = _tune(space, toy, tmp_path / "b", trials=4, refit=False)
    assert (a.best_params, a.best_value, a.best_epoch) == (b.best_params, b.best_value, b.best_epoch)
    assert a.refit_metrics is None and not (tmp_path / "a" / "refit").exists()


def test_a_trial_that_meets_the_budget_keeps_its_best_epoch(space, toy, tmp_path):
    from negspace.tuning.study import Objective, TrialJob
    text = SPACE.replace("epochs = 4", "epochs = 1000\npatience = 1000")
    path = tmp_path / "long.toml"
    path.write_text(text)
    job = TrialJob(space=load_space(path, {"dataset": str(toy)}), storage="", study_name="",
                   metric="ndcg@50", deadline=0.0, max_trials=None, out_dir=str(tmp_path),
                   threads=None)  # the budget ended before the trial began
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(job), n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["cut_by_budget"]
    assert trial.user_attrs["epochs_run"] == 1 and trial.user_attrs["best_epoch"] == 1
    rec = json.loads((tmp_path / "trials" / "trial-0000.json").read_text())
    assert rec["cut_by_budget"] and rec["value"] == trial.value


def test_pruned_trials_keep_their_curves(toy, tmp_path):
    text = SPACE.replace("warmup_epochs = 1", "warmup_epochs = 0").replace(
        "lr = 0.001\n", "lr = 0.001\nnegatives = 1\n")
    path = tmp_path / "s.toml"
    path.write_text(text.replace('lr = { log = [1e-3, 0.1] }', 'lr = { log = [1e-6, 0.1] }')
                    + "\n[[seeds]]\nlr = 1e-6\nloss = \"bpr\"\nnegatives = 1\n")
    _tune(path, toy, tmp_path / "out", trials=4, refit=False)
    study = optuna.load_study(study_name=f"s-{toy.name}",
                              storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [(t.params, t.state.name, t.intermediate_values) for t in study.trials]
    rec = json.loads((tmp_path / "out" / "trials" / f"trial-{pruned[0].number:04d}.json").read_text())
    assert rec["state"] == "PRUNED" and rec["history"]


def test_two_workers_share_the_study(space, toy, tmp_path, capfd):
    result = _tune(space, toy, tmp_path / "out", trials=4, workers=2, refit=False)
    study = optuna.load_study(study_name=f"space-{toy.name}",
                              storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert 4 <= len(study.trials) <= 5  # each worker checks the count after its trial
    assert all(t.state.is_finished() for t in study.trials)
    assert result.best_value == study.best_value
    # every trial ran exactly once (a queued seed claimed by both workers ran twice), by either
    import re
    from collections import Counter
    logged = Counter(re.findall(r"^\[trial (\d+)\]", capfd.readouterr().out, flags=re.M))
    assert logged == Counter(str(t.number) for t in study.trials)
    assert {t.user_attrs["worker"] for t in study.trials} == {0, 1}


def test_kept_epochs():
    rows = [{"epoch": e, "lr": lr, "val": v} for e, lr, v in
            [(1, 1.0, 0.1), (2, 1.0, 0.3), (3, 1.0, 0.2), (4, 0.1, 0.4), (5, 0.1, 0.35)]]
    assert [r["epoch"] for r in kept_epochs(rows, "val", 4, plateau=True)] == [1, 2, 4]
    assert [r["epoch"] for r in kept_epochs(rows, "val", 4, plateau=False)] == [1, 2, 3, 4]


@pytest.mark.parametrize("text", ["90s", "30m", "2h", "1h30m", "0.5m"])
def test_budget(text):
    assert parse_budget(text) == {"90s": 90, "30m": 1800, "2h": 7200, "1h30m": 5400, "0.5m": 30}[text]


@pytest.mark.parametrize("text", ["", "30", "m", "-5m", "0s", "3d"])
def test_bad_budget(text):
    with pytest.raises(NegspaceError, match="budget"):
        parse_budget(text)


BAD_SPACES = [
    ("[search]\nlr = { log = [0, 1] }\n", "low > 0"),
    ("[search]\nlr = { log = [1, 0.1] }\n", "low must be < high"),
    ("[search]\nlr = { logg = [1e-3, 1] }\n", "exactly one of"),
    ("[search]\nbogus = [1, 2]\n", "unknown option 'bogus'"),
    ("[fixed]\nmodel = \"mf\"\n", "names no option"),
    ("[fixed]\nlr = 0.1\n[search]\nlr = [0.1, 0.2]\n", "both fixed and searched"),
    ("[search]\ndim = []\n", "empty list"),
    ("[search]\ndim = [8, 16]\n[[seeds]]\ndim = 32\n", "outside its range"),
    ("[search]\ndim = [8, 16]\n[[seeds]]\nlr = 0.1\n", "does not search"),
    ("[search]\nmargin = { uniform = [0, 1], when = { loss = \"triplet\" } }\n", "neither fixed nor"),
    ("[study]\nmetric = \"auc\"\n[search]\ndim = [8]\n", "metric must be one of"),
    ("[study]\npruner = \"sha\"\n[search]\ndim = [8]\n", "pruner must be one of"),
    ("[searches]\ndim = [8]\n", "unknown section"),
    ("[search\n", "invalid TOML"),
    ("[search]\nnegatives = { int = [1, 9.5] }\n", "integer bounds"),
]


@pytest.mark.parametrize("text,message", BAD_SPACES)
def test_bad_space_is_one_line_and_exit_2(text, message, tmp_path, toy, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(NegspaceError, match=message.replace("(", r"\(")):
        load_space(path)
    code = main(["tune", str(path), "--dataset", str(toy), "--budget", "1m",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("negspace: error:")


def test_cli_errors_without_traceback(tmp_path, space, toy):
    for args, message in [(["--budget", "soon"], "--budget"), (["--budget", "1m", "--workers", "0"], "--workers"),
                          (["--budget", "1m", "--storage", "nosuch://x"], "--storage")]:
        proc = subprocess.run([sys.executable, "-m", "negspace.cli", "tune", str(space), "--dataset",
                               str(toy), "--out", str(tmp_path / "o"), *args],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_another_space_is_refused_on_resume(space, toy, tmp_path):
    _tune(space, toy, tmp_path / "out", trials=2, refit=False)
    space.write_text(SPACE.replace("dim = 8", "dim = 16"))
    with pytest.raises(NegspaceError, match="another space"):
        _tune(space, toy, tmp_path / "out", trials=3, refit=False)


SPACES = sorted((Path(__file__).resolve().parents[2] / "configs" / "spaces").glob("*.toml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_spaces_parse(path):
    space = load_space(path, {"dataset": "x"})
    assert path.stem.split("-")[0] == space.fixed["model"].split("-")[0] and space.params
    with open(path, "rb") as f:
        assert "dataset" not in tomllib.load(f).get("fixed", {})  # spaces are per model


def test_every_space_is_tested():
    assert {"cml", "mf", "mf-full-softmax", "mf-full-softmax-large", "simplex",
            "two-tower"} <= {p.stem for p in SPACES}


def test_the_guides_space_example_parses(tmp_path):
    import re
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide.md").read_text()
    section = guide[guide.index("### Tuning: `negspace tune`"):]
    (block,) = re.findall(r"```toml\n(.*?)```", section[:section.index("\n### ", 5)], flags=re.S)
    path = tmp_path / "guide.toml"
    path.write_text(block)
    space = load_space(path, {"dataset": "x"})
    assert [p.name for p in space.params][:2] == ["lr", "margin"] and len(space.seeds) == 1


def test_a_refused_combination_fails_its_trial_and_the_study_goes_on(toy, tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(SPACE.replace('loss = ["bpr", "triplet"]',
                                  'loss = ["bpr", "triplet"]\nsampler = ["uniform", "in-batch"]')
                    + '\n[[seeds]]\nloss = "bpr"\nsampler = "in-batch"\n')
    result = _tune(path, toy, tmp_path / "out", trials=4, refit=False)
    study = optuna.load_study(study_name=f"f-{toy.name}",
                              storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and "in-batch needs" in failed[0].user_attrs["error"]
    rec = json.loads((tmp_path / "out" / "trials" / f"trial-{failed[0].number:04d}.json").read_text())
    assert rec["state"] == "FAIL" and "in-batch" in rec["error"]
    assert len(study.trials) == 4 and result.counts["fail"] == len(failed)
