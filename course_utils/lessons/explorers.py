"""The explorers of notebooks 05 and 07: the kinds of a batch's triplets, and a verification threshold.

Notebooks are stored without widget state, so they show the static figure of the default
slider position beside each widget.
"""
from __future__ import annotations

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_utils._validate import check_alpha
from course_utils.evaluation.recognition import threshold_summary
from course_utils.lessons.evaluation_plots import plot_threshold
from course_utils.lessons.triplet_kinds import KIND_NAMES, classify_triplets, triplet_kind_counts
from course_utils.lessons.widgets import ALPHA_MAX, SliderExplorer, float_slider

KIND_COLOURS = ("tab:green", "tab:orange", "tab:red")
# On the unit sphere the squared Euclidean distance lies in [0, 4]; so does the slider.
THRESHOLD_MAX = 4.0


def draw_triplet_kinds(ax: Axes, d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> None:
    """Scatter d(A,N) against d(A,P) of (T,) triplets, coloured easy / semi-hard / hard at margin alpha.

    The lines d(A,N) = d(A,P) (below: hard) and d(A,N) = d(A,P) + alpha (above: easy) bound the
    margin band of the semi-hard triplets.
    """
    kinds = classify_triplets(d_ap, d_an, alpha)
    counts = triplet_kind_counts(d_ap, d_an, alpha)
    top = 1.05 * float(torch.cat([d_ap, d_an, d_ap + alpha]).max())
    line = torch.tensor([0.0, top])
    ax.fill_between(line, line, line + alpha, color="tab:orange", alpha=0.12, label=f"margin band, α = {alpha:.2f}")
    ax.plot(line, line, color="black", linewidth=1, label="d(A,N) = d(A,P)")
    ax.plot(line, line + alpha, color="black", linewidth=1, linestyle="--", label="d(A,N) = d(A,P) + α")
    for kind, (name, colour) in enumerate(zip(KIND_NAMES, KIND_COLOURS)):
        chosen = kinds == kind
        number = (counts.easy, counts.semihard, counts.hard)[kind]
        ax.scatter(d_ap[chosen], d_an[chosen], s=4, color=colour, alpha=0.5, label=f"{name}: {number}")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("d(A,P), squared distance")
    ax.set_ylabel("d(A,N), squared distance")
    ax.set_title(counts.text, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", markerscale=3)


def triplet_kinds_figure(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> Figure:
    """`draw_triplet_kinds` on a figure of its own."""
    figure = Figure(figsize=(5.0, 4.6))
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    draw_triplet_kinds(figure.add_subplot(), d_ap, d_an, alpha)
    return figure


class MiningExplorer(SliderExplorer):
    """An "alpha" slider (0 .. 1) recolouring the (T,) triplets of a batch; the label counts each kind."""

    def __init__(self, d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float = 0.2):
        triplet_kind_counts(d_ap, d_an, alpha)  # validates the inputs before any widget is built
        if check_alpha(alpha) > ALPHA_MAX:
            raise ValueError(f"the slider goes up to alpha = {ALPHA_MAX}; start inside that range.")
        super().__init__(float_slider("alpha", alpha, ALPHA_MAX, width=None),
                         lambda a: triplet_kind_counts(d_ap, d_an, a).text,
                         lambda a: triplet_kinds_figure(d_ap, d_an, a))


class ThresholdExplorer(SliderExplorer):
    """A "threshold" slider (0 .. 4) over held-out (S,) same-person and (N,) different-person distances.

    The label is `recognition.ThresholdSummary.text` (false accepts and false rejects), the
    picture `evaluation_plots.plot_threshold`.
    """

    def __init__(self, same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float = 1.0):
        start = threshold_summary(same_distances, different_distances, threshold)  # validates the inputs
        if start.threshold > THRESHOLD_MAX:
            raise ValueError(f"the slider goes up to threshold = {THRESHOLD_MAX}; start inside that range.")
        super().__init__(float_slider("threshold", start.threshold, THRESHOLD_MAX),
                         lambda t: threshold_summary(same_distances, different_distances, t).text,
                         lambda t: plot_threshold(same_distances, different_distances, t))
