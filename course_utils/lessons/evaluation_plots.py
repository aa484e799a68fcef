"""Figures of how good an embedding is (notebooks 06 and 07); the numbers come from ``course_utils.evaluation``.

Functions with an ``ax`` argument draw on the Axes given (None: a new figure) and return its figure.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from course_utils._validate import check_choice, check_embeddings, check_labels, check_tensor
from course_utils.lessons.plots import plot_curves
from course_utils.evaluation.recognition import (GallerySizeResult, equal_error_rate, roc_curve, threshold_at_far,
                                                 threshold_summary)
from course_utils.evaluation.retrieval import same_and_different_distances

PROJECTIONS = ("pca", "tsne")


def _new_axes():
    return Figure(figsize=(5.5, 4.2), layout="constrained").add_subplot()


def plot_embeddings(embeddings: torch.Tensor, labels: torch.Tensor, method: str = "pca", seed: int = 0, ax=None,
                    title: str | None = None):
    """Scatter (N, D) encodings of the 10 smallest identity ids in 2-D, one colour each.

    method: "pca" (linear, keeps large distances) or "tsne" (keeps neighbourhoods, not far distances).
    """
    check_embeddings(embeddings)
    check_choice(method, "method", PROJECTIONS)
    labels = check_labels(labels, embeddings.shape[0]).cpu()
    shown = labels.unique()[:10]
    keep = torch.isin(labels, shown)
    points = embeddings.detach().cpu()[keep].double().numpy()
    if len(points) < 3:
        raise ValueError(f"a 2-D projection needs at least 3 points, got {len(points)}.")
    if method == "pca":
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=seed).fit_transform(points)
    else:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(points) - 1) / 3)  # t-SNE needs perplexity < N
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    ax = _new_axes() if ax is None else ax
    for i, identity in enumerate(shown.tolist()):
        rows = (labels[keep] == identity).numpy()
        ax.scatter(points[rows, 0], points[rows, 1], s=14, color=colormaps["tab10"](i), label=str(identity))
    name = "PCA" if method == "pca" else "t-SNE"
    ax.set(xlabel=f"{name} axis 1 (arbitrary units)", ylabel=f"{name} axis 2 (arbitrary units)",
           title=title if title is not None else f"Encodings of {len(shown)} identities ({name})")
    ax.legend(title="identity", fontsize="small", loc="best")
    return ax.figure


def _histograms(ax, groups, line: float | None, line_label: str, title: str):
    """One density histogram per (label, distances) on shared bins, a dashed vertical line at `line` if given."""
    values = [distances.detach().cpu().double() for _, distances in groups]
    upper = max([float(v.max()) for v in values if v.numel()] + [line or 0.0, torch.finfo(torch.float32).eps])
    for (label, _), distances in zip(groups, values):
        ax.hist(distances.numpy(), bins=np.linspace(0.0, upper, 51), density=True, alpha=0.6, label=label)
    if line is not None:
        ax.axvline(line, color="black", linestyle="--", linewidth=1, label=line_label)
    ax.set(xlabel="squared Euclidean distance between encodings", title=title,
           ylabel="density (fraction of pairs per unit distance)")
    ax.legend(fontsize="small")
    return ax.figure


def plot_distance_histograms(embeddings: torch.Tensor, labels: torch.Tensor, alpha: float | None = None, ax=None,
                             title: str | None = None):
    """Histograms of the squared distances between same- and different-identity (N, D) encodings, alpha marked."""
    same, different = same_and_different_distances(embeddings, labels)
    return _histograms(_new_axes() if ax is None else ax, [(f"same identity ({same.numel()} pairs)", same),
                       (f"different identity ({different.numel()} pairs)", different)],
                       alpha, f"margin alpha = {alpha}", title or "Distances between pairs of pictures")


def plot_history(history: list[dict]) -> Figure:
    """Per epoch of ``Trainer.fit``'s records: loss and active fraction, mean distances, held-out metrics."""
    if not isinstance(history, list) or not history or not all(isinstance(row, dict) for row in history):
        raise ValueError("history must be a non-empty list of per-epoch dicts, as returned by Trainer.fit.")
    panels = {"loss and active fraction": ("loss", "active_fraction"), "batch distances": ("mean_d_ap", "mean_d_an"),
              "held-out score (0 to 1)": ("test_map_at_r", "test_precision_at_1")}
    epochs = [row["epoch"] for row in history]
    return plot_curves({name: {key: (epochs, [row.get(key) for row in history]) for key in keys}
                        for name, keys in panels.items()}, xlabel="epoch")


def plot_roc(same_distances: torch.Tensor, different_distances: torch.Tensor, far: float | None = None) -> Figure:
    """The ROC of (S,) same-person and (N,) different-person distances, `threshold_at_far` marked if far is given.

    The false-accept axis is logarithmic from one pair in N, so low rates (1 %, 0.1 %) are not squeezed.
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
    ax.set(xscale="log", xlim=(smallest, 1), ylim=(0, 1.02),
           xlabel="false-accept rate (different-person pairs accepted, log scale)",
           ylabel="true-accept rate (same-person pairs accepted)", title="ROC of verification on held-out pairs")
    for axis in (ax.xaxis, ax.yaxis):  # after the log scale, which sets its own
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:g} %"))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="center right")  # on the log axis the middle right is free
    return ax.figure


def plot_threshold(same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float) -> Figure:
    """The (S,) same-person and (N,) different-person distance histograms, the threshold and its errors."""
    summary = threshold_summary(same_distances, different_distances, threshold)
    groups = [(f"same person ({len(same_distances)} pairs)", same_distances),
              (f"different people ({len(different_distances)} pairs)", different_distances)]  # fmt: skip
    return _histograms(_new_axes(), groups, summary.threshold, f"threshold {summary.threshold:.2f}", summary.text)


def plot_accuracy_vs_gallery_size(results: dict) -> Figure:
    """Accuracy against the number of enrolled people, one line per {name: accuracy_vs_gallery_size(...)}."""
    if not isinstance(results, dict) or not results or not all(
            rows and all(isinstance(row, GallerySizeResult) for row in rows) for rows in results.values()):
        raise TypeError("results must be a non-empty dict {name: the list accuracy_vs_gallery_size returns}.")
    ax = _new_axes()
    for name, rows in results.items():
        ax.plot([row.size for row in rows], [100 * row.accuracy for row in rows], "o-", label=name)
    ax.set(xscale="log", ylim=(0, 100), xlabel="people enrolled, one picture each (log scale)",
           ylabel="identification accuracy (%)", title="one-shot identification as the gallery grows")
    ax.legend(fontsize="small")
    return ax.figure


def _picture_grid(rows: list[list[torch.Tensor]], marks, row_names: list[str], title: str) -> Figure:
    """Rows of (C, H, W) pictures in [0, 1]; under each of the last len(marks) pictures of the last row its
    (distance, good, yes, no) mark: the distance and a green tick with ``yes`` or a red cross with ``no``."""
    figure = Figure(figsize=(1.4 * len(rows[-1]), 1.2 + 1.0 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(rows[-1]), squeeze=False)
    for ax, picture in ((ax, p) for row_axes, row in zip(axes, rows) for ax, p in zip(row_axes, row)):
        picture = picture.detach().cpu().float().clamp(0, 1)
        ax.imshow(picture.permute(1, 2, 0).squeeze(2).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
    for ax, (distance, good, yes, no) in zip(axes[-1][-len(marks):], marks):
        mark = f"\u2713 {yes}" if good else f"\u2717 {no}"
        ax.set_xlabel(f"d = {float(distance):.2f}\n{mark}", color="tab:green" if good else "tab:red")
    for row_axes, name in zip(axes, row_names):
        row_axes[0].set_ylabel(name)
    figure.suptitle(title)
    return figure


def _check_pictures(pictures, name: str, distances, flags, flags_name: str) -> int:
    """The number N of (N, C, H, W) float pictures, C = 1 or 3, with (N,) distances and (N,) bool flags."""
    for value, value_name in ((pictures, name), (distances, "distances"), (flags, flags_name)):
        check_tensor(value, value_name)
    if pictures.dim() != 4 or pictures.shape[1] not in (1, 3) or not pictures.is_floating_point():
        raise ValueError(f"{name} must be float pictures of shape (N, C, H, W) with C = 1 or 3, "
                         f"got {pictures.dtype} {tuple(pictures.shape)}.")  # fmt: skip
    count = len(pictures)
    if distances.shape != (count,) or flags.shape != (count,) or flags.dtype != torch.bool:
        raise ValueError(f"distances must be a float tensor and {flags_name} a bool tensor, each of shape ({count},).")
    return count


def plot_hits_and_misses(query_pictures: torch.Tensor, matched_pictures: torch.Tensor, distances: torch.Tensor,
                         hits: torch.Tensor) -> Figure:
    """One column per query: the picture above the enrolled picture it matched, with the distance and a tick or cross.

    query_pictures, matched_pictures: (Q, C, H, W) in [0, 1]; distances: (Q,) squared; hits: (Q,) bool.
    """
    count = _check_pictures(query_pictures, "query_pictures", distances, hits, "hits")
    if check_tensor(matched_pictures, "matched_pictures").shape != query_pictures.shape:
        raise ValueError(f"matched_pictures must have the shape {tuple(query_pictures.shape)}: one per query.")
    marks = [(d, bool(hit), "right", "wrong") for d, hit in zip(distances, hits)]
    return _picture_grid([list(query_pictures), list(matched_pictures)], marks, ["query", "nearest\nenrolled"],
                         "identification: each query and the enrolled picture it matched")


def plot_retrieval(query_picture: torch.Tensor, retrieved_pictures: torch.Tensor, distances: torch.Tensor,
                   relevant: torch.Tensor) -> Figure:
    """A (C, H, W) query picture, then the (k, C, H, W) pictures a search returned, nearest first, in one row.

    distances: (k,) squared distances to the query; relevant: (k,) bool, True for the query's own person.
    """
    _check_pictures(retrieved_pictures, "retrieved_pictures", distances, relevant, "relevant")
    check_tensor(query_picture, "query_picture")
    if query_picture.shape != retrieved_pictures.shape[1:]:
        raise ValueError(f"query_picture must have shape {tuple(retrieved_pictures.shape[1:])} like one retrieved.")
    marks = [(d, bool(good), "same person", "other person") for d, good in zip(distances, relevant)]
    return _picture_grid([[query_picture, *retrieved_pictures]], marks, ["query"],
                         "retrieval: the nearest pictures of the gallery, nearest first")
