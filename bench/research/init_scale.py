"""Validation Recall@20 per epoch of cosine MF-CCL for one (lr, start scale), the check behind
the N(0, 1e-3) start of the cosine models (docs/results.md, issue 4). Validation split only.

    python bench/research/init_scale.py DATASET LR INIT_STD NEGATIVES EPOCHS
"""

import sys

import negspace  # noqa: F401  -- sets the OpenMP policy before torch starts
import torch

from negspace.data.splits import holdout_split
from negspace.pipeline.build import build_objective, build_sampler
from negspace.pipeline.fit import load_for, split_for
from negspace.models import MF
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions
torch.set_num_threads(1)
ds, lr, std, N, ep = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = make_config({"dataset": ds,"model":"mf","loss":"ccl","sampler":"uniform","negatives":N})
train,_ = split_for(cfg, load_for(cfg)); fit,val = holdout_split(train,0.1,0)
torch.manual_seed(0)
m = MF(fit.n_users, fit.n_items, 64, measure="cosine", init_std=std)
opt = TrainerOptions(batch_size=1024, negatives=N, epochs=ep, lr=lr, patience=10, select_metric="recall@20", progress=False)
r = Trainer(m, build_sampler(cfg), build_objective(cfg), fit, opt, val).fit()
print(ds, lr, std, N, [round(h["val_recall@20"],4) for h in r.history], flush=True)
