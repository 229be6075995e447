"""Diagnosis of the collapse of CBNS on MovieLens-100k (docs/results.md, issue 3): the bank's ids
re-encoded every step, detached (fresh-detached) or with gradient (fresh-grad).

    python bench/cbns_diag.py fresh-detached|fresh-grad
"""
import sys, torch
from negspace.training import objective as O
from negspace.experiments.run import run_training
from negspace.training.config import make_config
mode = sys.argv[1]
orig = O.Objective.with_candidates
def patched(self, model, users, items, cands, negatives=None):
    if cands.bank_ids is not None:
        if mode == "fresh-detached":
            with torch.no_grad():
                cands.bank_vectors = model.item_vectors(cands.bank_ids)
        elif mode == "fresh-grad":
            cands.bank_vectors = model.item_vectors(cands.bank_ids)
    return orig(self, model, users, items, cands, negatives)
O.Objective.with_candidates = patched
torch.set_num_threads(1)
cfg = make_config(dict(dataset="movielens-100k", fold=0, epochs=4, min_epochs=4, measure="cosine", temperature=0.1,
    model="two-tower", dim=64, lr=0.001, threads=1, progress=False, seed=0, sampler="memory-bank",
    batch_size=256, bank_size=2048, warmup=100))
out = run_training(cfg)
print(mode, [(r["epoch"], round(r["val_ndcg@50"], 4)) for r in out.history], out.metrics["recall@20"])
