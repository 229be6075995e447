"""Diagnosis of the collapse of CBNS on MovieLens-100k (docs/results.md, issue 3): the bank's ids
re-encoded every step, detached (fresh-detached) or with gradient (fresh-grad); or the bank kept
as it is (stored, detached vectors) with the gradient split between the towers (split): the user
tower learns from the softmax over positive + batch + bank with the item side held fixed, the item
tower from the in-batch softmax alone with the user side held fixed, so the bank's constants no
longer dilute the push the item tower gets from its live negatives.

    python bench/research/cbns_diag.py fresh-detached|fresh-grad|split [cosine|dot]
"""
import sys, torch
from negspace.losses.sampled_softmax import sampled_softmax
from negspace.models.base import score_matrix
from negspace.training import objective as O
from negspace.pipeline.fit import run_training
from negspace.config import make_config
mode = sys.argv[1]
measure = sys.argv[2] if len(sys.argv) > 2 else "cosine"
orig = O.Objective.with_candidates


def split(self, model, users, items, cands):
    u = model.user_vectors_for_pairs(users, items)
    p = model.item_vectors(items)
    n = p if torch.equal(cands.ids, items) else model.item_vectors(cands.ids)
    sc = lambda a, b: score_matrix(a, b, model.measure)
    T, A = self.temperature, self.logq_strength
    pd, nd = p.detach(), n.detach()
    user_term = sampled_softmax(model.score(u, pd), torch.cat([sc(u, nd), sc(u, cands.bank_vectors)], 1),
                                T, cands.log_q_pos, torch.cat([cands.log_q, cands.bank_log_q]), A,
                                torch.cat([cands.mask, cands.bank_mask], 1))
    ud = u.detach()
    item_term = sampled_softmax(model.score(ud, p), sc(ud, n), T, cands.log_q_pos, cands.log_q, A,
                                cands.mask)
    return user_term.mean() + item_term.mean()


def patched(self, model, users, items, cands, negatives=None):
    if cands.bank_ids is not None:
        if mode == "fresh-detached":
            with torch.no_grad():
                cands.bank_vectors = model.item_vectors(cands.bank_ids)
        elif mode == "fresh-grad":
            cands.bank_vectors = model.item_vectors(cands.bank_ids)
        elif mode == "split":
            return split(self, model, users, items, cands)
    return orig(self, model, users, items, cands, negatives)


O.Objective.with_candidates = patched
torch.set_num_threads(1)
cfg = make_config(dict(dataset="movielens-100k", fold=0, epochs=4, min_epochs=4, measure=measure,
    temperature=0.1 if measure == "cosine" else 1.0,
    model="two-tower", dim=64, lr=0.001, threads=1, progress=False, seed=0, sampler="memory-bank",
    batch_size=256, bank_size=2048, warmup=100))
out = run_training(cfg)
print(mode, measure, [(r["epoch"], round(r["val_ndcg@50"], 4)) for r in out.history], out.metrics["recall@20"],
      "train s", out.metrics["train_seconds"])
