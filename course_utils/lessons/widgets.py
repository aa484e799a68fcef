"""Interactive explorers for notebooks 02 and 03, each built on a pure, tested compute function.

Notebooks are stored without widget state, so they show the static figure of a widget's
default state (drawn by the same function) beside the widget.
"""
from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Annulus, Circle

from course_utils._validate import check_alpha, check_nonnegative
from course_utils.lessons.plots import draw_toy_step
from course_utils.lessons.toy_training import ToyHistory, check_history

ALPHA_MAX = 1.0
DISTANCE_MAX = 2.0
SLIDER_STEP = 0.01


@dataclass(frozen=True)
class MarginState:
    """One triplet as the margin explorer shows it.

    violation is d(A,P) - d(A,N) + alpha as computed in floating point, loss = max(violation, 0),
    and margin_met means violation <= 0 up to round-off.
    """

    alpha: float
    d_ap: float
    d_an: float
    violation: float
    loss: float
    margin_met: bool

    @property
    def loss_text(self) -> str:
        """For example "loss = 0.1900"."""
        return f"loss = {self.loss:.4f}"

    @property
    def verdict_text(self) -> str:
        """ "verdict: margin met" or "verdict: violated by 0.1900"."""
        return "verdict: margin met" if self.margin_met else f"verdict: violated by {self.violation:.4f}"


def margin_state(alpha: float, d_ap: float, d_an: float) -> MarginState:
    """Loss and verdict for one triplet from its distances d_ap, d_an >= 0 and the margin alpha >= 0."""
    alpha = check_alpha(alpha)
    d_ap = check_nonnegative(d_ap, "d_ap", "It is a distance.") + 0.0  # + 0.0 turns -0.0 into 0.0
    d_an = check_nonnegative(d_an, "d_an", "It is a distance.") + 0.0
    violation = d_ap - d_an + alpha
    # Decimal inputs such as 0.7 and 0.2 are stored rounded, and each of the two
    # operations rounds again, so 0.5 - 0.7 + 0.2 comes out as 5.6e-17, not 0. Each
    # rounding is at most half a unit in the last place (eps / 2 relative), so the
    # error is below 4 * eps * (|d_ap| + |d_an| + alpha); anything that small counts as 0.
    round_off = 4 * sys.float_info.epsilon * (d_ap + d_an + alpha)
    alpha, violation = alpha + 0.0, violation + 0.0  # so "-0.0000" is never shown
    return MarginState(alpha, d_ap, d_an, violation, max(violation, 0.0), violation <= round_off)


def _check_state(state) -> MarginState:
    if not isinstance(state, MarginState):
        raise TypeError(
            f"state must be a MarginState from margin_state(alpha, d_ap, d_an), got {type(state).__name__}."
        )
    return state


def draw_hinge(ax: Axes, state: MarginState) -> None:
    """Draw L = max(d(A,P) - d(A,N) + alpha, 0) as a function of d(A,N), with the state's point on it."""
    alpha, d_ap, d_an = _check_state(state).alpha, state.d_ap, state.d_an
    right_end = max(DISTANCE_MAX, d_an, d_ap + alpha)
    d = torch.linspace(0, right_end, 401, dtype=torch.float64)
    ax.plot(d.numpy(), (d_ap - d + alpha).clamp_min(0).numpy(), color="black", label="L = max(d(A,P) - d(A,N) + α, 0)")
    ax.axvspan(0, d_ap + alpha, color="tab:red", alpha=0.08, label="margin violated")
    ax.axvline(d_ap, color="tab:blue", linestyle="--", linewidth=1, label=f"d(A,P) = {d_ap:.2f}")
    ax.axvline(d_ap + alpha, color="tab:orange", linestyle="--", linewidth=1, label=f"d(A,P) + α = {d_ap + alpha:.2f}")
    ax.scatter([d_an], [state.loss], color="tab:green" if state.margin_met else "tab:red", zorder=3, s=40,
               label=f"now: L = {state.loss:.4f}")
    ax.set_xlim(0, right_end)
    ax.set_ylim(-0.02 * (d_ap + alpha + 0.1), 1.15 * (d_ap + alpha) + 0.05)
    ax.set_xlabel("d(A,N), squared distance")
    ax.set_ylabel("loss L (squared-distance units)")
    ax.set_title(f"the hinge at α = {alpha:.2f}, d(A,P) = {d_ap:.2f}")
    ax.legend(loc="upper right", fontsize=8)


def draw_margin_ring(ax: Axes, state: MarginState) -> None:
    """Schematic triplet: anchor at the centre, the positive at radius d(A,P), and the ring of width
    alpha beyond it that the negative must clear (the margin holds outside radius d(A,P) + alpha)."""
    alpha, d_ap, d_an = _check_state(state).alpha, state.d_ap, state.d_an
    outer = d_ap + alpha
    if alpha > 0:
        ax.add_patch(Annulus((0, 0), outer, alpha, color="tab:orange", alpha=0.3,
                             label=f"ring of width α = {alpha:.2f}"))
    ax.add_patch(Circle((0, 0), d_ap, fill=False, color="tab:blue", linestyle="--",
                        label=f"radius d(A,P) = {d_ap:.2f}"))
    positive_angle, negative_angle = math.radians(90), math.radians(20)
    ax.scatter([0], [0], marker="*", s=160, color="black", zorder=3, label="anchor A")
    ax.scatter([d_ap * math.cos(positive_angle)], [d_ap * math.sin(positive_angle)], s=60, color="tab:blue", zorder=3,
               label="positive P")
    ax.scatter([d_an * math.cos(negative_angle)], [d_an * math.sin(negative_angle)], s=60, marker="X", zorder=3,
               color="tab:green" if state.margin_met else "tab:red", label=f"negative N at d(A,N) = {d_an:.2f}")
    reach = 1.25 * max(d_an, outer, 0.1)
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.set_xlabel("schematic: radius = d (squared distance)")
    ax.set_ylabel("schematic: radius = d")
    ax.set_title("the negative must clear the ring")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)


def draw_margin(state: MarginState) -> Figure:
    """The hinge (left) and the ring picture (right) for one MarginState, titled with its loss and verdict."""
    _check_state(state)
    figure = Figure(figsize=(10.5, 3.8))
    # Fixed margins instead of tight_layout: measuring every label would double the
    # time of each redraw while a slider moves.
    figure.subplots_adjust(left=0.06, right=0.80, bottom=0.14, top=0.84, wspace=0.25)
    left, right = figure.subplots(1, 2, width_ratios=(1.15, 1))
    draw_hinge(left, state)
    draw_margin_ring(right, state)
    figure.suptitle(f"{state.loss_text}    {state.verdict_text}", fontsize=11)
    return figure


def picture_widget() -> widgets.Image:
    """An empty PNG picture for an explorer, shown at the size it was drawn."""
    # A VBox stretches its children to its width, which would blur the picture; aligned to the start
    # it keeps its own width (and still shrinks to fit a narrow page).
    return widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start"))


def float_slider(description: str, value: float, maximum: float, width: str | None = "420px",
                 **options) -> widgets.FloatSlider:
    """A slider from 0 to maximum in steps of SLIDER_STEP that reports only when released."""
    return widgets.FloatSlider(value=value, min=0, max=maximum, step=SLIDER_STEP, description=description,
                               readout_format=".2f", continuous_update=False,
                               layout=widgets.Layout(width=width) if width else widgets.Layout(), **options)


def figure_png(figure: Figure) -> bytes:
    """Render a Figure to PNG bytes (for an ipywidgets Image)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class SliderExplorer(widgets.VBox):
    """One slider, a label and a picture, recomputed from the slider's value by describe (the text) and draw."""

    def __init__(self, slider: widgets.ValueWidget, describe: Callable[[float], str],
                 draw: Callable[[float], Figure]):
        self.slider, self.describe, self.draw = slider, describe, draw
        self.label = widgets.Label()
        self.picture = picture_widget()
        super().__init__(children=[slider, self.label, self.picture])
        slider.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, change=None) -> None:
        self.label.value = self.describe(self.slider.value)
        self.picture.value = figure_png(self.draw(self.slider.value))


class MarginExplorer(widgets.VBox):
    """Sliders "alpha" (0 .. 1), "d(A,P)" and "d(A,N)" (0 .. 2) driving the loss, the verdict and the pictures.

    The labels update when a slider is released: one redraw is too slow to follow a drag.
    """

    def __init__(self, alpha: float = 0.2, d_ap: float = 0.5, d_an: float = 0.51):
        start = margin_state(alpha, d_ap, d_an)
        if start.alpha > ALPHA_MAX or max(start.d_ap, start.d_an) > DISTANCE_MAX:
            raise ValueError(
                f"the sliders go up to alpha = {ALPHA_MAX} and distances = {DISTANCE_MAX}; start inside that range."
            )
        style = {"description_width": "4em"}
        self.alpha_slider = float_slider("alpha", start.alpha, ALPHA_MAX, style=style)
        self.d_ap_slider = float_slider("d(A,P)", start.d_ap, DISTANCE_MAX, style=style)
        self.d_an_slider = float_slider("d(A,N)", start.d_an, DISTANCE_MAX, style=style)
        self.loss_label = widgets.Label()
        self.verdict_label = widgets.Label()
        self.picture = picture_widget()
        super().__init__(children=[self.alpha_slider, self.d_ap_slider, self.d_an_slider,
                                   self.loss_label, self.verdict_label, self.picture])
        for slider in (self.alpha_slider, self.d_ap_slider, self.d_an_slider):
            slider.observe(self._redraw, names="value")
        self._redraw()

    @property
    def state(self) -> MarginState:
        """The MarginState of the current slider positions."""
        return margin_state(self.alpha_slider.value, self.d_ap_slider.value, self.d_an_slider.value)

    def _redraw(self, change=None) -> None:
        state = self.state
        self.loss_label.value = state.loss_text
        self.verdict_label.value = state.verdict_text
        self.picture.value = figure_png(draw_margin(state))


def toy_step_summary(history: ToyHistory, step: int) -> str:
    """One line for a step (0 .. history.steps) of the toy descent, for example
    "step 3 of 64: J = 12.3456, 200 of 288 triplets violate the margin"."""
    check_history(history).check_step(step)
    return (f"step {step} of {history.steps}: J = {float(history.cost[step]):.4f}, "
            f"{int(history.num_active[step])} of {history.num_triplets} triplets violate the margin")


class ToyStepExplorer(SliderExplorer):
    """A "step" slider through a recorded toy descent (from `train_toy_points`): the points, the arrows and J."""

    def __init__(self, history: ToyHistory):
        self.history = check_history(history)
        slider = widgets.IntSlider(value=0, min=0, max=history.steps, description="step", continuous_update=False)
        super().__init__(slider, lambda step: toy_step_summary(self.history, step), self._figure)

    def _figure(self, step: int) -> Figure:
        figure = Figure(figsize=(6.0, 3.6))
        figure.subplots_adjust(left=0.12, right=0.76, bottom=0.14, top=0.86)
        ax = figure.add_subplot()
        draw_toy_step(ax, self.history, step)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        return figure
