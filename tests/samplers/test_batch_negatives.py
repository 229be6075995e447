import numpy as np
import pytest
import torch

from negspace.errors import NegspaceError
from negspace.samplers.candidates import popularity_log_q
from negspace.samplers.in_batch import InBatchSampler, UniformSoftmaxSampler
from negspace.samplers.memory_bank import MemoryBankSampler

from ..conftest import random_interactions


@pytest.fixture
def inter():
    return random_interactions(n_users=40, n_items=30, density=0.3, seed=2, dense_user=False)


def _batch(inter, size, seed):
    rng = np.random.default_rng(seed)
    users, items = inter.pairs()
    idx = rng.integers(0, inter.nnz, size)
    return users[idx], items[idx]


def test_bank_is_first_in_first_out():
    bank = MemoryBankSampler(size=5)
    for start in (0, 3, 6):  # ids 0..8 in batches of 3; the bank keeps the newest 5, oldest first
        ids = torch.arange(start, start + 3)
        bank.enqueue(ids, ids.float().unsqueeze(1).repeat(1, 2))
    ids, vectors = bank.contents()
    assert ids.tolist() == [4, 5, 6, 7, 8]
    assert vectors[:, 0].tolist() == [4, 5, 6, 7, 8]
    bank.enqueue(torch.arange(100, 107), torch.zeros(7, 2))  # larger than the bank: its last 5
    assert bank.contents()[0].tolist() == [102, 103, 104, 105, 106]


def test_bank_unused_during_warmup_and_only_its_filled_part_after(inter):
    bank = MemoryBankSampler(size=50, warmup=3).fit(inter)
    for step in range(1, 6):
        users, items = _batch(inter, 8, step)
        cands = bank.candidates(users, items, 4)
        if step <= 3:
            assert cands.bank_vectors is None
        else:  # 8 vectors enqueued per step, never more than filled
            assert cands.bank_vectors.shape == (8 * (step - 1), 3)
            assert cands.bank_mask.shape == (8, 8 * (step - 1))
        bank.enqueue(torch.from_numpy(items), torch.randn(8, 3))


@pytest.mark.parametrize("all_positives", [False, True])
def test_a_positive_is_never_its_own_negative(inter, all_positives):
    bank = MemoryBankSampler(size=64, mask_positives=all_positives, seed=1).fit(inter)
    for step in range(6):
        users, items = _batch(inter, 32, step)  # small catalogue: many accidental hits
        cands = bank.candidates(users, items, 4)
        sets = [(cands.ids, cands.mask)]
        if cands.bank_ids is not None:
            sets.append((cands.bank_ids, cands.bank_mask))
        for ids, keep in sets:
            ids, keep = ids.numpy(), keep.numpy()
            hit = ids[None, :] == items[:, None]
            assert hit.any()  # the check can fail: there are hits to mask
            assert not (keep & hit).any()
            positive = inter.contains(users[:, None], ids[None, :])
            assert (keep & positive).any() != all_positives
            assert (keep == ~(positive if all_positives else hit)).all()
        bank.enqueue(torch.from_numpy(items), torch.randn(32, 4))


def test_in_batch_and_uniform_candidates_and_log_q(inter):
    users, items = _batch(inter, 16, 0)
    cands = InBatchSampler().fit(inter).candidates(users, items, 5)
    assert cands.ids.tolist() == items.tolist()
    # log q of a slot of a shuffled batch: the item's share of the training pairs, counted here
    # from the pairs themselves rather than by the code's own helper
    _, pair_items = inter.pairs()
    share = np.array([(pair_items == i).sum() for i in items]) / len(pair_items)
    assert np.allclose(cands.log_q.numpy(), np.log(share))
    assert np.allclose(cands.log_q_pos.numpy(), np.log(share))  # the positives are batch slots too
    for mask_positives in (False, True):
        cands = UniformSoftmaxSampler(mask_positives=mask_positives, seed=3).fit(inter) \
            .candidates(users, items, 7)
        ids, keep = cands.ids.numpy(), cands.mask.numpy()
        assert ids.shape == (7,) and keep.shape == (16, 7)
        assert ((ids >= 0) & (ids < inter.n_items)).all()
        for b in range(16):
            for j in range(7):
                banned = ids[j] == items[b] or (mask_positives and inter.contains(users[b], ids[j]))
                assert keep[b, j] == (not banned), (b, j)
        assert np.allclose(cands.log_q.numpy(), -np.log(inter.n_items))
        assert np.allclose(cands.log_q_pos.numpy(), -np.log(inter.n_items))
    # draws follow the seed: the same seed repeats them, another one does not
    draw = lambda seed: UniformSoftmaxSampler(seed=seed).fit(inter).candidates(users, items, 50).ids
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_every_positive_of_the_user_is_masked_by_default(inter):
    """The README promises that every sampler excludes the user's training positives: the
    embedding-level samplers do so unless told otherwise (--no-mask-positives)."""
    from negspace.pipeline.build import build_sampler
    from negspace.config import make_config

    users, items = _batch(inter, 32, 1)
    for name in ("in-batch", "uniform-softmax", "memory-bank"):
        for sampler in (build_sampler(make_config({"model": "two-tower", "sampler": name})),
                        {"in-batch": InBatchSampler, "uniform-softmax": UniformSoftmaxSampler,
                         "memory-bank": MemoryBankSampler}[name]()):
            cands = sampler.fit(inter).candidates(users, items, 30)
            ids, keep = cands.ids.numpy(), cands.mask.numpy()
            positive = inter.contains(users[:, None], ids[None, :])
            assert (positive & (ids[None, :] != items[:, None])).any()  # other positives occur
            assert not (keep & positive).any(), name
    off = build_sampler(make_config({"model": "two-tower", "sampler": "in-batch",
                                     "mask_positives": False}))
    keep = off.fit(inter).candidates(users, items, 30).mask.numpy()
    assert (keep & inter.contains(users[:, None], items[None, :])).any()


def test_bank_state_round_trip(inter):
    a = MemoryBankSampler(size=10, warmup=1, seed=4).fit(inter)
    users, items = _batch(inter, 6, 0)
    a.candidates(users, items, 2)
    a.enqueue(torch.from_numpy(items), torch.randn(6, 3))
    b = MemoryBankSampler(size=10, warmup=1, seed=4).fit(inter)
    b.load_state_dict(a.state_dict())
    ca, cb = a.candidates(users, items, 2), b.candidates(users, items, 2)
    assert torch.equal(ca.bank_vectors, cb.bank_vectors) and torch.equal(ca.bank_ids, cb.bank_ids)
    assert (a.sample(users, items, 3) == b.sample(users, items, 3)).all()


def test_bad_bank_options():
    with pytest.raises(NegspaceError):
        MemoryBankSampler(size=0)
    with pytest.raises(NegspaceError):
        MemoryBankSampler(warmup=-1)
