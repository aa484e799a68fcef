"""How good is an embedding? Retrieval metrics and one-shot identification.

Retrieval metrics follow Musgrave, Belongie and Lim, "A Metric Learning Reality Check" (ECCV 2020).
Every picture is a query once against all the other pictures. For a query with R other pictures of
its identity, among its R nearest: Precision@1 asks whether the nearest is the same identity,
R-Precision is the fraction that are, and MAP@R the mean of Precision@i over the ranks i that hold
the same identity, divided by R (it rewards putting the right pictures first). Queries whose
identity has no other picture are left out.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from course_utils._validate import check_embeddings, check_labels, check_metric, check_tensor, check_whole_number
from course_utils.core.distances import pairwise_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask
from course_utils.data.batches import one_shot_split


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
          device: torch.device | str | None = None) -> torch.Tensor:
    """Encode (N, C, H, W) pictures to (N, D) float32, batch by batch, in evaluation mode without gradients.

    The result is on `device` (None: the model's); the model's train/eval mode is restored.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_tensor(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}.")
    check_whole_number(batch_size, "batch_size")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [
                model(images[start : start + batch_size].to(device, non_blocking=True)).float()
                for start in range(0, len(images), batch_size)
            ]
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("images is empty; give at least one picture to encode.")
    return torch.cat(parts)


def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, metric: str = "squared_euclidean",
                      chunk_size: int = 1024) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R of (N, D) embeddings with (N,) labels, each picture a query.

    Args:
        chunk_size: queries handled at once; memory is chunk_size x N distances.
    Returns:
        {"precision_at_1", "r_precision", "map_at_r"}: floats in [0, 1], averaged over the queries
        whose identity has another picture.
    """
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    check_metric(metric)
    check_whole_number(chunk_size, "chunk_size")
    embeddings = embeddings.detach()
    _, identity, counts = labels.unique(return_inverse=True, return_counts=True)
    relevant = counts[identity] - 1  # R for each query: the other pictures of its identity
    queries = (relevant > 0).nonzero().flatten()
    if queries.numel() == 0:
        raise ValueError("no identity has two or more pictures, so no query has anything to retrieve; "
                         "evaluate on a set with several pictures per identity.")
    k = int(relevant.max())
    ranks = torch.arange(1, k + 1, device=embeddings.device, dtype=torch.float64)
    totals = torch.zeros(3, dtype=torch.float64, device=embeddings.device)
    for start in range(0, len(queries), chunk_size):
        query = queries[start : start + chunk_size]
        dist = pairwise_distances(embeddings[query], embeddings, metric=metric)
        # The query must not find itself: give its own column the largest finite distance.
        dist[torch.arange(len(query), device=dist.device), query] = torch.finfo(dist.dtype).max
        neighbours = dist.topk(k, dim=1, largest=False, sorted=True).indices
        r = relevant[query].to(torch.float64)
        # Only the first R neighbours of a query count (R differs between identities).
        hit = (labels[neighbours] == labels[query].unsqueeze(1)) & (ranks <= r.unsqueeze(1))
        precision_at_i = hit.cumsum(dim=1) / ranks
        totals += torch.stack([hit[:, 0].sum(dtype=torch.float64), (hit.sum(dim=1) / r).sum(),
                               ((precision_at_i * hit).sum(dim=1) / r).sum()])
    p1, r_precision, map_at_r = (totals / len(queries)).tolist()
    return {"precision_at_1": p1, "r_precision": r_precision, "map_at_r": map_at_r}


QUERY_CHUNK = 256


class Ranking(NamedTuple):
    """The nearest gallery rows of each query, nearest first: (Q, k) float64 distances, (Q, k) row numbers."""

    distances: torch.Tensor
    indices: torch.Tensor


def rank_gallery(query_embeddings: torch.Tensor, gallery_embeddings: torch.Tensor, top_k: int = 1,
                 metric: str = "squared_euclidean") -> Ranking:
    """The top_k (1 to G) nearest of the (G, D) gallery rows to each (Q, D) query, on the CPU; ties go
    to the lower row number."""
    check_embeddings(query_embeddings, "query_embeddings")
    check_embeddings(gallery_embeddings, "gallery_embeddings")
    check_metric(metric)
    if query_embeddings.shape[1] != gallery_embeddings.shape[1]:
        raise ValueError(f"query_embeddings have {query_embeddings.shape[1]} columns but gallery_embeddings "
                         f"{gallery_embeddings.shape[1]}; encode both with the same network.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(gallery_embeddings):
        raise ValueError(f"top_k must be a whole number from 1 to {len(gallery_embeddings)}, got {top_k!r}.")
    query = query_embeddings.detach().cpu().double()
    gallery = gallery_embeddings.detach().cpu().double()
    parts = []
    # float64, so that near-ties are ranked the same on every machine; QUERY_CHUNK queries at a
    # time keep memory at QUERY_CHUNK x G distances.
    for start in range(0, len(query), QUERY_CHUNK):
        distances = pairwise_distances(query[start : start + QUERY_CHUNK], gallery, metric=metric)  # (chunk, G)
        order = torch.sort(distances, dim=1, stable=True).indices[:, :top_k]
        parts.append((distances.gather(1, order), order))
    return Ranking(*(torch.cat(part) for part in zip(*parts)))


class OneShotResult(NamedTuple):
    """accuracy: share of queries whose nearest enrolled picture is their own identity."""

    accuracy: float
    num_identities: int
    num_queries: int


def one_shot_identification(features: torch.Tensor, labels: torch.Tensor, metric: str = "squared_euclidean",
                            seed: int = 0) -> OneShotResult:
    """Enrol one picture per identity (``one_shot_split(labels, seed)``), then identify every other
    picture by its nearest enrolled one; features are (N, D) encodings or flattened pictures."""
    check_embeddings(features, "features")
    labels = check_labels(labels, features.shape[0]).cpu()
    enrol_idx, query_idx = one_shot_split(labels, seed=seed)
    nearest = rank_gallery(features[query_idx.to(features.device)], features[enrol_idx.to(features.device)],
                           metric=metric).indices[:, 0]  # (queries,) rows of enrol_idx
    accuracy = float((labels[enrol_idx][nearest] == labels[query_idx]).double().mean())
    return OneShotResult(accuracy, len(enrol_idx), len(query_idx))


def same_and_different_distances(embeddings: torch.Tensor, labels: torch.Tensor,
                                 metric: str = "squared_euclidean") -> tuple[torch.Tensor, torch.Tensor]:
    """1-D distances of all same-identity pairs and of all different-identity pairs, each pair once
    (this builds N x N: keep N to a few thousand)."""
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    dist = pairwise_distances(embeddings.detach(), metric=metric)
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)
    same = dist[anchor_positive_mask(labels) & upper]
    different = dist[anchor_negative_mask(labels) & upper]
    return same, different
