"""The Python API: fit, recommend, fold in new users, find similar items, save and load.

A `Recommender` mirrors `negspace train` / `recommend` / `export`: the same options (TrainConfig
fields), the same training loop and the same run-directory format, so a run written by the CLI
loads here and a saved Recommender is served by the CLI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from negspace.data.confidence import confidence
from negspace.data.frames import interactions_from
from negspace.data.interactions import Interactions
from negspace.data.splits import holdout_split, sample_users
from negspace.errors import NegspaceError, did_you_mean
from negspace.evaluation.evaluator import evaluate
from negspace.data.features import encode_side_features
from negspace.pipeline.build import ModelFactory, build_trainer
from negspace.pipeline.filtering import resolve_item_filter
from negspace.pipeline.rundir import load_run, prepare_run_dir, write_run
from negspace.pipeline.towers import (FEATURES_FILE, TOWERS_FILE, TowerFeatures, load_towers,
                                      save_towers)
from negspace.models.base import EmbeddingModel
from negspace.models.two_tower import TwoTower
from negspace.api.queries import RecommenderQueries
from negspace.retrieval import ann
from negspace.retrieval.item_filter import blended_scorer
from negspace.samplers.base import NegativeSampler
from negspace.config import (TrainConfig, config_fields, make_config, resolve_for_data,
                                     with_default_recipe)
from negspace.training.device import configure, resolve_device, resolve_precision
from negspace.training.options import TrainerOptions, selection_metric



class Recommender(RecommenderQueries):
    """An embedding recommender: options, a fitted model's vectors and its training interactions.

    Training, evaluation, save and load are here; the rankings (recommend, recommend_new,
    similar_items, rank_vectors, build_index) come from `recommender_query.RecommenderQueries`.

    Args:
        model: None (with no sampler, objective, loss or batch unit either: the default recipe
            of `negspace train`, config/recipe.py DEFAULT_RECIPE), "cml", "mf" or another
            name `negspace train --model` knows, or a factory
            `(n_users, n_items) -> EmbeddingModel` (the default loss is then the one of the
            built model's class, when it is one of the library's).
        sampler: a sampler name or a `NegativeSampler` instance.
        objective: a callable `(model, users, items, negatives) -> scalar loss`; default: the
            configured loss (`loss=...`) with the configured regularisers.
        **options: any `negspace train` option by its field name (dim, epochs, lr, negatives,
            batch_size, validation, seed, threads, progress, ...).

    >>> import pandas as pd
    >>> from negspace import Recommender
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 3], "item": list("abbcacd")})
    >>> rec = Recommender("mf", sampler="uniform", dim=4, epochs=2, validation=0,
    ...                   progress=False, threads=1).fit(df)
    >>> recs = rec.recommend([1, 2], k=2)
    >>> list(recs.columns)
    ['user', 'rank', 'item', 'score']
    >>> bool(recs.groupby("user").size().eq(2).all())
    True
    >>> any(recs[recs.user == 1].item.isin(["a", "b"]))   # seen items are filtered
    False
    """

    def __init__(self, model: str | ModelFactory | None = None,
                 sampler: str | NegativeSampler | None = None,
                 objective: Callable[..., torch.Tensor] | None = None, **options: Any) -> None:
        values = dict(options)
        if isinstance(model, str):
            values["model"] = model
        if isinstance(sampler, str):
            values["sampler"] = sampler
        if model is None and sampler is None and objective is None:
            values = with_default_recipe(values)
        elif not isinstance(model, str) and model is not None:
            values.setdefault("model", "cml")  # a factory: its kind is read after building it
        self.config: TrainConfig = make_config(values)
        self._model_factory = None if isinstance(model, str) else model
        self._sampler = None if isinstance(sampler, str) else sampler
        self._objective = objective
        self.model: EmbeddingModel | None = None
        self.user_vectors: torch.Tensor | None = None
        self.item_vectors: torch.Tensor | None = None
        self.measure = "dot"
        self.train: Interactions | None = None
        self.history: list[dict] = []
        self.metrics: dict[str, float] = {}
        self.index: Any = None
        self._items_on_device: torch.Tensor | None = None  # item vectors on a GPU, for ranking
        self._features: TowerFeatures | None = None  # a fitted two-tower model's encoders
        self._user_encoder: list | None = None  # a loaded two-tower run's user encoder (JSON)
        self._source: dict[str, Any] = {"dataset": None, "data": "data held in memory"}

    # -- training -------------------------------------------------------------------------------

    def fit(self, data: Any, user_features: pd.DataFrame | None = None,
            item_features: pd.DataFrame | None = None, **columns: Any) -> "Recommender":
        """Trains on interactions; keeps the id maps and the interactions for serving.

        Args:
            data: a DataFrame, a scipy sparse matrix, a file or dataset name, or Interactions
                (see `negspace.interactions_from`).
            user_features, item_features: two-tower model only: side features, one row per
                external id (the DataFrame's index); numeric columns are standardised,
                categorical ones one-hot encoded (`negspace.data.features`). Ignored with
                `side_features=False`.
            **columns: passed to `interactions_from` (user=, item=, weight=, min_weight=). A
                weight column (and a matrix's values) is the interaction strength: with the
                `confidence` option c > 0 each epoch draws pairs in proportion to 1 + c x weight
                (implicit's alpha); with c = 0 training is binary, and `weight=` without
                `min_weight` is refused rather than ignored.

        Returns:
            self. A `validation` share of each user's items (option, default 0.1) is held out
            for early stopping; they stay in `train`, so they are never recommended.
        """
        cfg = self.config
        if cfg.nproc > 1:  # the launcher runs `negspace train` workers, not this object
            raise NegspaceError("nproc > 1 trains through `negspace train --nproc N` or "
                                "run_training; Recommender.fit trains in this process")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = self._device()
        cfg = self.config = dataclasses.replace(
            cfg, precision=resolve_precision(cfg.precision, device))  # "auto": this machine's
        configure(device, cfg.precision, cfg.deterministic)
        # values: 1 per pair, or 1 + confidence x weight, drawn in proportion (data/confidence.py)
        train = confidence(self._read(data, columns), cfg.confidence)
        if cfg.validation > 0:
            fit_on, validation = holdout_split(train, cfg.validation, cfg.seed)
        else:
            fit_on, validation = train, None
        cfg = self.config = resolve_for_data(cfg, train.n_users, train.n_items, train.nnz)
        if validation is not None:  # --val-users, or the recipe's sample on large data
            validation = sample_users(validation, cfg.val_users, cfg.seed)
        features = self._side_features(train, user_features, item_features)
        select = selection_metric(cfg, "python")

        def train_once(cfg: TrainConfig, fit_on: Interactions, validation: Interactions | None,
                       start: EmbeddingModel | None = None) -> tuple[EmbeddingModel, Any]:
            factory = self._model_factory if start is None else lambda *_: start
            trainer = build_trainer(cfg, train.n_users, train.n_items, fit_on, validation,
                                    TrainerOptions.from_config(cfg, select), device, features=features,
                                    model_factory=factory, sampler=self._sampler,
                                    objective=self._objective)
            return trainer.model, trainer.fit()

        model, result = train_once(cfg, fit_on, validation)
        # --item-filter auto: chosen on validation while the model is still on fit_on's graph
        cfg = self.config = resolve_item_filter(cfg, model, fit_on, validation, select)[0]
        if cfg.refit in ("yes", "fold-back"):  # then on every training interaction
            from negspace.pipeline.refit import final_config
            fold = cfg.refit == "fold-back"  # the chosen model goes on, else a fresh refit
            final = final_config(cfg, result.history, result.best_epoch, select)
            if not fold:
                self.config = final  # the refit's config.json reproduces the model by itself
            elif model.reads_history:
                model.set_history(train)
            model, result = train_once(final, train, None, start=model if fold else None)
        model.eval()
        if model.reads_history:  # served vectors read the whole history
            model.set_history(train)
            model.to(device)
        self.model, self.history, self.train = model, result.history, train
        self._features = features if isinstance(model, TwoTower) else None
        with torch.no_grad():
            self._set_vectors(model.user_vectors(None), model.item_vectors(None), model.measure)
        return self

    def _read(self, data: Any, columns: dict[str, Any]) -> Interactions:
        """The training interactions; records where they came from, for config.json: a dataset
        name or file is read as `negspace train --dataset` reads it (this config's filters), so
        `negspace evaluate` can read it again; anything else is data held in memory."""
        _check_columns(columns, ("user_features", "item_features"))
        if isinstance(data, (str, Path)):
            from negspace.pipeline.fit import load_for
            self.config.dataset = str(data)
            if columns.get("data_dir") is not None:
                self.config.data_dir = str(columns.pop("data_dir"))
            if columns:
                raise NegspaceError(f"a dataset name or file takes no column arguments "
                                    f"({', '.join(sorted(columns))}); its columns are found by name")
            self._source = {"dataset": str(data), "data": f"dataset {data}"}
            return load_for(self.config).interactions  # a given split's training part
        self._source = {"dataset": None, "data": f"{type(data).__name__} held in memory"}
        if columns.get("weight") is not None and columns.get("min_weight") is None \
                and self.config.confidence == 0:  # else the weights would be dropped silently
            raise NegspaceError(f"weight={columns['weight']!r} is used in training only with "
                                "confidence > 0 (pairs drawn in proportion to 1 + confidence x "
                                "weight; e.g. Recommender(..., confidence=1)); give min_weight "
                                "to use it as a filter only")
        if isinstance(data, pd.DataFrame):  # the file options name a DataFrame's columns too
            for key in ("user", "item", "weight"):
                if getattr(self.config, f"{key}_col") is not None:
                    columns.setdefault(key, getattr(self.config, f"{key}_col"))
        return interactions_from(data, **columns)

    def _side_features(self, train: Interactions, users: pd.DataFrame | None,
                       items: pd.DataFrame | None) -> TowerFeatures | None:
        """Encoded side features for the two-tower model, rows in the interactions' id order."""
        if users is None and items is None:
            return None
        if self.config.model != "two-tower" or self._model_factory is not None:
            raise NegspaceError("user_features / item_features are read by the two-tower model "
                                "only (model='two-tower')")
        if not self.config.side_features:
            return None
        for name, frame in (("user_features", users), ("item_features", items)):
            if frame is not None and not isinstance(frame, pd.DataFrame):
                raise NegspaceError(f"{name} must be a pandas DataFrame indexed by external id")
        u, ue = encode_side_features(None if users is None else users.reindex(train.user_ids))
        i, ie = encode_side_features(None if items is None else items.reindex(train.item_ids))
        return TowerFeatures(u, i, ue, ie)

    def _set_vectors(self, users: torch.Tensor, items: torch.Tensor, measure: str) -> None:
        # kept on the host (index, save, fold-in); rankings score on self._device()
        self.user_vectors = users.detach().float().cpu().contiguous()
        self.item_vectors = items.detach().float().cpu().contiguous()
        self._items_on_device = None
        self.measure = measure
        self.index = None  # an index over older vectors would answer for another model

    def _need_fitted(self) -> Interactions:
        if self.train is None or self.item_vectors is None:
            raise NegspaceError("the recommender is not fitted: call fit() or Recommender.load()")
        return self.train

    def _device(self) -> torch.device:
        """Where this recommender trains and scores (the `device` option: auto, cpu, cuda[:N])."""
        return resolve_device(self.config.device)

    # -- evaluation and persistence -------------------------------------------------------------

    def evaluate(self, test: Any, ks: Sequence[int] = (20, 50), **columns: Any) -> dict[str, float]:
        """Full-ranking metrics (accuracy and beyond-accuracy) on held-out interactions.

        Args:
            test: held-out interactions in any form `fit` takes; users and items unknown to the
                model are dropped.
            ks: cut-offs.
            **columns: passed to `interactions_from`.

        Returns:
            The evaluator's dict (`ndcg@20`, `coverage@50`, ...); also kept in `metrics` and
            written to metrics.json by `save`.
        """
        train = self._need_fitted()
        _check_columns(columns, ("ks",), {"k": "ks", "cutoffs": "ks"})
        held = interactions_from(test, user_ids=train.user_ids, item_ids=train.item_ids,
                                 **columns).binarized()
        if held.nnz == 0:  # else every metric would be NaN, with no word why
            raise NegspaceError("no test interaction of a known user and item: the users and "
                                "items the model was not trained on are dropped")
        scorer, weight = self._scorer(self.user_vectors), self.config.item_filter_weight or 0.0
        if weight:  # (the filter is built only for a run that blends it)
            scorer = blended_scorer(scorer, self._item_filter(), train.matrix, weight)
        self.metrics = evaluate(scorer, train, held, ks=ks)
        return self.metrics

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Writes the run directory (`negspace recommend`/`export` read it), plus items.faiss when
        an index was built. No pickle: JSON, CSV and safetensors only.

        Returns:
            The directory.
        """
        train = self._need_fitted()
        out = prepare_run_dir(path, overwrite)

        def extras(out: Path) -> None:
            if isinstance(self.model, TwoTower):  # the cold start needs the towers and encoders
                save_towers(out, self.model, self._features)
            else:
                for name in (TOWERS_FILE, FEATURES_FILE):
                    (out / name).unlink(missing_ok=True)
            if self.index is not None:
                ann.write_index(self.index, out / ann.INDEX_FILE)
            else:  # never leave an index of other vectors
                (out / ann.INDEX_FILE).unlink(missing_ok=True)

        # "dataset" says where the data came from (None: held in memory; `negspace evaluate`
        # then refuses in one line instead of evaluating on an unrelated dataset)
        write_run(out, self.user_vectors, self.item_vectors, self.measure, train, self.history,
                  {**self.config.to_dict(), "protocol": "python", **self._source},
                  self.metrics, extras=extras)
        return out

    @classmethod
    def load(cls, path: str | Path, index: bool = False,
             device: str | None = None) -> "Recommender":
        """Reads a run directory written by `save` or `negspace train`.

        Args:
            path: the run directory.
            index: also read its items.faiss (written by `save` or `negspace export --faiss`),
                so that `recommend` ranks with it, as `negspace recommend --faiss` does. Off by
                default: an exact answer never silently becomes an approximate one. With True,
                a missing items.faiss, or faiss not installed, is an error.
            device: where rankings are scored (auto, cpu, cuda, cuda:N; default auto, whatever
                device the run was trained on: a GPU run loads on a CPU-only machine).

        Returns:
            A fitted Recommender (vectors, id maps, training interactions; no trainable model,
            except a two-tower run's towers, read for the cold start of new users).
        """
        run = load_run(path)
        known = {f.name for f in config_fields()}
        options = {k: v for k, v in run.config.items() if k in known and k != "model"}
        model = run.config.get("model", "cml")
        if model not in ("mf", "two-tower"):
            # runs written before `measure` became an mf / two-tower option recorded "dot" for
            # every model; the vectors' measure comes from model.safetensors either way
            options.pop("measure", None)
        rec = cls(**options, model=model)
        rec.config.device = device or "auto"
        rec.train = run.train
        if run.config.get("protocol", "python") != "python":  # a CLI run: saved again, it
            rec._source = {"protocol": run.config["protocol"]}  # keeps its split's protocol
        elif "data" in run.config:  # (older Python runs recorded no source: held in memory)
            rec._source = {"dataset": run.config.get("dataset"), "data": run.config["data"]}
        rec._set_vectors(run.user_vectors, run.item_vectors, run.measure)
        if (Path(path) / TOWERS_FILE).exists():  # two-tower: new users go through the towers
            rec.model, meta, _ = load_towers(path)
            rec._user_encoder = meta.get("user")
        stored = Path(path) / ann.INDEX_FILE
        if index:
            ann.require_faiss()
            if not stored.exists():
                raise NegspaceError(f"no faiss index: {stored} does not exist (negspace export "
                                    f"{path} --faiss writes one)")
            rec.index = ann.read_index(stored, run.measure, run.item_vectors.numpy())
        return rec


COLUMN_KEYWORDS = ("user", "item", "weight", "min_weight", "data_dir")


def _check_columns(columns: Mapping[str, Any], others: Sequence[str] = (),
                   aliases: Mapping[str, str] | None = None) -> None:
    """Refuses a keyword that `interactions_from` does not take, suggesting the closest one
    (`usr=` -> 'user'), instead of the TypeError of a function the caller never called."""
    for key in columns:
        if key not in COLUMN_KEYWORDS:
            hint = did_you_mean(key, (*COLUMN_KEYWORDS, *others), aliases or {})
            raise NegspaceError(f"unknown keyword {key!r}; the column keywords are "
                                f"{', '.join(COLUMN_KEYWORDS)}{hint}")

