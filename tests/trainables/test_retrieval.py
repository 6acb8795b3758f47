import math

import pytest
import torch

from tunelab.trainables.retrieval import retrieval_metrics


def _at_degrees(*angles):
    rad = torch.tensor(angles, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(rad), torch.sin(rad)], dim=1)


def test_recall_and_map_at_r_on_a_hand_worked_example():
    # A: 0, 10, 100 degrees; B: 25, 90 degrees. Worked out by hand:
    # A0 -> [A10, B25, ...]  hit, AP=(1/2)(1)   A10 -> [A0, B25, ...] hit, AP=1/2
    # B25 -> [A10] miss, AP=0                   B90 -> [A100] miss, AP=0
    # A100 -> [B90, B25] miss, AP=0
    emb = _at_degrees(0, 10, 25, 90, 100)
    labels = torch.tensor([0, 0, 1, 1, 0])
    found = retrieval_metrics(emb, labels)
    assert found["recall@1"] == pytest.approx(2 / 5)
    assert found["map@r"] == pytest.approx(1 / 5)


def test_map_at_r_counts_precision_at_each_relevant_rank():
    # A: 0, 20, 170; B: 10. A0 -> [B10, A20]: AP = (1/2)(1/2); A20 likewise; A170 -> [A20, B10]: AP = 1/2.
    # B10 has no other B: it counts for Recall@1 (a miss) but not for MAP@R.
    emb = _at_degrees(0, 20, 170, 10)
    labels = torch.tensor([0, 0, 0, 1])
    found = retrieval_metrics(emb, labels)
    assert found["recall@1"] == pytest.approx(1 / 4)
    assert found["map@r"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)


def test_perfectly_clustered_embedding_scores_one_and_blocks_agree():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=gen) * 10
    labels = torch.arange(5).repeat_interleave(7)
    emb = centres[labels] + 0.01 * torch.randn(35, 8, generator=gen)
    assert retrieval_metrics(emb, labels) == {"recall@1": 1.0, "map@r": 1.0}
    shuffled = torch.randn(35, 8, generator=gen)
    assert retrieval_metrics(shuffled, labels, block=4) == pytest.approx(retrieval_metrics(shuffled, labels))
