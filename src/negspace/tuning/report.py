"""The tuner's outputs: the recipe TOML, report.md and its plots (PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from negspace.config.schema import MACHINE_OPTIONS
from negspace.io import write_text
from negspace.plotting import pyplot_or_none

TOP = 10  # trials in the report's table
# left out of a recipe: this machine's options (a device fixed by the space stays) and the
# selection metric, which a refit without validation does not read
_RUN_ONLY = (*(k for k in MACHINE_OPTIONS if k != "device"), "select_metric")


def toml_value(value: Any) -> str:
    """A Python scalar as a TOML value (strings quoted as JSON strings, which TOML accepts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no TOML form for {value}")
        return repr(value)
    return json.dumps(str(value))


def recipe(fixed: dict[str, Any], params: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The refit's options: the fixed ones, the chosen ones, the chosen epoch count, all the
    training data (validation 0), and none of the options that only concern this machine."""
    out = {k: v for k, v in {**fixed, **params}.items()
           if v is not None and k not in _RUN_ONLY}
    out.update(epochs=int(epochs), validation=0.0)
    return out


def write_recipe(path: Path, options: dict[str, Any], header: list[str]) -> None:
    """Writes OPTIONS as a TOML file `negspace train --config` reads, HEADER as comments."""
    lines = [f"# {h}" if h else "#" for h in header]
    lines += [f"{k} = {toml_value(v)}" for k, v in options.items()]
    write_text(path, "\n".join(lines) + "\n")


def trials_table(trials: list[Any], metric: str, names: list[str], top: int = TOP) -> str:
    """Markdown table of the best finished trials (highest validation metric first)."""
    done = sorted((t for t in trials if t.state.name == "COMPLETE"),
                  key=lambda t: (-t.value, t.number))[:top]
    head = ["rank", "trial", f"val {metric}", "best epoch", "epochs run", "train s", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, t in enumerate(done, 1):
        a = t.user_attrs
        cut = " (budget)" if a.get("cut_by_budget") else ""
        cells = [str(rank), str(t.number), f"{t.value:.4f}", str(a.get("best_epoch", "-")),
                 f"{a.get('epochs_run', '-')}{cut}", f"{a.get('train_seconds', 0.0):.0f}"]
        cells += [_fmt(t.params[n]) if n in t.params else "-" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def counts(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def importances(study: Any) -> dict[str, float]:
    """PED-ANOVA importances (Optuna's, no scikit-learn); empty when there are too few finished
    trials or nothing varied."""
    import optuna
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(done) < 3:
        return {}
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def plots(study: Any, out_dir: Path, metric: str) -> list[str]:
    """history.png (value of each trial and best so far), importance.png (when importances
    exist) and curves.png (every trial's validation curve); returns the files written."""
    plt = pyplot_or_none()
    if plt is None:
        return []
    from matplotlib.ticker import MaxNLocator

    written = []
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if done:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        xs = [t.number for t in done]
        ys = [t.value for t in done]
        best = [max(ys[:i + 1]) for i in range(len(ys))]
        ax.scatter(xs, ys, s=14, label="finished trial")
        ax.step(xs, best, where="post", color="C3", label="best so far")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, out_dir / "history.png", plt)
        written.append("history.png")
    imp = importances(study)
    if imp:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(imp) + 1.2))
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names])
        ax.set_xlabel("importance (PED-ANOVA)")
        ax.grid(alpha=0.3, axis="x")
        _save(fig, out_dir / "importance.png", plt)
        written.append("importance.png")
    curves = _curves(out_dir / "trials", metric)
    if curves:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        best_number = study.best_trial.number if done else None
        for number, state, xs, ys in curves:
            if number == best_number:
                continue
            ax.plot(xs, ys, color="0.6" if state == "PRUNED" else "C0", lw=0.8, alpha=0.7,
                    marker="o", ms=2)  # a trial pruned after one epoch is one point
        for number, state, xs, ys in curves:
            if number == best_number:
                ax.plot(xs, ys, color="C3", lw=2, label=f"best (trial {number})")
                ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"validation {metric}")
        ax.set_title("every trial (grey: pruned)", fontsize=9)
        ax.grid(alpha=0.3)
        _save(fig, out_dir / "curves.png", plt)
        written.append("curves.png")
    return written


def _curves(folder: Path, metric: str) -> list[tuple[int, str, list[int], list[float]]]:
    key, out = f"val_{metric}", []
    for path in sorted(folder.glob("trial-*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows = [r for r in rec.get("history", []) if key in r]
        if rows:
            out.append((rec["number"], rec.get("state", ""), [r["epoch"] for r in rows],
                        [r[key] for r in rows]))
    return out


def _save(fig: Any, path: Path, plt: Any) -> None:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_report(out_dir: Path, study: Any, metric: str, names: list[str], header: list[str],
                 refit: dict[str, float] | None) -> Path:
    """OUT/report.md: counts, the best trials, importances, the refit's test metrics, plots."""
    trials = study.trials
    lines = ["# Tuning report", "", *header, "",
             "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts(trials).items())), "",
             f"## Best trials (validation {metric})", "", trials_table(trials, metric, names)]
    imp = importances(study)
    if imp:
        lines += ["## Parameter importance (PED-ANOVA)", "",
                  "| parameter | importance |", "|---|---|",
                  *[f"| {k} | {v:.3f} |" for k, v in imp.items()], ""]
    if refit is not None:
        keys = [k for k in ("recall@20", "ndcg@20", "map@50", "ndcg@50", "recall@50")
                if k in refit]
        lines += ["## Refit (all training data, chosen epochs; the test split read once)", "",
                  "| " + " | ".join(keys) + " | train s |", "|" + "---|" * (len(keys) + 1),
                  "| " + " | ".join(f"{refit[k]:.4f}" for k in keys)
                  + f" | {refit.get('train_seconds', float('nan')):.1f} |", ""]
    for png in plots(study, out_dir, metric):
        lines += [f"![{png}]({png})", ""]
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path


__all__ = ["toml_value", "recipe", "write_recipe", "trials_table", "counts", "importances",
           "plots", "write_report"]
