import pytest

from ..conftest import random_interactions


@pytest.fixture
def toy_csv(tmp_path):
    inter = random_interactions(n_users=50, n_items=70, density=0.15, seed=3, dense_user=False)
    users, items = inter.pairs()
    path = tmp_path / "toy.csv"
    path.write_text("user,item\n" + "\n".join(f"{u},{i}" for u, i in zip(users, items)) + "\n")
    return path
