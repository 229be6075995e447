import torch

from negspace.models import CML, MF, score_matrix, score_vectors


def test_cml_sphere_vectors_are_unit():
    m = CML(5, 7, 16)
    assert torch.allclose(m.user_vectors(None).norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(m.item_vectors(torch.tensor([0, 3])).norm(dim=-1), torch.ones(2), atol=1e-5)


def test_cml_ball_clips_looked_up_rows():
    m = CML(3, 4, 8, norm="ball")
    with torch.no_grad():
        m.items.weight.mul_(10)
    v = m.item_vectors(torch.tensor([0, 1]))
    assert (v.norm(dim=-1) <= 1.0 + 1e-5).all()


def test_score_all_matches_pairwise_scores():
    for model in (CML(4, 6, 8), CML(4, 6, 8, norm="ball"), MF(4, 6, 8), MF(4, 6, 8, measure="cosine")):
        users = torch.tensor([0, 2, 3])
        full = model.score_all(users)
        u = model.user_vectors(users)
        v = model.item_vectors(None)
        pair = model.score(u.unsqueeze(1), v.unsqueeze(0))
        assert torch.allclose(full, pair, atol=1e-5), model.measure


def test_l2_score_is_minus_squared_distance():
    u = torch.tensor([[0.0, 0.0]])
    v = torch.tensor([[3.0, 4.0]])
    assert score_vectors(u, v, "l2").item() == -25.0
    assert score_matrix(u, v, "l2").item() == -25.0
