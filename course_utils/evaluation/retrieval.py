"""How good is an embedding? Retrieval metrics (Musgrave, Belongie and Lim, "A Metric Learning Reality Check",
ECCV 2020), ranking a gallery and one-shot identification."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from course_utils._validate import check_embeddings, check_labels, check_metric, check_tensor, check_whole_number
from course_utils.core.distances import pairwise_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask
from course_utils.data.batches import one_shot_split

METRICS_CHUNK, RANKING_CHUNK = 1024, 256  # queries handled at once (memory: chunk x N distances)


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
          device: torch.device | str | None = None) -> torch.Tensor:
    """Encode (N, C, H, W) pictures to (N, D) float32 on device (None: the model's), in eval mode, without gradients."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if check_tensor(images, "images").dim() != 4 or len(images) == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}.")
    check_whole_number(batch_size, "batch_size")
    device = next((w.device for w in model.parameters()), torch.device("cpu")) if device is None else device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model(images[start : start + batch_size].to(device, non_blocking=True)).float()
                     for start in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor,
                      metric: str = "squared_euclidean") -> dict[str, float]:
    """{"precision_at_1", "r_precision", "map_at_r"} of (N, D) embeddings and (N,) labels. Each picture with R > 0
    others of its identity is a query; among its R nearest, Precision@1 asks whether the nearest is one of them,
    R-Precision is the fraction that are, MAP@R the mean of Precision@i over the ranks i that hold one."""
    labels = check_labels(labels, len(check_embeddings(embeddings)), embeddings.device)
    check_metric(metric)
    embeddings = embeddings.detach()
    _, identity, counts = labels.unique(return_inverse=True, return_counts=True)
    relevant = counts[identity] - 1  # R for each query: the other pictures of its identity
    queries = (relevant > 0).nonzero().flatten()
    if queries.numel() == 0:
        raise ValueError("no identity has two or more pictures, so no query has anything to retrieve.")
    k = int(relevant.max())
    ranks = torch.arange(1, k + 1, device=embeddings.device, dtype=torch.float64)
    totals = torch.zeros(3, dtype=torch.float64, device=embeddings.device)
    for start in range(0, len(queries), METRICS_CHUNK):
        query = queries[start : start + METRICS_CHUNK]
        dist = pairwise_distances(embeddings[query], embeddings, metric=metric)
        dist[torch.arange(len(query), device=dist.device), query] = torch.finfo(dist.dtype).max  # never itself
        neighbours = dist.topk(k, dim=1, largest=False, sorted=True).indices
        r = relevant[query].to(torch.float64)
        # Only the first R neighbours of a query count (R differs between identities).
        hit = (labels[neighbours] == labels[query].unsqueeze(1)) & (ranks <= r.unsqueeze(1))
        precision_at_i = hit.cumsum(dim=1) / ranks
        totals += torch.stack([hit[:, 0].sum(dtype=torch.float64), (hit.sum(dim=1) / r).sum(),
                               ((precision_at_i * hit).sum(dim=1) / r).sum()])
    p1, r_precision, map_at_r = (totals / len(queries)).tolist()
    return {"precision_at_1": p1, "r_precision": r_precision, "map_at_r": map_at_r}


def rank_gallery(query_embeddings: torch.Tensor, gallery_embeddings: torch.Tensor,
                 top_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each (Q, k): the k = min(top_k, G) nearest (G, D) gallery rows of each (Q, D) query,
    nearest first; float64 on the CPU, so near-ties rank alike on every machine; ties go to the lower row."""
    check_embeddings(query_embeddings, "query_embeddings")
    check_embeddings(gallery_embeddings, "gallery_embeddings")
    check_whole_number(top_k, "top_k")  # pairwise_distances checks that the columns match
    query, gallery = (x.detach().cpu().double() for x in (query_embeddings, gallery_embeddings))
    parts = []
    for start in range(0, len(query), RANKING_CHUNK):
        distances = pairwise_distances(query[start : start + RANKING_CHUNK], gallery)  # (chunk, G)
        order = torch.sort(distances, dim=1, stable=True).indices[:, :top_k]
        parts.append((distances.gather(1, order), order))
    return tuple(torch.cat(part) for part in zip(*parts))


class OneShotResult(NamedTuple):
    accuracy: float  # share of queries whose nearest enrolled picture is their own identity
    num_identities: int
    num_queries: int


def one_shot_identification(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> OneShotResult:
    """Name each picture after the nearest of (N, D) features enrolled by ``one_shot_split(labels, seed)``."""
    labels = check_labels(labels, len(check_embeddings(features, "features"))).cpu()
    enrol_idx, query_idx = one_shot_split(labels, seed=seed)
    nearest = rank_gallery(features[query_idx.to(features.device)],
                           features[enrol_idx.to(features.device)])[1][:, 0]  # (queries,) rows of enrol_idx
    accuracy = float((labels[enrol_idx][nearest] == labels[query_idx]).double().mean())
    return OneShotResult(accuracy, len(enrol_idx), len(query_idx))


def same_and_different_distances(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D squared distances of all same-identity and of all different-identity pairs, each pair once (N x N)."""
    labels = check_labels(labels, len(check_embeddings(embeddings)), embeddings.device)
    dist = pairwise_distances(embeddings.detach())
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)
    return dist[anchor_positive_mask(labels) & upper], dist[anchor_negative_mask(labels) & upper]
