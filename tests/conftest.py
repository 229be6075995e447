import negspace  # noqa: F401  -- first, so that its OpenMP setting precedes torch
import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions


def random_interactions(n_users: int = 60, n_items: int = 40, density: float = 0.2,
                        seed: int = 0, dense_user: bool = True) -> Interactions:
    """Synthetic interactions with skewed item popularity; user 0 holds most of the catalogue."""
    rng = np.random.default_rng(seed)
    pop = rng.pareto(1.5, n_items) + 0.1
    p = pop / pop.sum()
    users, items = [], []
    for u in range(n_users):
        k = max(1, int(rng.binomial(n_items, density)))
        if dense_user and u == 0:
            k = n_items - 8
        chosen = rng.choice(n_items, size=min(k, n_items - 1), replace=False, p=p)
        users += [u] * len(chosen)
        items += chosen.tolist()
    return Interactions.from_indices(np.array(users), np.array(items), np.arange(n_users),
                                     np.arange(n_items))


@pytest.fixture
def interactions() -> Interactions:
    return random_interactions()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
