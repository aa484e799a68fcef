"""Figures for the first notebooks: distance matrices, the unit sphere, the toy descent.

Figures are made without pyplot, so a notebook shows each once and no global list keeps it alive.
"""
from __future__ import annotations

import math

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_utils._validate import check_embeddings, check_labels, check_tensor
from course_utils.core.distances import cosine_distance, euclidean, squared_euclidean
from course_utils.lessons.toy_training import ToyHistory, check_history

WIDE = (9.0, 3.6)
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def plot_distance_matrix(dist: torch.Tensor, labels: torch.Tensor, title: str = "d(i, j), squared Euclidean") -> Figure:
    """Draw a (n, n) distance matrix as an image, rows and columns grouped by the (n,) identities.

    Same-identity pictures become neighbours (a stable sort by label) and thin lines separate
    the identities, so small distances show up as dark blocks on the diagonal.
    """
    check_tensor(dist, "dist")
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square (n, n) matrix, got shape {tuple(dist.shape)}.")
    labels = check_labels(labels, dist.shape[0])
    order = torch.argsort(labels, stable=True)
    dist, labels = dist.detach().cpu()[order][:, order], labels.cpu()[order]
    figure = Figure(figsize=(5.0, 4.2))
    ax = figure.add_subplot()
    image = ax.imshow(dist.double().numpy(), cmap="viridis", vmin=0)
    figure.colorbar(image, ax=ax, label="distance d (squared Euclidean, encoding units²)")
    for edge in (torch.nonzero(labels[1:] != labels[:-1]).flatten() + 0.5).tolist():
        ax.axhline(edge, color="white", linewidth=1)
        ax.axvline(edge, color="white", linewidth=1)
    names = [str(v) for v in labels.tolist()]
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("picture j (tick = its identity)")
    ax.set_ylabel("picture i (tick = its identity)")
    ax.set_title(title)
    return figure


def plot_unit_sphere_distances(anchor: torch.Tensor, others: torch.Tensor) -> Figure:
    """Distances between a (d,) unit vector and (n, d) unit vectors, measured and against the formula.

    Left: ||a - b||^2 against 2 - 2 cos(a, b) (on the unit sphere, the diagonal). Right: squared
    Euclidean, Euclidean and cosine distance as functions of the angle (curves: formulas; dots:
    measured with course_utils.core.distances).
    """
    check_embeddings(others, "others")
    check_tensor(anchor, "anchor")
    if anchor.shape != others.shape[1:]:
        raise ValueError(
            f"anchor must have shape ({others.shape[1]},) like one row of others, got {tuple(anchor.shape)}."
        )
    lengths = torch.cat([anchor.norm().view(1), others.norm(dim=1)]).double()
    if not torch.allclose(lengths, torch.ones_like(lengths), atol=1e-5):
        raise ValueError(
            "anchor and others must be unit vectors; normalise them with torch.nn.functional.normalize(x, dim=-1)."
        )
    anchors = anchor.expand_as(others)
    cosine = (1 - cosine_distance(anchors, others)).double()
    squared = squared_euclidean(anchors, others).double()
    plain = euclidean(anchors, others).double()
    angle = torch.rad2deg(torch.acos(cosine.clamp(-1, 1)))

    figure = Figure(figsize=WIDE)
    left, right = figure.subplots(1, 2)
    left.plot([0, 4], [0, 4], color="grey", linewidth=1, label="y = x")
    left.scatter((2 - 2 * cosine).numpy(), squared.numpy(), s=12, label="measured pairs")
    left.set_xlabel("2 - 2 cos(a, b)")
    left.set_ylabel("||a - b||² (measured)")
    left.set_title("unit vectors: ||a - b||² = 2 - 2 cos")
    left.legend(loc="upper left")

    theta = torch.linspace(0, math.pi, 181, dtype=torch.float64)
    curves = (
        ("squared Euclidean 2 - 2cos", 2 - 2 * torch.cos(theta), squared, "tab:blue"),
        ("Euclidean √(2 - 2cos)", torch.sqrt(2 - 2 * torch.cos(theta)), plain, "tab:orange"),
        ("cosine distance 1 - cos", 1 - torch.cos(theta), 1 - cosine, "tab:green"),
    )
    for name, formula, measured, colour in curves:
        right.plot(torch.rad2deg(theta).numpy(), formula.numpy(), color=colour, label=name)
        right.scatter(angle.numpy(), measured.numpy(), color=colour, s=8)
    right.set_xlabel("angle between a and b (degrees)")
    right.set_ylabel("distance (unitless, unit vectors)")
    right.set_xlim(0, 180)
    right.set_ylim(0, 4.1)
    right.set_title("curves: formula, dots: measured")
    right.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def draw_toy_step(ax: Axes, history: ToyHistory, step: int) -> None:
    """Draw the toy points at one step (0 .. history.steps), coloured by identity, with arrows where
    the next step moves each point (-learning_rate x gradient, magnified)."""
    check_history(history).check_step(step)
    points = history.points[step].numpy()
    everything = history.points.reshape(-1, 2)
    low, high = everything.min(dim=0).values, everything.max(dim=0).values
    pad = 0.1 * float((high - low).max())
    if history.cost[step] > 0:
        update = -history.learning_rate * history.gradients[step]
        # Each step moves a point only a little; magnify so the direction is visible.
        scale = 0.3 * float((high - low).max()) / float(update.norm(dim=1).max())
        ax.quiver(points[:, 0], points[:, 1], (scale * update[:, 0]).numpy(), (scale * update[:, 1]).numpy(),
                  angles="xy", scale_units="xy", scale=1, color="grey", width=0.004)
    for identity in history.labels.unique().tolist():
        rows = (history.labels == identity).numpy()
        ax.scatter(points[rows, 0], points[rows, 1], s=45, color=COLOURS[identity % len(COLOURS)],
                   label=f"identity {identity}", zorder=3)
    ax.set_xlim(float(low[0]) - pad, float(high[0]) + pad)
    ax.set_ylim(float(low[1]) - pad, float(high[1]) + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("encoding coordinate 1")
    ax.set_ylabel("encoding coordinate 2")
    ax.set_title(f"step {step}: J = {float(history.cost[step]):.4f}\n"
                 f"{int(history.num_active[step])} of {history.num_triplets} triplets violated", fontsize=9)


def plot_toy_snapshots(history: ToyHistory, steps: list[int]) -> Figure:
    """Side-by-side pictures of the toy points at a few steps, on shared axes so the spread can be compared."""
    if not steps:
        raise ValueError("give at least one step to draw, for example [0, history.steps].")
    figure = Figure(figsize=(3.4 * len(steps) + 1.2, 3.2), layout="constrained")
    axes = figure.subplots(1, len(steps), squeeze=False, sharex=True, sharey=True)[0]
    for ax, step in zip(axes, steps):
        draw_toy_step(ax, history, step)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return figure


def _history_panels(history: ToyHistory):
    """The step numbers 0 .. steps of a validated history, a wide figure and its two panels."""
    steps = torch.arange(check_history(history).steps + 1).numpy()
    figure = Figure(figsize=WIDE)
    return steps, figure, *figure.subplots(1, 2)


def plot_cost_history(history: ToyHistory) -> Figure:
    """J over the gradient steps (left) and the mean d(A,P), d(A,N) over the triplets (right)."""
    steps, figure, left, right = _history_panels(history)
    left.plot(steps, history.cost.numpy(), marker=".", color="black")
    left.set_xlabel("gradient step")
    left.set_ylabel("cost J = Σ L (squared-distance units)")
    left.set_title(f"J reaches {float(history.cost[-1]):.4f} after {history.steps} steps")
    right.plot(steps, history.mean_positive_distance.numpy(), color="tab:blue", label="mean d(A,P): same person")
    right.plot(steps, history.mean_negative_distance.numpy(), color="tab:red", label="mean d(A,N): different persons")
    right.set_xlabel("gradient step")
    right.set_ylabel("squared distance")
    right.set_title("positives pulled in, negatives pushed out")
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_reductions(history: ToyHistory) -> Figure:
    """The mean over all triplets and the mean over the non-zero losses (left), and the share of
    triplets with a positive loss (right), along the toy descent."""
    steps, figure, left, right = _history_panels(history)
    left.plot(steps, history.mean_cost.numpy(), color="tab:blue", label="mean over all m triplets, J / m")
    left.plot(steps, history.mean_active_cost.numpy(), color="tab:red", label="mean over the non-zero losses")
    left.set_xlabel("gradient step")
    left.set_ylabel("loss (squared-distance units)")
    left.set_title(f"two means (the sum J = {history.num_triplets} x the first)", fontsize=10)
    left.legend(fontsize=8)
    right.plot(steps, (100 * history.num_active / history.num_triplets).numpy(), color="tab:purple")
    right.set_xlabel("gradient step")
    right.set_ylabel("triplets with loss > 0 (%)")
    right.set_ylim(0, 105)
    right.set_title(f"active triplets (out of m = {history.num_triplets})")
    figure.tight_layout()
    return figure
