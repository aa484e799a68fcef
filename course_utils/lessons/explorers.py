"""The explorers of notebooks 05 and 07: the kinds of a batch's triplets, and a verification threshold."""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from course_utils.evaluation.recognition import threshold_summary
from course_utils.lessons.evaluation_plots import plot_threshold
from course_utils.lessons.triplet_kinds import KIND_NAMES, classify_triplets, triplet_kind_counts
from course_utils.lessons.widgets import ALPHA_MAX, SliderExplorer, float_slider

THRESHOLD_MAX = 4.0  # the largest squared Euclidean distance between unit vectors


def triplet_kinds_figure(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> Figure:
    """d(A,N) against d(A,P) of (T,) triplets, coloured easy / semi-hard / hard, with the margin band at alpha."""
    kinds = classify_triplets(d_ap, d_an, alpha)
    counts = triplet_kind_counts(d_ap, d_an, alpha)
    top = 1.05 * float(torch.cat([d_ap, d_an, d_ap + alpha]).max())
    line = torch.tensor([0.0, top])
    ax = Figure(figsize=(5.0, 4.6), layout="constrained").add_subplot()
    ax.fill_between(line, line, line + alpha, color="tab:orange", alpha=0.12, label=f"margin band, α = {alpha:.2f}")
    ax.plot(line, line, color="black", linewidth=1, label="d(A,N) = d(A,P)")
    ax.plot(line, line + alpha, color="black", linewidth=1, linestyle="--", label="d(A,N) = d(A,P) + α")
    for kind, (name, colour) in enumerate(zip(KIND_NAMES, ("tab:green", "tab:orange", "tab:red"))):
        ax.scatter(d_ap[kinds == kind], d_an[kinds == kind], s=4, color=colour, alpha=0.5,
                   label=f"{name}: {counts[kind + 1]}")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="d(A,P), squared distance", ylabel="d(A,N), squared distance")
    ax.set_title(counts.text, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", markerscale=3)
    return ax.figure


class MiningExplorer(SliderExplorer):
    """An "alpha" slider (0 .. 1) recolouring the (T,) triplets of a batch; the label counts each kind."""

    def __init__(self, d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float = 0.2):
        triplet_kind_counts(d_ap, d_an, alpha)  # validates the inputs before any widget is built
        super().__init__([float_slider("alpha", alpha, ALPHA_MAX)], lambda a: triplet_kind_counts(d_ap, d_an, a).text,
                         lambda a: triplet_kinds_figure(d_ap, d_an, a))


class ThresholdExplorer(SliderExplorer):
    """A "threshold" slider (0 .. 4) over (S,) same-person and (N,) different-person distances, and their errors."""

    def __init__(self, same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float = 1.0):
        start = threshold_summary(same_distances, different_distances, threshold)  # validates the inputs
        super().__init__([float_slider("threshold", start.threshold, THRESHOLD_MAX)],
                         lambda t: threshold_summary(same_distances, different_distances, t).text,
                         lambda t: plot_threshold(same_distances, different_distances, t))
