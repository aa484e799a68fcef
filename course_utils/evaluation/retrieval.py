"""How good is an embedding? Retrieval metrics, one-shot identification and plots.

Retrieval metrics follow Musgrave, Belongie and Lim, "A Metric Learning Reality
Check" (ECCV 2020). Every picture is a query once; the references are all the other
pictures (the query itself is left out). For a query with R other pictures of the
same identity, look at its R nearest references:

* Precision@1: is the nearest reference the same identity?
* R-Precision: the fraction of the R nearest that are the same identity.
* MAP@R: mean over i = 1..R of Precision@i, counted only at ranks i that hold the
  same identity, divided by R. It rewards putting the right pictures first.

Queries whose identity has no other picture are left out (nothing can be found).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from course_utils.core._validate import (
    check_choice,
    check_embeddings,
    check_labels,
    check_metric,
    check_tensor,
    check_whole_number,
)
from course_utils.data import one_shot_split
from course_utils.core.distances import pairwise_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask

PROJECTIONS = ("pca", "tsne")
_METRIC_LABELS = {
    "squared_euclidean": "squared Euclidean distance",
    "euclidean": "Euclidean distance",
    "cosine": "cosine distance",
}


def embed(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | str | None = None
) -> torch.Tensor:
    """Encode pictures with a network in evaluation mode, batch by batch, without gradients.

    Args:
        model: a network mapping (B, C, H, W) pictures to (B, D) encodings.
        images: (N, C, H, W) pictures on any device.
        batch_size: pictures encoded at once (memory use grows with it).
        device: where to compute; None means the device of the model's parameters.
    Returns:
        (N, D) float32 encodings on that device. The model's train/eval mode is restored.
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


def retrieval_metrics(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    metric: str = "squared_euclidean",
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R with every picture as a query against all others.

    Args:
        embeddings: (N, D) encodings.
        labels: (N,) integer identities.
        metric: distance used to rank references ("squared_euclidean" and "euclidean"
            give the same ranking).
        chunk_size: queries handled at once; memory is chunk_size x N distances.
    Returns:
        {"precision_at_1": float, "r_precision": float, "map_at_r": float}, each in
        [0, 1], averaged over the queries whose identity has at least one other picture.
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
        raise ValueError(
            "no identity has two or more pictures, so no query has anything to retrieve; "
            "evaluate on a set with several pictures per identity."
        )
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
        totals += torch.stack(
            [
                hit[:, 0].sum(dtype=torch.float64),
                (hit.sum(dim=1) / r).sum(),
                ((precision_at_i * hit).sum(dim=1) / r).sum(),
            ]
        )
    p1, r_precision, map_at_r = (totals / len(queries)).tolist()
    return {"precision_at_1": p1, "r_precision": r_precision, "map_at_r": map_at_r}


class OneShotResult(NamedTuple):
    """Outcome of one-shot identification.

    accuracy: fraction of queries whose nearest enrolled picture is their own identity.
    num_identities: identities enrolled (one picture each).
    num_queries: pictures identified.
    """

    accuracy: float
    num_identities: int
    num_queries: int


def one_shot_identification(
    features: torch.Tensor, labels: torch.Tensor, metric: str = "squared_euclidean", seed: int = 0
) -> OneShotResult:
    """Enrol one picture per identity, then identify every other picture by its nearest enrolled one.

    This is face identification from a single example (F9). The enrolled pictures are
    those of ``course_utils.data.one_shot_split(labels, seed)``, the same as in
    ``pixel_one_shot_accuracy``, so passing raw pixels (``images.flatten(1)``) as features
    reproduces that baseline.

    Args:
        features: (N, D) encodings (or flattened pictures) of identities never trained on.
        labels: (N,) integer identities.
        metric: distance used to find the nearest enrolled picture.
        seed: chooses which picture of each identity is enrolled.
    Returns:
        OneShotResult(accuracy, num_identities, num_queries).
    """
    check_embeddings(features, "features")
    labels = check_labels(labels, features.shape[0])
    check_metric(metric)
    enrol_idx, query_idx = one_shot_split(labels, seed=seed)
    # float64 so that near-ties between enrolled pictures are ranked the same on every machine.
    features = features.detach().double()
    enrol_idx, query_idx = enrol_idx.to(features.device), query_idx.to(features.device)
    dist = pairwise_distances(features[query_idx], features[enrol_idx], metric=metric)
    labels = labels.to(features.device)
    predicted = labels[enrol_idx][dist.argmin(dim=1)]
    accuracy = float((predicted == labels[query_idx]).double().mean())
    return OneShotResult(accuracy, len(enrol_idx), len(query_idx))


def same_and_different_distances(
    embeddings: torch.Tensor, labels: torch.Tensor, metric: str = "squared_euclidean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances of all pairs of the same identity and of all pairs of different identities.

    Args:
        embeddings: (N, D) encodings (keep N to a few thousand: this builds N x N).
        labels: (N,) integer identities.
        metric: distance name.
    Returns:
        (same, different): 1-D float tensors, each unordered pair counted once.
    """
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    dist = pairwise_distances(embeddings.detach(), metric=metric)
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)
    same = dist[anchor_positive_mask(labels) & upper]
    different = dist[anchor_negative_mask(labels) & upper]
    return same, different


def project_2d(embeddings: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project encodings to 2-D for a scatter plot.

    Args:
        embeddings: (N, D) encodings, N >= 3.
        method: "pca" (linear, keeps large distances) or "tsne" (non-linear, keeps
            neighbourhoods; distances between far clusters mean little).
        seed: random state of t-SNE.
    Returns:
        (N, 2) NumPy array.
    """
    check_embeddings(embeddings)
    check_choice(method, "method", PROJECTIONS)
    n = embeddings.shape[0]
    if n < 3:
        raise ValueError(f"a 2-D projection needs at least 3 points, got {n}.")
    points = embeddings.detach().cpu().double().numpy()
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(points)
    from sklearn.manifold import TSNE

    # t-SNE requires perplexity < N; 30 is the usual choice for larger sets.
    perplexity = min(30.0, (n - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def _new_axes():
    """Axes on a new Figure made without pyplot, so a notebook shows it once, as the cell's value."""
    from matplotlib.figure import Figure

    return Figure(figsize=(5.5, 4.2), layout="constrained").add_subplot()


def plot_embeddings(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    method: str = "pca",
    max_identities: int = 10,
    seed: int = 0,
    ax=None,
    title: str | None = None,
):
    """Scatter the encodings of a few identities in 2-D, one colour per identity.

    Args:
        embeddings: (N, D) encodings.
        labels: (N,) integer identities.
        method: "pca" or "tsne" (see project_2d).
        max_identities: plot the identities with the smallest ids, at most this many.
        seed: random state of t-SNE.
        ax: matplotlib Axes to draw on; None makes a new figure.
        title: axes title; None gives one naming the method.
    Returns:
        the matplotlib Figure (a notebook shows it when it is the cell's last value).
    """
    from matplotlib import colormaps

    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0]).cpu()
    check_whole_number(max_identities, "max_identities")
    shown = labels.unique()[:max_identities]
    keep = torch.isin(labels, shown)
    points = project_2d(embeddings.detach().cpu()[keep], method=method, seed=seed)
    ax = _new_axes() if ax is None else ax
    colours = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    for i, identity in enumerate(shown.tolist()):
        rows = (labels[keep] == identity).numpy()
        ax.scatter(points[rows, 0], points[rows, 1], s=14, color=colours(i % colours.N), label=str(identity))
    name = "PCA" if method == "pca" else "t-SNE"
    ax.set_xlabel(f"{name} axis 1 (arbitrary units)")
    ax.set_ylabel(f"{name} axis 2 (arbitrary units)")
    ax.set_title(title if title is not None else f"Encodings of {len(shown)} identities ({name})")
    if len(shown) <= 10:
        ax.legend(title="identity", fontsize="small", loc="best")
    return ax.figure


def plot_distance_histograms(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    metric: str = "squared_euclidean",
    alpha: float | None = None,
    bins: int = 50,
    ax=None,
    title: str | None = None,
):
    """Histograms of same-identity and different-identity distances on one axis.

    A good embedding separates the two humps; the overlap is where verification by a
    distance threshold makes mistakes.

    Args:
        embeddings: (N, D) encodings (a few thousand at most).
        labels: (N,) integer identities.
        metric: distance name.
        alpha: if given, mark the margin as a vertical line at x = alpha for scale.
        bins: histogram bins.
        ax: matplotlib Axes; None makes a new figure.
        title: axes title.
    Returns:
        the matplotlib Figure.
    """
    check_whole_number(bins, "bins")
    same, different = same_and_different_distances(embeddings, labels, metric=metric)
    ax = _new_axes() if ax is None else ax
    upper = float(torch.cat([same, different]).max()) if same.numel() + different.numel() else 1.0
    edges = np.linspace(0.0, max(upper, torch.finfo(torch.float32).eps), bins + 1)
    for name, distances in (("same", same), ("different", different)):
        label = f"{name} identity ({distances.numel()} pairs)"
        ax.hist(distances.cpu().numpy(), bins=edges, density=True, alpha=0.6, label=label)
    if alpha is not None:
        ax.axvline(alpha, color="black", linestyle="--", linewidth=1, label=f"margin alpha = {alpha}")
    ax.set_xlabel(f"{_METRIC_LABELS[metric]} between encodings")
    ax.set_ylabel("density (fraction of pairs per unit distance)")
    ax.set_title(title if title is not None else "Distances between pairs of pictures")
    ax.legend(fontsize="small")
    return ax.figure


def plot_history(history: list[dict], axes=None):
    """Three panels per epoch: loss and active fraction, mean distances, held-out metrics.

    Args:
        history: the list of per-epoch records returned by ``Trainer.fit``.
        axes: three matplotlib Axes side by side; None makes a new figure.
    Returns:
        the matplotlib Figure.
    """
    from matplotlib.figure import Figure

    if not isinstance(history, list) or not history or not all(isinstance(row, dict) for row in history):
        raise ValueError("history must be a non-empty list of per-epoch dicts, as returned by Trainer.fit.")
    if axes is None:
        axes = Figure(figsize=(12, 3.4), layout="constrained").subplots(1, 3)
    epochs = [row["epoch"] for row in history]

    def column(key):
        return [np.nan if row.get(key) is None else row[key] for row in history]

    loss_ax, distance_ax, metric_ax = axes
    loss_ax.plot(epochs, column("loss"), marker="o", label="training loss")
    loss_ax.plot(epochs, column("active_fraction"), marker="s", label="active triplet fraction")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss / fraction (no unit)")
    loss_ax.set_title("Loss and active triplets")
    distance_ax.plot(epochs, column("mean_d_ap"), marker="o", label="mean d(A,P)")
    distance_ax.plot(epochs, column("mean_d_an"), marker="s", label="mean d(A,N)")
    distance_ax.set_xlabel("epoch")
    distance_ax.set_ylabel("distance in the batch (loss metric)")
    distance_ax.set_title("Same vs different identity")
    for key, name in (("test_map_at_r", "MAP@R"), ("test_precision_at_1", "Precision@1")):
        metric_ax.plot(epochs, column(key), marker="o", label=f"held-out {name}")
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel("score (0 to 1)")
    metric_ax.set_title("Held-out identities")
    for ax in axes:
        ax.legend(fontsize="small")
    return loss_ax.figure
