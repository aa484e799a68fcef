"""Interactive explorers: sliders that recompute a tested function and redraw its figure."""
from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import NamedTuple

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from course_utils._validate import check_alpha, check_nonnegative
from course_utils.lessons.plots import plot_toy_snapshots
from course_utils.lessons.toy_training import ToyHistory, check_history

ALPHA_MAX = 1.0
DISTANCE_MAX = 2.0


class MarginState(NamedTuple):
    """One triplet: violation = d(A,P) - d(A,N) + alpha, loss = max(violation, 0), margin_met up to round-off."""

    alpha: float
    d_ap: float
    d_an: float
    violation: float
    loss: float
    margin_met: bool

    @property
    def text(self) -> str:  # for example "loss = 0.1900, verdict: violated by 0.1900"
        verdict = "margin met" if self.margin_met else f"violated by {self.violation:.4f}"
        return f"loss = {self.loss:.4f}, verdict: {verdict}"


def margin_state(alpha: float, d_ap: float, d_an: float) -> MarginState:
    """Loss and verdict of one triplet from its distances d_ap, d_an >= 0 and the margin alpha >= 0."""
    alpha = check_alpha(alpha) + 0.0  # + 0.0 turns -0.0 into 0.0, so "-0.0000" is never shown
    d_ap = check_nonnegative(d_ap, "d_ap", "It is a distance.") + 0.0
    d_an = check_nonnegative(d_an, "d_an", "It is a distance.") + 0.0
    violation = d_ap - d_an + alpha + 0.0
    # The stored inputs and the two operations each round by at most eps / 2 relative, so anything below
    # 4 eps (d_ap + d_an + alpha) is round-off: 0.5 - 0.7 + 0.2 gives 5.6e-17, and the margin is met.
    round_off = 4 * sys.float_info.epsilon * (d_ap + d_an + alpha)
    return MarginState(alpha, d_ap, d_an, violation, max(violation, 0.0), violation <= round_off)


def draw_margin(state: MarginState) -> Figure:
    """The hinge L = max(d(A,P) - d(A,N) + alpha, 0) against d(A,N), with the state's point, titled with its text."""
    if not isinstance(state, MarginState):
        raise TypeError(f"state must come from margin_state(alpha, d_ap, d_an), got {type(state).__name__}.")
    alpha, d_ap, d_an = state.alpha, state.d_ap, state.d_an
    right_end = max(DISTANCE_MAX, d_an, d_ap + alpha)
    d = torch.linspace(0, right_end, 401, dtype=torch.float64)
    figure = Figure(figsize=(7.5, 3.6))
    figure.subplots_adjust(left=0.1, right=0.6, bottom=0.14, top=0.88)  # fixed: tight_layout slows every redraw
    ax = figure.add_subplot()
    ax.plot(d.numpy(), (d_ap - d + alpha).clamp_min(0).numpy(), color="black", label="L = max(d(A,P) - d(A,N) + α, 0)")
    ax.axvspan(0, d_ap + alpha, color="tab:red", alpha=0.08, label="margin violated")
    ax.axvline(d_ap, color="tab:blue", linestyle="--", label=f"d(A,P) = {d_ap:.2f}")
    ax.axvline(d_ap + alpha, color="tab:orange", linestyle="--", label=f"d(A,P) + α = {d_ap + alpha:.2f}")
    ax.scatter([d_an], [state.loss], color="tab:green" if state.margin_met else "tab:red", zorder=3, s=40,
               label=f"now: d(A,N) = {d_an:.2f}")
    ax.set(xlim=(0, right_end), ylim=(-0.02, 1.15 * (d_ap + alpha) + 0.05), xlabel="d(A,N), squared distance",
           ylabel="loss L (squared-distance units)")
    ax.set_title(state.text, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return figure


def float_slider(description: str, value: float, maximum: float) -> widgets.FloatSlider:
    """A slider from 0 to maximum in steps of 0.01 that reports only when released (a redraw cannot follow a drag)."""
    if value > maximum:
        raise ValueError(f"the {description} slider goes up to {maximum}; start inside that range, not at {value}.")
    return widgets.FloatSlider(value=value, min=0, max=maximum, step=0.01, description=description,
                               readout_format=".2f", continuous_update=False)


class SliderExplorer(widgets.VBox):
    """Sliders, a label and a picture, recomputed from the slider values by describe (the text) and draw."""

    def __init__(self, sliders: list, describe: Callable[..., str], draw: Callable[..., Figure]):
        self.sliders, self.describe, self.draw = sliders, describe, draw
        self.label = widgets.Label()
        # Aligned to the start, the picture keeps the width it was drawn at instead of being stretched (blurred).
        self.picture = widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start"))
        super().__init__(children=[*sliders, self.label, self.picture])
        for slider in sliders:
            slider.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, change=None) -> None:
        values = [slider.value for slider in self.sliders]
        self.label.value = self.describe(*values)
        buffer = io.BytesIO()
        self.draw(*values).savefig(buffer, format="png")
        self.picture.value = buffer.getvalue()


class MarginExplorer(SliderExplorer):
    """Sliders alpha (0 .. 1), d(A,P) and d(A,N) (0 .. 2) driving `margin_state` and `draw_margin`."""

    def __init__(self, alpha: float = 0.2, d_ap: float = 0.5, d_an: float = 0.51):
        start = margin_state(alpha, d_ap, d_an)
        sliders = [float_slider("alpha", start.alpha, ALPHA_MAX), float_slider("d(A,P)", start.d_ap, DISTANCE_MAX),
                   float_slider("d(A,N)", start.d_an, DISTANCE_MAX)]
        super().__init__(sliders, lambda *v: margin_state(*v).text, lambda *v: draw_margin(margin_state(*v)))


def toy_step_summary(history: ToyHistory, step: int) -> str:
    """One line for a step of the toy descent: "step 3 of 64: J = 12.3456, 200 of 288 triplets violate the margin"."""
    check_history(history, step)
    return (f"step {step} of {history.steps}: J = {float(history.cost[step]):.4f}, "
            f"{int(history.num_active[step])} of {history.num_triplets} triplets violate the margin")


class ToyStepExplorer(SliderExplorer):
    """A "step" slider through a toy descent from `train_toy_points`: the points, their arrows and J."""

    def __init__(self, history: ToyHistory):
        check_history(history)
        slider = widgets.IntSlider(value=0, min=0, max=history.steps, description="step", continuous_update=False)
        super().__init__([slider], lambda step: toy_step_summary(history, step),
                         lambda step: plot_toy_snapshots(history, [step]))
