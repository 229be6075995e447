"""negspace train | evaluate | recommend | export | grid | tune | data | serve."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from negspace.cli.serve import add_serve_parser, serve_command
from negspace.errors import NegspaceError, TrainingInterrupted, command_line_terms, did_you_mean


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as one line and exit code 2, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = message.split("unrecognized arguments: ", 1)[1].split() if \
            message.startswith("unrecognized arguments: ") else []
        if unknown and unknown[0].startswith("--"):
            message += did_you_mean(unknown[0].split("=")[0], self._flags(), flags=True)
        raise NegspaceError(f"{self.prog}: {message}")

    def _flags(self) -> set[str]:
        """Every --flag of this parser and its subcommands, as option names (dashes: _)."""
        names: set[str] = set()
        for action in self._actions:
            names |= {s[2:].replace("-", "_") for s in action.option_strings if s.startswith("--")}
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    names |= sub._flags() if isinstance(sub, _Parser) else set()
        return names


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from negspace.config import config_fields

    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        if f.type == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=meta["help"])
            continue
        typ = {"int": int, "float": float}.get(f.type.replace(" | None", ""), str)
        p.add_argument(flag, dest=f.name, type=typ, default=None, help=meta["help"],
                       metavar=f.name.upper())


# negspace data synth (data/synth.py, SynthSpec holds the defaults)
_SYNTH_FLAGS = (("--users", int, "users (default 10000)"), ("--items", int, "items (default 5000)"),
                ("--topics", int, "topics (default 50)"),
                ("--pairs-per-user", float, "mean distinct items per user, train and test "
                 "(default 30)"),
                ("--exponent", float, "in-topic popularity ~ rank^-EXPONENT (default 1)"),
                ("--concentration", float, "Dirichlet concentration of the users' topic "
                 "mixtures; small: few topics each (default 0.1)"),
                ("--dispersion", float, "negative binomial shape of items per user; small: "
                 "heavier tail (default 1)"),
                ("--test-fraction", float, "share of each user's items in test.txt (default 0.2)"),
                ("--seed", int, "seed (default 0)"))
_DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N"


def build_parser() -> argparse.ArgumentParser:
    from negspace.config import COMBINATIONS_HELP

    parser = _Parser(prog="negspace", description="Embedding recommenders trained with better negatives.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one model and write a run directory",
                           epilog=COMBINATIONS_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", help="TOML file of options (flags override it)")
    train.add_argument("--out", help="run directory to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run from its checkpoint, with its options")
    _add_train_options(train)

    ev = sub.add_parser("evaluate", help="recompute a run's test metrics")
    ev.add_argument("run_dir")
    ev.add_argument("--data-dir", help="folder holding named datasets")
    ev.add_argument("--device", default="auto", help=_DEVICE_HELP)

    rec = sub.add_parser("recommend", help="top items for a user of a run")
    rec.add_argument("run_dir")
    rec.add_argument("--user", help="external user id")
    rec.add_argument("--features", metavar="FILE",
                     help="two-tower runs: a new user as JSON {\"features\": {column: value}, "
                          "\"items\": [item ids]}, scored without retraining")
    rec.add_argument("-k", type=int, default=10, help="number of items")
    rec.add_argument("--device", default="auto", help=_DEVICE_HELP)
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.add_argument("--faiss", action="store_true",
                     help="rank with RUN_DIR/items.faiss (see export); seen items still filtered")

    exp = sub.add_parser("export", help="write a retrieval index of a run's item vectors")
    exp.add_argument("run_dir")
    exp.add_argument("--device", default="auto",
                     help="checked like train's --device; the faiss index itself is built on the CPU")
    exp.add_argument("--faiss", action="store_true", required=True,
                     help="write RUN_DIR/items.faiss (needs the faiss extra)")
    exp.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat",
                     help="flat (exact, default), ivf or hnsw (approximate, large catalogues)")

    grid = sub.add_parser("grid", help="run a grid of configurations from a TOML file")
    grid.add_argument("config")
    grid.add_argument("--out", help="output folder (overrides the file's)")
    grid.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    grid.add_argument("--device", default=None,
                      help="every cell's device (overrides the file's): " + _DEVICE_HELP)

    tune = sub.add_parser("tune", help="search a space of options on validation (Optuna), then "
                          "write the recipe and refit it")
    tune.add_argument("space", help="space TOML: [fixed] options, [search] ranges, [[seeds]] "
                      "(configs/spaces/*.toml; format in docs/guide.md)")
    tune.add_argument("--budget", required=True, help="search time, e.g. 90s, 30m, 2h, 1h30m "
                      "(the refit comes after it)")
    tune.add_argument("--trials", type=int, help="stop once the study holds this many trials")
    tune.add_argument("--workers", type=int, default=1,
                      help="trial processes sharing the study, one torch thread each")
    tune.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db); "
                      "rerun the same command to continue a study")
    tune.add_argument("--out", help="output folder (default runs/tune/SPACE-DATASET)")
    tune.add_argument("--dataset", help="dataset name or path (joins the space's [fixed])")
    tune.add_argument("--data-dir", help="folder holding named datasets")
    tune.add_argument("--no-refit", dest="refit", action="store_false",
                      help="write the recipe without training it on all data (no test read)")

    data = sub.add_parser("data", help="list, inspect or fetch datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dl = dsub.add_parser("list", help="known datasets and where they were found")
    dl.add_argument("--data-dir")
    df = dsub.add_parser("fetch", help="download a dataset from its official source")
    df.add_argument("name")
    df.add_argument("--data-dir")
    di = dsub.add_parser("info", help="size of a dataset after loading")
    di.add_argument("name")
    di.add_argument("--data-dir")
    syn = dsub.add_parser("synth", help="write a planted synthetic train/test split (topic "
                          "mixtures, power-law popularity inside topics; seeded)")
    syn.add_argument("--out", required=True,
                     help="folder to write: train.txt, test.txt, synth.json")
    syn.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    for flag, typ, text in _SYNTH_FLAGS:
        syn.add_argument(flag, type=typ, help=text)
    add_serve_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from negspace.pipeline.fit import run_training
    from negspace.config import config_fields, load_toml, make_config, with_default_recipe

    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    for f in config_fields():
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise NegspaceError("--resume writes into the run it continues; drop --out and --overwrite")
        from negspace.pipeline.fit import resume_training
        out, where = resume_training(args.resume, values), args.resume
    elif args.out is None:
        raise NegspaceError("train: --out RUN_DIR (or --resume RUN_DIR) is required")
    else:
        out, where = run_training(make_config(with_default_recipe(values)), args.out,
                                  overwrite=args.overwrite), args.out
    _print_metrics(out.metrics)
    _print_data_notes(out.metrics)
    print(f"run written to {where} ({out.seconds:.1f}s)")
    return 0


def _print_data_notes(metrics: dict[str, float]) -> None:
    """Says what the evaluation skipped or could not learn, instead of dropping it silently."""
    skipped = int(metrics.get("n_users_without_test", 0))
    unseen = int(metrics.get("n_test_items_not_in_train", 0))
    if skipped:
        print(f"note: {skipped} users without test items were left out of the evaluation")
    if unseen:
        print(f"note: {unseen} test items ({int(metrics['n_test_interactions_not_in_train'])} "
              "test interactions) never occur in training; they are ranked with untrained vectors")


def _print_metrics(metrics: dict[str, float]) -> None:
    keys = [k for k in ("map@50", "ndcg@50", "mmr@50", "recall@20", "ndcg@20", "hit@20",
                        "recall@50", "hit@50") if k in metrics]
    print("  ".join(f"{k} {metrics[k]:.4f}" for k in keys))


def _evaluate(args: argparse.Namespace) -> int:
    from negspace.pipeline.evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    _print_metrics(metrics)
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from negspace.api import Recommender

    if args.k < 1:
        raise NegspaceError(f"-k must be >= 1; got {args.k}")
    if (args.user is None) == (args.features is None):
        raise NegspaceError("give either --user or --features")
    if args.features is not None:
        from negspace.api.cold import recommend_cold
        from negspace.pipeline.towers import read_cold_user
        features, known = read_cold_user(args.features)
        items, scores = recommend_cold(args.run_dir, features, known, args.k, device=args.device)
    else:  # the same query code as Recommender and `negspace serve`
        if args.faiss:
            from negspace.retrieval.ann import require_faiss
            require_faiss()  # says what to install, rather than that no index was loaded
        recs = Recommender.load(args.run_dir, index=args.faiss, device=args.device).recommend(
            args.user, args.k, use_index=args.faiss)
        items, scores = recs.item.tolist(), [float(s) for s in recs.score]
    if args.json:
        print(json.dumps({"user": args.user, "items": items, "scores": scores}))
    else:
        width = max([len(str(i)) for i in items] + [4])
        who = f"user {args.user}" if args.user is not None else "the new user"
        print(f"top {len(items)} for {who} (training items left out)")
        print(f"{'rank':>4}  {'item':<{width}}  score")
        for rank, (item, score) in enumerate(zip(items, scores), 1):
            print(f"{rank:>4}  {str(item):<{width}}  {score:.4f}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from negspace.api import Recommender
    from negspace.retrieval.ann import INDEX_FILE, write_index

    from negspace.training.device import resolve_device
    resolve_device(args.device)  # --device cuda without a GPU: the same one-line error
    rec = Recommender.load(args.run_dir, index=False).build_index(args.index)
    write_index(rec.index, f"{args.run_dir}/{INDEX_FILE}")
    print(f"{args.index} index of {rec.index.ntotal} items ({rec.measure}) written to "
          f"{args.run_dir}/{INDEX_FILE}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from negspace.tuning.grid import run_grid

    run_grid(args.config, out=args.out, dry_run=args.dry_run, device=args.device)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from negspace.tuning import run_tune

    result = run_tune(args.space, args.budget, trials=args.trials, workers=args.workers,
                      storage=args.storage, out=args.out,
                      overrides={"dataset": args.dataset, "data_dir": args.data_dir},
                      refit=args.refit, command=_tune_command(args))
    if result.refit_metrics is not None:
        print("refit test:", end=" ")
        _print_metrics(result.refit_metrics)
    return 0


def _tune_command(args: argparse.Namespace) -> str:
    """The command as given (for the recipe's header), rebuilt from the parsed arguments."""
    parts = ["negspace tune", args.space, "--budget", args.budget]
    for flag in ("trials", "workers", "storage", "out", "dataset", "data_dir"):
        value = getattr(args, flag)
        if value is not None and not (flag == "workers" and value == 1):
            parts += ["--" + flag.replace("_", "-"), str(value)]
    return " ".join(parts + ([] if args.refit else ["--no-refit"]))


def _data(args: argparse.Namespace) -> int:
    from negspace.data import fetch_dataset, load_dataset
    from negspace.data.loaders import list_datasets

    if args.data_command == "list":
        for row in list_datasets(args.data_dir):
            print(f"{row['name']:<32} {row['protocol']:<6} {row['where']}")
    elif args.data_command == "fetch":
        from negspace.data.fetch import find_present
        present = find_present(args.name, args.data_dir)
        if present is not None:
            print(f"{args.name} is already present in {present}; nothing downloaded")
        else:
            print(f"{args.name} stored in {fetch_dataset(args.name, args.data_dir)}")
    elif args.data_command == "synth":
        from negspace.data.synth import SynthSpec, generate
        given = {k: v for k, v in vars(args).items()
                 if k in SynthSpec.__dataclass_fields__ and v is not None}
        info = generate(SynthSpec(**given), args.out, overwrite=args.overwrite)
        print(f"{args.out}: {info['users']} users, {info['items_used']} items, "
              f"{info['train_pairs']} train and {info['test_pairs']} test pairs")
    else:
        ds = load_dataset(args.name, args.data_dir)
        inter = ds.interactions
        print(f"{ds.name}: protocol {ds.protocol}, {inter.n_users} users, {inter.n_items} items, "
              f"{inter.nnz} interactions" + (f", {ds.test.nnz} test" if ds.test is not None else ""))
        for key, value in ds.notes.items():
            print(f"  {key}: {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status (2: bad input, said in one line on stderr)."""
    with command_line_terms():  # errors name options as flags here (--dim), not as dim=
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"train": _train, "evaluate": _evaluate, "recommend": _recommend,
                   "export": _export, "grid": _grid, "tune": _tune, "data": _data,
                   "serve": serve_command}[args.command]
        status = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below, not at exit
        return status
    except BrokenPipeError:
        return _closed_pipe()
    except TrainingInterrupted as e:
        print(f"negspace: {e}", file=sys.stderr)
        return 128 + e.signum
    except NegspaceError as e:
        print(f"negspace: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("negspace: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"negspace: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _closed_pipe() -> int:
    """The reader of stdout went away (`negspace recommend ... | head -2`): stop quietly, as Unix
    tools do, with the status a SIGPIPE death gives (128 + 13)."""
    try:  # the interpreter flushes stdout once more at exit: let that write go nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return 141


def _one_line(e: BaseException) -> str:
    """The message with every run of whitespace (newlines included) made one space."""
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
