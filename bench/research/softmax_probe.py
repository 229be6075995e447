"""Probe: MF on cosine scores with the full softmax, plateau decay; ML-1M validation carved from
training (negspace's holdout split), test read at the end. Research only."""
import sys, time
import numpy as np, torch, torch.nn.functional as F
from negspace.data.loaders import load_dataset
from negspace.data.splits import holdout_split
from negspace.evaluation.evaluator import evaluate

ds_name, dim, tau, lr, bs, epochs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
bias = len(sys.argv) > 7 and sys.argv[7] == "bias"
torch.manual_seed(0); torch.set_num_threads(1)
ds = load_dataset(ds_name)
train, test = ds.interactions.binarized(), ds.test.binarized()
fit, val = holdout_split(train, 0.1, 0)
U = torch.nn.Parameter(torch.randn(train.n_users, dim) * 0.1)
V = torch.nn.Parameter(torch.randn(train.n_items, dim) * 0.1)
b = torch.nn.Parameter(torch.zeros(train.n_items))
opt = torch.optim.Adam([U, V, b], lr=lr)
u_all, i_all = map(torch.from_numpy, fit.pairs())
u_all, i_all = u_all.long(), i_all.long()
def scorer(users):
    with torch.no_grad():
        s = F.normalize(U[users], dim=-1) @ F.normalize(V, dim=-1).T
        return s + b * tau if bias else s
g = torch.Generator().manual_seed(0)
best, stale, decays = -1, 0, 0
for ep in range(1, epochs + 1):
    t0 = time.time(); perm = torch.randperm(len(u_all), generator=g); tot = 0
    for s in range(0, len(perm), bs):
        idx = perm[s:s + bs]; u, i = u_all[idx], i_all[idx]
        logits = F.normalize(U[u], dim=-1) @ F.normalize(V, dim=-1).T / tau
        if bias: logits = logits + b
        loss = F.cross_entropy(logits, i)
        opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item()
    m = evaluate(scorer, fit, val, ks=(20,))
    r = m["recall@20"]
    print(f"ep {ep} loss {tot/ (len(perm)/bs):.4f} val r20 {r:.4f} {time.time()-t0:.1f}s lr {opt.param_groups[0]['lr']:.1e}", flush=True)
    if r > best:
        best, stale, state = r, 0, (U.detach().clone(), V.detach().clone(), b.detach().clone())
    else:
        decays += 1
        if decays > 2: break
        with torch.no_grad(): U.copy_(state[0]); V.copy_(state[1]); b.copy_(state[2])
        for gr in opt.param_groups: gr["lr"] *= 0.1
with torch.no_grad(): U.copy_(state[0]); V.copy_(state[1]); b.copy_(state[2])
m = evaluate(scorer, train, test, ks=(20,))
print("TEST", ds_name, dim, tau, lr, bs, "r20", round(m["recall@20"], 4), "ndcg20", round(m["ndcg@20"], 4))
