"""Retrieval metrics of an embedding: Recall@1 and MAP@R, leave-one-out under cosine similarity.

MAP@R (Musgrave, Belongie, Lim 2020): for a query with R other items of its class, rank all other
items by similarity and average precision@i over the relevant ones among the top R:
    MAP@R = mean over queries of (1/R) * sum_{i<=R} P@i * rel(i).
Queries are processed in blocks so a 50k-item split never needs a 50k x 50k matrix at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _ranked_neighbours(embeddings: torch.Tensor, start: int, stop: int, k: int) -> torch.Tensor:
    """Indices of the k most cosine-similar other items for queries start..stop-1."""
    normed = F.normalize(embeddings.float(), dim=1)
    sims = normed[start:stop] @ normed.T
    rows = torch.arange(stop - start, device=sims.device)
    sims[rows, rows + start] = -float("inf")  # leave the query itself out
    return sims.topk(k, dim=1).indices


def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, block: int = 1024) -> dict[str, float]:
    """{'recall@1', 'map@r'} of `embeddings` (N, D) with class `labels` (N,)."""
    n = embeddings.shape[0]
    if n < 2:
        return {"recall@1": float("nan"), "map@r": float("nan")}
    counts = torch.bincount(labels)
    r_per_item = counts[labels] - 1  # relevant items for each query (others of its class)
    max_r = int(r_per_item.max().item())
    hits_at_1 = torch.zeros((), device=embeddings.device)
    ap_sum = torch.zeros((), device=embeddings.device, dtype=torch.float64)
    queries_with_r = int((r_per_item > 0).sum().item())
    for start in range(0, n, block):
        stop = min(n, start + block)
        ranked = _ranked_neighbours(embeddings, start, stop, max(1, min(max_r, n - 1)))
        relevant = (labels[ranked] == labels[start:stop, None])
        hits_at_1 += relevant[:, 0].sum()
        r = r_per_item[start:stop]
        positions = torch.arange(1, relevant.shape[1] + 1, device=ranked.device)
        within_r = positions[None, :] <= r[:, None]
        rel = (relevant & within_r).double()
        precision = rel.cumsum(dim=1) / positions[None, :]
        ap = (precision * rel).sum(dim=1) / r.clamp_min(1)
        ap_sum += ap[r > 0].sum()
    return {"recall@1": (hits_at_1 / n).item(), "map@r": (ap_sum / max(1, queries_with_r)).item()}
