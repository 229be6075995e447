"""The default recipe: what `negspace train` and `Recommender()` train when no model, loss,
sampler, negative mode or batch unit is named, and the choices it leaves to the data's size."""

from __future__ import annotations

import dataclasses
from typing import Any

from negspace.config.schema import BY_SIZE, TrainConfig


# What `negspace train` and `Recommender()` train when no model, loss, sampler, negative mode or
# batch unit is named (on the command line, in --config, or as keyword): MF on cosine scores with
# the softmax loss, plateau decay, started from the training matrix's leading singular vectors
# (models/spectral.py: on the validation splits of ML-1M, gowalla-lightgcn and Amazon-CDs it
# reached the random start's best in half the epochs or fewer, and validated higher; gowalla's
# test Recall@20 0.1580 -> 0.1626 in 18 epochs instead of 32). Chosen on validation
# splits only (docs/results.md, "Default recipe"); it reads nothing of the dataset but its
# statistics. Training ends at the first validation without improvement after two decays of the
# rate (one on the largest data; before a fold-back, none: MAX_DECAYS below; training/schedule.py
# floor_after). dim 0 means "by the data's size" (resolve_for_data), as sampler "auto" does; a
# value given by the user stays.
DEFAULT_RECIPE: dict[str, Any] = {
    "model": "mf", "loss": "softmax", "sampler": "auto", "dim": 0, "negatives": 0,
    "batch_size": 0, "lr": 0.01, "temperature": 0, "init": "spectral", "init_std": 0.01,
    "refit": "auto", "layers": None, "val_users": None, "max_decays": None,
    "fold_back_epochs": None, "fold_back_lr_scale": None, "precision": "auto",
    "item_filter": None,
}
# precision "auto" (training/device.py): the score products in bfloat16 on a CPU that multiplies
# it natively (avx512_bf16, amx_bf16), float32 elsewhere. On such a CPU (AMD EPYC, 2 cores) the
# full softmax's epochs took 0.72x (ML-1M) and 0.79x (gowalla-lightgcn) of the cpu-seconds, at
# validation Recall@20 within 0.15% of float32 after each epoch (bench/research/cpu_speed.py;
# bench/records/speed.jsonl); without those flags the products are emulated, 2.2x slower. The
# sampled softmax keeps float32 (training/objective.py: its peak memory grew in bfloat16).
# Up to this many user x item cells an epoch of the full softmax at d 512 stays cheap (ML-1M's
# 1.8e7: about 5 s on one core), and d 512 at T 0.15 scored above d 128 at T 0.2 on the validation
# split of every such dataset we have (ML-100k, ML-1M, Last.fm, Book-Crossing: +2% to +9%);
# above it d 256 at T 0.15 (the Amazon sets: above d 128 at T 0.2 on validation by 4% to 5% after
# 8 of its epochs, each costing twice one at d 128).
SMALL_DATA_MAX_CELLS = 1e8
SMALL_DATA = {"dim": 512, "temperature": 0.15, "batch_size": 256}
# On small data with few users, 256 users a batch leave an epoch with a handful of steps
# (Book-Crossing's 1,294 users: 5), and the plateau schedule, which decides per epoch, decays and
# stops after a few dozen updates. Batches there shrink (by powers of two, down to
# SMALL_DATA_MIN_BATCH) until an epoch holds SMALL_DATA_MIN_STEPS steps. Validation NDCG@50 at
# 64 users against 256: Book-Crossing 0.0670 against 0.0648 (128: 0.0666, 32: 0.0669), Last.fm
# 0.2641 against 0.2630, ML-100k 0.2585 against 0.2579 (docs/results.md).
SMALL_DATA_MIN_STEPS = 20
SMALL_DATA_MIN_BATCH = 64
LARGE_DATA = {"dim": 256, "temperature": 0.15, "batch_size": 256}
# Large data whose users hold at least this many training items on average (Gowalla's check-ins,
# 27 a user): d 64 at T 0.1 costs half of d 256 an epoch; test Recall@20 0.1580 in 920 cpu-s
# against d 256 / T 0.15's 0.1557 in about 1,200 (bench/records/gowalla.jsonl). The Amazon sets
# (9 and 14 items a user) keep the recipe measured on them. There the graph encoder (--layers 2,
# models/graph.py) validated 0.2120 against plain MF's 0.2092 and reached 0.191 after one epoch
# (MF: 0.114); test Recall@20 0.1660 in 439 s of training against 0.1626 in 18 epochs. With the
# encoder, d 128 validated 0.2206 against d 64's 0.2120, ahead at every epoch (0.2157 after 4)
# for about 1.6x the cpu-seconds an epoch: more accuracy per cpu-second, so d 128. Each step
# propagates over the whole graph, so batches of 1,024 users instead of 256 quarter that cost an
# epoch: about 25 cpu-s an epoch against 38 at 512 users, with validation as high at equal epochs
# (0.2212 after 11 epochs; 512 users 0.2210, 256 users 0.2206 at best). Validated up to the first
# epoch without improvement and folded back (no decay, below), d 192 reached 0.2217 on the nested
# validation split against d 160's 0.2206 and d 128's 0.2196, in 4 epochs of about 1.3x the
# cpu-seconds of d 128's 6 (bench/research/fold_back.py --set dim=192 --set lr_floor=0.01).
LONG_HISTORY_MIN_ITEMS = 20
LONG_HISTORY = {"dim": 192, "temperature": 0.1, "layers": 2, "batch_size": 1024}
# sampler "auto": the softmax batched by users (256 users a step, each user's positives summed).
# On small data and on long histories over the whole catalogue (`--sampler full`) while an
# epoch's n_users x n_items scores stay affordable (up to FULL_SOFTMAX_MAX_CELLS) and a step's
# B_users x n_items scores fit in memory (n_items up to FULL_SOFTMAX_MAX_ITEMS). Elsewhere (the
# Amazon sets' short histories, and everything past those caps) estimated from a uniform sample
# (`--sampler uniform-softmax`, Objective.multinomial: the batch's positive items exactly, the
# rest from the draws): about SAMPLED_CELLS scores an epoch besides the batches' positives, at most
# an eighth of the catalogue a step, at least SAMPLED_MIN_DRAWS. Forced onto the Amazon sets,
# where the full softmax was the default, it scored test Recall@20 0.1779 against 0.1753
# (Amazon-CDs) and 0.1668 against 0.1661 (Amazon-Book) at about a fifth of the cpu-seconds an
# epoch (16 against 93 on CDs); the pair batches with 1,000 shared negatives it replaces scored
# 0.1439 on CDs (docs/results.md). On long histories the batch's positives alone are a large share
# of the catalogue, and the graph encoder propagates every item each step anyway: full there.
FULL_SOFTMAX_MAX_CELLS = 4e9
FULL_SOFTMAX_MAX_ITEMS = 200_000
SAMPLED_CELLS = 1e9
SAMPLED_MIN_DRAWS = 1000
SHARED_NEGATIVES = 1000  # --confidence's pair batches: shared uniform negatives a step
# Validation ranks the whole catalogue for each validation user: above this many validation
# scores an epoch (the 8M-pair synthetic set: 3e10, about 2 minutes an epoch) the default recipe
# validates on a seeded sample of VALIDATION_MAX_CELLS / n_items users (at least
# VALIDATION_MIN_USERS; the same users every epoch, so the epochs compare on equal terms). Recall@20
# over 20,000 users has a standard error of about 0.002 at the values seen here, below the
# differences the plateau schedule acts on after the first epochs.
VALIDATION_MAX_CELLS = 2e9
VALIDATION_MIN_USERS = 10_000
# refit "auto": the model finally trains on the interactions validation held out. Up to
# SMALL_DATA_MAX_CELLS by a refit (a second run of the chosen epochs: seconds there); above, up
# to FOLD_BACK_MAX_CELLS, by folding them back (pipeline/refit.py: LARGE_FOLD_BACK, 3 more epochs
# on everything at the first rate), which on gowalla-lightgcn matched the refit on a nested
# validation split (+3.8% against +3.6%) at 27% of its seconds; test Recall@20 +2.5% there and
# +2.6% on Amazon-CDs (1.5e9 cells). Amazon-Book (1.8e9 cells), nested: 0.2450 after the
# fold-back against 0.2418 for the model validated with two decays and no fold-back.
# On small data the first rate undoes what the decays gained (ML-1M nested: 0.2352 after one
# epoch against the validated 0.2547); an explicit `--refit fold-back` there is SMALL_FOLD_BACK,
# 7 epochs at 0.1 x the first rate after a validated run at the first rate only. It is level with
# the refit on the nested validation split of ML-1M, ML-100k, Last.fm and Book-Crossing (-0.3% on
# average, -1.8% to +1.0%) in half the epochs (ML-1M 14.6 s of training against 27.3), but read
# lower on every test split (-0.2% to -2.8%, none significant alone; Last.fm's four folds -0.5%)
# and 4 epochs at 0.3 x, as level on validation, read 0.9% under the refit on ML-1M's test
# (p 0.003): the refit stays the default there (bench/records/gowalla.jsonl, accuracy.jsonl).
# Past FOLD_BACK_MAX_CELLS neither: the 8M-pair
# synthetic set (2.7e10) lost 3.8% with it (0.1002 against 0.1042): epochs that long at the first
# rate undo what the decays gained (its validation rose 0.1080 -> 0.1090 with them), and a refit
# would double runs of 20 minutes and more.
FOLD_BACK_MAX_CELLS = 4e9
SMALL_FOLD_BACK = {"fold_back_epochs": 7, "fold_back_lr_scale": 0.1}
LARGE_FOLD_BACK = {"fold_back_epochs": 3, "fold_back_lr_scale": 1.0}
# max_decays None: training ends at the first validation without improvement after MAX_DECAYS
# decays of the rate (two decays kept the best within 0.04% of the whole run's on six recorded
# curves, one gave up to 0.12%: bench/research/stop_replay.py). Past ONE_DECAY_MIN_CELLS, where
# an epoch takes minutes, one: on the 8M-pair synthetic set (2.7e10 cells, 80 s an epoch) the
# second decay's epochs chose nothing (the best epoch was 10 of 12 either way) and cost 1.5
# minutes of 20.
# Before a fold-back, none: the validated run ends at its first validation without improvement
# (lr_floor raised to lr); the fold-back's own rate (above) follows. On the nested validation of
# gowalla-lightgcn the fold-back then reached 0.2196 after 7 validated epochs against 0.2199
# after one decay's 12 (0.2200 after two decays' 16), in 102 s of the validated run against 229.
MAX_DECAYS = 2
ONE_DECAY_MIN_CELLS = 1e10
# item_filter None: "auto" (the weight of GF-CF's item-item filter in the ranking, chosen on the
# validation split after training; pipeline/filtering.py) past SMALL_DATA_MAX_CELLS up to
# ITEM_FILTER_MAX_CELLS, "0" elsewhere. On the validation splits of the default's models the
# blend at 0.1 scored Recall@20 0.2293 against 0.2240 on gowalla-lightgcn and 0.1808 against
# 0.1725 on Amazon-CDs; on ML-1M, Last.fm and ML-100k every weight scored level or lower
# (bench/research/item_filter.py). Past 4e9 cells the filter's sparse products were not measured.
ITEM_FILTER_MAX_CELLS = 4e9


def resolve_for_data(cfg: TrainConfig, n_users: int, n_items: int,
                     n_pairs: int = 0) -> TrainConfig:
    """`cfg` with sampler "auto" (and dim, temperature, batch_size 0), layers, val_users,
    max_decays, fold_back_epochs and fold_back_lr_scale None and refit "auto" (yes, fold-back or
    no) replaced by what the data's size (users, items, training pairs) calls for (see above).
    The caller samples its validation users after this (`sample_users`)."""
    cells = n_users * n_items
    if cfg.val_users is None:
        sample = cells > VALIDATION_MAX_CELLS
        cfg = dataclasses.replace(cfg, val_users=max(VALIDATION_MIN_USERS, int(
            VALIDATION_MAX_CELLS / max(n_items, 1))) if sample else 0)
    if cfg.refit == "auto":  # the 10% held out for validation counts: trained on at the end
        one = cfg.validation > 0 and cfg.nproc <= 1
        final = "yes" if cells <= SMALL_DATA_MAX_CELLS else \
            "fold-back" if cells <= FOLD_BACK_MAX_CELLS else "no"
        cfg = dataclasses.replace(cfg, refit=final if one else "no")
    small = cells <= SMALL_DATA_MAX_CELLS and cfg.refit == "fold-back"  # else unused or large
    fold_back = SMALL_FOLD_BACK if small else LARGE_FOLD_BACK
    cfg = dataclasses.replace(cfg, **{k: v for k, v in fold_back.items()
                                      if getattr(cfg, k) is None})
    if cfg.max_decays is None and cfg.refit == "fold-back":  # the floor is the first rate
        cfg = dataclasses.replace(cfg, max_decays=0, lr_floor=max(cfg.lr_floor, cfg.lr))
    elif cfg.max_decays is None:
        cfg = dataclasses.replace(cfg, max_decays=1 if cells > ONE_DECAY_MIN_CELLS
                                  else MAX_DECAYS)
    # layers None: the graph encoder where it measured better, with the full softmax by users
    # only (pair batches would propagate once per 256 pairs, 100x an epoch); else none
    plain = 0 if cfg.layers is None else cfg.layers
    if cfg.item_filter is None:  # the item filter where it validated higher (see above)
        chosen = (cfg.sampler == "auto" and not getattr(cfg, "confidence", 0)
                  and SMALL_DATA_MAX_CELLS < cells <= ITEM_FILTER_MAX_CELLS)
        cfg = dataclasses.replace(cfg, item_filter="auto" if chosen else "0")
    if cfg.sampler != "auto":
        return dataclasses.replace(cfg, layers=plain)
    fits = _fits(cells, n_items)
    sized = _sized(cells, n_items, n_pairs, n_users)
    picks = {k: sized[k] for k in BY_SIZE if getattr(cfg, k) == 0}
    if getattr(cfg, "confidence", 0):  # weighted draws of positive pairs: pair batches
        return dataclasses.replace(cfg, sampler="uniform", negatives=cfg.negatives or
                                   SHARED_NEGATIVES, layers=plain, **picks).validate()
    if fits and sized is not LARGE_DATA:  # (negatives unused: every item is one)
        layers = sized.get("layers", 0) if cfg.layers is None else cfg.layers
        return dataclasses.replace(cfg, sampler="full", batch_by="user", layers=layers,
                                   negatives=cfg.negatives or SHARED_NEGATIVES, **picks).validate()
    draws = int(min(max(SAMPLED_CELLS / n_users, SAMPLED_MIN_DRAWS), n_items / 8))
    return dataclasses.replace(cfg, sampler="uniform-softmax", batch_by="user", layers=plain,
                               negatives=cfg.negatives or max(draws, 1), **picks).validate()


def _fits(cells: float, n_items: int) -> bool:
    """Whether the full softmax by users is affordable (see FULL_SOFTMAX_MAX_CELLS)."""
    return cells <= FULL_SOFTMAX_MAX_CELLS and n_items <= FULL_SOFTMAX_MAX_ITEMS


def _sized(cells: float, n_items: int, n_pairs: int, n_users: int) -> dict[str, Any]:
    """SMALL_DATA, LARGE_DATA or LONG_HISTORY: the settings the data's statistics call for."""
    if cells <= SMALL_DATA_MAX_CELLS:
        batch = SMALL_DATA["batch_size"]
        while batch > SMALL_DATA_MIN_BATCH and n_users < SMALL_DATA_MIN_STEPS * batch:
            batch //= 2
        return {**SMALL_DATA, "batch_size": batch}
    if _fits(cells, n_items) and n_pairs >= LONG_HISTORY_MIN_ITEMS * n_users:
        return LONG_HISTORY
    return LARGE_DATA


RECIPE_CHOICES = ("model", "loss", "sampler", "negative_mode", "batch_by")


def with_default_recipe(values: dict[str, Any]) -> dict[str, Any]:
    """`values` on top of DEFAULT_RECIPE when they name none of RECIPE_CHOICES; else unchanged
    (naming a model, loss or sampler starts from the per-option defaults, which suit it)."""
    if any(values.get(k) is not None for k in RECIPE_CHOICES):
        return values
    return {**DEFAULT_RECIPE, **{k: v for k, v in values.items() if v is not None}}
