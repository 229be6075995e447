"""Probe: the full softmax batched by users (each user's scores over the catalogue computed once,
the loss summed over its positives: the multinomial likelihood). Research only."""
import sys, time
import numpy as np, torch, torch.nn.functional as F
from negspace.data.loaders import load_dataset
from negspace.data.splits import holdout_split
from negspace.evaluation.evaluator import evaluate

ds_name, dim, tau, lr, bs, epochs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cos = "dot" not in sys.argv[7:]
l2 = float([a for a in sys.argv[7:] if a.startswith("l2=")][0][3:]) if any(a.startswith("l2=") for a in sys.argv[7:]) else 0.0
threads = 2
torch.manual_seed(0); torch.set_num_threads(threads)
ds = load_dataset(ds_name)
train, test = ds.interactions.binarized(), ds.test.binarized()
fit, val = holdout_split(train, 0.1, 0)
U = torch.nn.Parameter(torch.randn(train.n_users, dim) * (0.01 if cos else 0.01))
V = torch.nn.Parameter(torch.randn(train.n_items, dim) * (0.01 if cos else 0.01))
opt = torch.optim.Adam([U, V], lr=lr)
X = torch.from_numpy(fit.matrix.toarray()).float()  # [n_users, n_items] (small here)
users_all = np.flatnonzero(fit.user_degrees() > 0)
def vecs(u_idx=None):
    u = U if u_idx is None else U[u_idx]
    return (F.normalize(u, dim=-1), F.normalize(V, dim=-1)) if cos else (u, V)
def scorer(users):
    with torch.no_grad():
        u, v = vecs(users); return u @ v.T
rng = np.random.default_rng(0)
best, stale, state = -1, 0, None
for ep in range(1, epochs + 1):
    t0 = time.time(); perm = rng.permutation(users_all); tot = 0; n = 0
    for s in range(0, len(perm), bs):
        idx = torch.from_numpy(perm[s:s + bs]).long()
        u, v = vecs(idx)
        logits = u @ v.T / tau
        x = X[idx]
        loss = -(F.log_softmax(logits, dim=1) * x).sum() / x.sum()
        if l2: loss = loss + l2 * (U[idx].pow(2).sum() + V.pow(2).sum()) / len(idx)
        opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item(); n += 1
    m = evaluate(scorer, fit, val, ks=(20,))
    r = m["recall@20"]
    print(f"ep {ep} loss {tot/n:.4f} val r20 {r:.4f} {time.time()-t0:.1f}s lr {opt.param_groups[0]['lr']:.1e}", flush=True)
    if r > best:
        best, stale, state = r, 0, (U.detach().clone(), V.detach().clone())
    else:
        stale += 1
        if stale >= 3: break
        with torch.no_grad(): U.copy_(state[0]); V.copy_(state[1])
        for gr in opt.param_groups: gr["lr"] *= 0.1
with torch.no_grad(): U.copy_(state[0]); V.copy_(state[1])
m = evaluate(scorer, train, test, ks=(20,))
print("BEST val", round(best, 4), "TEST(fit on 90%)", ds_name, dim, tau, lr, bs, "r20", round(m["recall@20"], 4), "ndcg20", round(m["ndcg@20"], 4))
