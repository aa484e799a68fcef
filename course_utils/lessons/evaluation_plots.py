"""Figures of how good an embedding is (notebooks 06 and 07); the numbers come from ``course_utils.evaluation``.

Figures are made without pyplot, so a notebook shows each once, as the cell's value. Functions
with an ``ax`` argument draw on the Axes given (None: a new figure) and return its figure.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from course_utils._validate import check_choice, check_embeddings, check_labels, check_tensor
from course_utils.evaluation.recognition import (
    GallerySizeResult,
    equal_error_rate,
    roc_curve,
    threshold_at_far,
    threshold_summary,
)
from course_utils.evaluation.retrieval import same_and_different_distances

PROJECTIONS = ("pca", "tsne")
MAX_IDENTITIES = 10
BINS = 50


def _new_axes():
    return Figure(figsize=(5.5, 4.2), layout="constrained").add_subplot()


def project_2d(embeddings: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project (N, D) encodings, N >= 3, to a (N, 2) array for a scatter plot.

    method: "pca" (linear, keeps large distances) or "tsne" (non-linear, keeps neighbourhoods;
    distances between far clusters mean little).
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


def plot_embeddings(embeddings: torch.Tensor, labels: torch.Tensor, method: str = "pca", seed: int = 0, ax=None,
                    title: str | None = None):
    """Scatter (N, D) encodings of the (at most 10) smallest identity ids in 2-D (see project_2d), one colour each."""
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0]).cpu()
    shown = labels.unique()[:MAX_IDENTITIES]
    keep = torch.isin(labels, shown)
    points = project_2d(embeddings.detach().cpu()[keep], method=method, seed=seed)
    ax = _new_axes() if ax is None else ax
    for i, identity in enumerate(shown.tolist()):
        rows = (labels[keep] == identity).numpy()
        ax.scatter(points[rows, 0], points[rows, 1], s=14, color=colormaps["tab10"](i), label=str(identity))
    name = "PCA" if method == "pca" else "t-SNE"
    ax.set_xlabel(f"{name} axis 1 (arbitrary units)")
    ax.set_ylabel(f"{name} axis 2 (arbitrary units)")
    ax.set_title(title if title is not None else f"Encodings of {len(shown)} identities ({name})")
    ax.legend(title="identity", fontsize="small", loc="best")
    return ax.figure


def _histograms(ax, groups, upper: float) -> None:
    """One density histogram per (label, distances) on shared bins from 0 to upper."""
    edges = np.linspace(0.0, max(upper, torch.finfo(torch.float32).eps), BINS + 1)
    for label, distances in groups:
        ax.hist(distances.detach().cpu().double().numpy(), bins=edges, density=True, alpha=0.6, label=label)
    ax.set_ylabel("density (fraction of pairs per unit distance)")


def plot_distance_histograms(embeddings: torch.Tensor, labels: torch.Tensor, alpha: float | None = None, ax=None,
                             title: str | None = None):
    """Histograms of the squared distances between same-identity and different-identity encodings.

    embeddings: (N, D), N a few thousand at most; labels: (N,). alpha, if given, is marked for scale.
    """
    same, different = same_and_different_distances(embeddings, labels)
    ax = _new_axes() if ax is None else ax
    upper = float(torch.cat([same, different]).max()) if same.numel() + different.numel() else 1.0
    _histograms(ax, [(f"same identity ({same.numel()} pairs)", same),
                     (f"different identity ({different.numel()} pairs)", different)], upper)
    if alpha is not None:
        ax.axvline(alpha, color="black", linestyle="--", linewidth=1, label=f"margin alpha = {alpha}")
    ax.set_xlabel("squared Euclidean distance between encodings")
    ax.set_title(title if title is not None else "Distances between pairs of pictures")
    ax.legend(fontsize="small")
    return ax.figure


def plot_history(history: list[dict]) -> Figure:
    """Per epoch of ``Trainer.fit``'s records: loss and active fraction, mean distances, held-out metrics."""
    if not isinstance(history, list) or not history or not all(isinstance(row, dict) for row in history):
        raise ValueError("history must be a non-empty list of per-epoch dicts, as returned by Trainer.fit.")
    figure = Figure(figsize=(12, 3.4), layout="constrained")
    epochs = [row["epoch"] for row in history]
    panels = (
        ("loss / fraction (no unit)", "Loss and active triplets",
         (("loss", "training loss", "o"), ("active_fraction", "active triplet fraction", "s"))),
        ("distance in the batch (loss metric)", "Same vs different identity",
         (("mean_d_ap", "mean d(A,P)", "o"), ("mean_d_an", "mean d(A,N)", "s"))),
        ("score (0 to 1)", "Held-out identities",
         (("test_map_at_r", "held-out MAP@R", "o"), ("test_precision_at_1", "held-out Precision@1", "o"))),
    )  # fmt: skip
    for ax, (ylabel, title, lines) in zip(figure.subplots(1, 3), panels):
        for key, label, marker in lines:
            ax.plot(epochs, [np.nan if row.get(key) is None else row[key] for row in history], marker=marker,
                    label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize="small")
    return figure


def plot_roc(same_distances: torch.Tensor, different_distances: torch.Tensor, far: float | None = None) -> Figure:
    """The ROC curve of (S,) same-person and (N,) different-person distances; `threshold_at_far` marked if far is given.

    The false-accept axis is logarithmic, from one pair in N to 100 %, so the low rates applications
    choose (1 %, 0.1 %) are not squeezed against the left edge; rate-0 thresholds sit on that edge.
    """
    curve = roc_curve(same_distances, different_distances)
    eer = equal_error_rate(same_distances, different_distances)
    smallest = 1 / len(different_distances)
    ax = _new_axes()
    ax.plot(curve.false_accept_rate.clamp_min(smallest).numpy(), curve.true_accept_rate.numpy(),
            label="verification by distance")
    chance = np.logspace(np.log10(smallest), 0, 200)
    ax.plot(chance, chance, color="grey", linestyle=":", label="chance (accept at random)")
    ax.plot([eer.rate], [1 - eer.rate], "o", label=f"equal error rate {100 * eer.rate:.1f} %")
    if far is not None:
        point = threshold_at_far(same_distances, different_distances, far)
        ax.plot([max(point.false_accept_rate, smallest)], [point.true_accept_rate], "s",
                label=f"TAR {100 * point.true_accept_rate:.1f} % at FAR <= {100 * far:g} %")
    percent = FuncFormatter(lambda value, _: f"{100 * value:g} %")
    ax.set_xscale("log")
    ax.set_xlim(smallest, 1)
    ax.set_xlabel("false-accept rate (different-person pairs accepted, log scale)")
    ax.xaxis.set_major_formatter(percent)
    ax.yaxis.set_major_formatter(percent)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("true-accept rate (same-person pairs accepted)")
    ax.set_title("ROC of verification on held-out pairs")
    ax.grid(True, which="major", alpha=0.3)
    # On the log axis the curve hugs the top and the chance line the bottom: the middle right is free.
    ax.legend(fontsize="small", loc="center right")
    return ax.figure


def plot_threshold(same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float) -> Figure:
    """The (S,) same-person and (N,) different-person distance histograms, the threshold (accepted
    at or below) as a vertical line and its errors in the title."""
    summary = threshold_summary(same_distances, different_distances, threshold)
    groups = [(f"same person ({len(same_distances)} pairs)", same_distances),
              (f"different people ({len(different_distances)} pairs)", different_distances)]  # fmt: skip
    upper = max(float(torch.cat([same_distances.double(), different_distances.double()]).max()), summary.threshold)
    ax = _new_axes()
    _histograms(ax, groups, upper)
    ax.axvline(summary.threshold, color="black", linestyle="--", label=f"threshold {summary.threshold:.2f}")
    ax.set_xlabel("squared Euclidean distance d between encodings")
    ax.set_title(summary.text, fontsize="small")
    ax.legend(fontsize="small")
    return ax.figure


def plot_accuracy_vs_gallery_size(results: dict) -> Figure:
    """Accuracy against the number of enrolled people, one line per {name: accuracy_vs_gallery_size(...)}."""
    if not isinstance(results, dict) or not results:
        raise TypeError("results must be a non-empty dict {name: accuracy_vs_gallery_size(...)}.")
    ax = _new_axes()
    for name, rows in results.items():
        if not rows or not all(isinstance(row, GallerySizeResult) for row in rows):
            raise TypeError(f"results[{name!r}] must be the list returned by accuracy_vs_gallery_size.")
        ax.plot([row.size for row in rows], [100 * row.accuracy for row in rows], "o-", label=name)
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("people enrolled, one picture each (log scale)")
    ax.set_ylabel("identification accuracy (%)")
    ax.set_title("one-shot identification as the gallery grows")
    ax.legend(fontsize="small")
    return ax.figure


def _show_picture(ax, picture: torch.Tensor) -> None:
    """One (C, H, W) picture in [0, 1], C = 1 (grey) or 3, without axis ticks."""
    picture = picture.detach().cpu().float().clamp(0, 1)
    if picture.shape[0] == 1:
        ax.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(picture.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _check_pictures(pictures, name: str, count: int | None = None) -> int:
    """The number of (N, C, H, W) float pictures, C = 1 or 3 (and N == count when given)."""
    check_tensor(pictures, name)
    if pictures.dim() != 4 or pictures.shape[1] not in (1, 3) or not pictures.is_floating_point():
        raise ValueError(f"{name} must be float pictures of shape (N, C, H, W) with C = 1 or 3, "
                         f"got {pictures.dtype} {tuple(pictures.shape)}.")  # fmt: skip
    if count is not None and len(pictures) != count:
        raise ValueError(f"{name} has {len(pictures)} pictures; {count} are needed (one per query).")
    return len(pictures)


def _check_marks(distances, flags, flags_name: str, count: int) -> None:
    check_tensor(distances, "distances")
    check_tensor(flags, flags_name)
    if distances.shape != (count,) or flags.shape != (count,) or flags.dtype != torch.bool:
        raise ValueError(f"distances must be a float tensor and {flags_name} a bool tensor, each of shape ({count},).")


def _mark(ax, distance, good: bool, yes: str, no: str) -> None:
    """The distance, and a green tick with ``yes`` or a red cross with ``no``, under a picture."""
    mark = f"\u2713 {yes}" if good else f"\u2717 {no}"
    ax.set_xlabel(f"d = {float(distance):.2f}\n{mark}", color="tab:green" if good else "tab:red")


def plot_hits_and_misses(query_pictures: torch.Tensor, matched_pictures: torch.Tensor, distances: torch.Tensor,
                         hits: torch.Tensor) -> Figure:
    """One column per query: the picture above the enrolled picture it matched, with the distance and a tick or cross.

    query_pictures, matched_pictures: (Q, C, H, W) in [0, 1]; distances: (Q,) squared; hits: (Q,) bool,
    True when the match is the query's own person.
    """
    count = _check_pictures(query_pictures, "query_pictures")
    _check_pictures(matched_pictures, "matched_pictures", count)
    _check_marks(distances, hits, "hits", count)
    figure = Figure(figsize=(1.3 * count, 3.2), layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    for column in range(count):
        _show_picture(axes[0][column], query_pictures[column])
        _show_picture(axes[1][column], matched_pictures[column])
        _mark(axes[1][column], distances[column], bool(hits[column]), "right", "wrong")
    axes[0][0].set_ylabel("query")
    axes[1][0].set_ylabel("nearest\nenrolled")
    figure.suptitle("identification: each query and the enrolled picture it matched")
    return figure


def plot_retrieval(query_picture: torch.Tensor, retrieved_pictures: torch.Tensor, distances: torch.Tensor,
                   relevant: torch.Tensor) -> Figure:
    """In one row, a (C, H, W) query picture, then the (k, C, H, W) pictures a search returned, nearest first.

    distances: (k,) squared distances to the query; relevant: (k,) bool, True for the query's own person.
    """
    check_tensor(query_picture, "query_picture")
    _check_pictures(query_picture.unsqueeze(0), "query_picture")
    count = _check_pictures(retrieved_pictures, "retrieved_pictures")
    _check_marks(distances, relevant, "relevant", count)
    figure = Figure(figsize=(1.4 * (count + 1), 2.0), layout="constrained")
    axes = figure.subplots(1, count + 1, squeeze=False)[0]
    _show_picture(axes[0], query_picture)
    axes[0].set_xlabel("query")
    for rank in range(count):
        _show_picture(axes[rank + 1], retrieved_pictures[rank])
        axes[rank + 1].set_title(f"#{rank + 1}", fontsize="small")
        _mark(axes[rank + 1], distances[rank], bool(relevant[rank]), "same person", "other person")
    figure.suptitle("retrieval: the nearest pictures of the gallery, nearest first")
    return figure
