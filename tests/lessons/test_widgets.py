"""The widgets' pure compute functions, and the widgets wired to them (no browser needed)."""
import math

import pytest
from matplotlib.figure import Figure

from course_utils.lessons.widgets import MarginExplorer, ToyStepExplorer, draw_margin, margin_state, toy_step_summary


def test_worked_example_not_good_enough():
    state = margin_state(0.2, 0.5, 0.51)
    assert math.isclose(state.loss, 0.19, abs_tol=1e-12)
    assert not state.margin_met
    assert state.text == "loss = 0.1900, verdict: violated by 0.1900"


def test_worked_example_margin_met_despite_the_binary_residue():
    state = margin_state(0.2, 0.5, 0.7)
    assert state.violation != 0.0  # 0.5 - 0.7 + 0.2 is not exactly 0 in binary
    assert abs(state.violation) < 1e-15
    assert state.margin_met
    assert state.text == "loss = 0.0000, verdict: margin met"


@pytest.mark.parametrize("alpha,d_ap,d_an", [(0.0, 0.0, 0.0), (0.2, 0.0, 0.0), (0.3, 1.0, 2.0), (1.0, 2.0, 0.5)])
def test_state_follows_the_definition(alpha, d_ap, d_an):
    state = margin_state(alpha, d_ap, d_an)
    assert state.violation == d_ap - d_an + alpha
    assert state.loss == max(d_ap - d_an + alpha, 0.0)
    assert state.margin_met == (d_ap - d_an + alpha <= 1e-12)


def test_trivial_solution_all_distances_zero():
    assert margin_state(0.0, 0.0, 0.0).text.endswith("verdict: margin met")
    assert margin_state(0.2, 0.0, 0.0).text.endswith("verdict: violated by 0.2000")


def test_met_with_room_to_spare_has_zero_loss():
    state = margin_state(0.2, 0.5, 1.5)
    assert state.loss == 0.0 and state.margin_met and state.violation == pytest.approx(-0.8)


@pytest.mark.parametrize("args,error", [((-0.1, 0.5, 0.5), ValueError), ((0.2, -1.0, 0.5), ValueError),
                                        ((0.2, 0.5, float("nan")), ValueError), ((0.2, "0.5", 0.5), TypeError)])
def test_bad_values_are_refused(args, error):
    with pytest.raises(error):
        margin_state(*args)


def test_draw_margin_draws_the_hinge_and_the_state():
    figure = draw_margin(margin_state(0.2, 0.5, 0.51))
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    (hinge,) = figure.axes
    assert "d(A,N)" in hinge.get_xlabel() and "loss" in hinge.get_ylabel()
    assert hinge.get_title() == "loss = 0.1900, verdict: violated by 0.1900"
    y = hinge.lines[0].get_ydata()
    assert y[0] == pytest.approx(0.7) and y[-1] == 0  # L = d(A,P) + alpha at d(A,N) = 0, zero far away
    assert tuple(hinge.collections[-1].get_offsets()[0]) == pytest.approx((0.51, 0.19))


def test_point_colour_follows_the_verdict_not_the_binary_residue():
    """At d(A,N) = 0.7 the loss is 5.6e-17 > 0 in binary, but the margin is met: green, not red."""
    (hinge,) = draw_margin(margin_state(0.2, 0.5, 0.7)).axes
    green = (0.17254901960784313, 0.6274509803921569, 0.17254901960784313, 1.0)  # tab:green
    assert tuple(hinge.collections[-1].get_facecolor()[0]) == pytest.approx(green)


def test_draw_margin_refuses_other_objects():
    with pytest.raises(TypeError, match="margin_state"):
        draw_margin((0.2, 0.5, 0.51))


def test_explorer_sliders_drive_the_label_and_the_picture():
    explorer = MarginExplorer()
    alpha, d_ap, d_an = explorer.sliders
    assert [s.description for s in explorer.sliders] == ["alpha", "d(A,P)", "d(A,N)"]
    assert explorer.label.value == "loss = 0.1900, verdict: violated by 0.1900"
    first_picture = bytes(explorer.picture.value)
    assert first_picture.startswith(b"\x89PNG")

    alpha.value = 0.0
    assert explorer.label.value == "loss = 0.0000, verdict: margin met"
    assert bytes(explorer.picture.value) != first_picture

    alpha.value = 0.2
    d_an.value = 0.7
    assert explorer.label.value.endswith("verdict: margin met")
    d_ap.value = 1.0
    assert explorer.label.value == "loss = 0.5000, verdict: violated by 0.5000"


@pytest.mark.parametrize("start", [dict(alpha=3.0), dict(d_an=2.5)])
def test_explorer_refuses_a_start_outside_the_sliders(start):
    with pytest.raises(ValueError, match="slider goes up to"):
        MarginExplorer(**start)


def test_toy_step_summary(toy_history):
    first = toy_step_summary(toy_history, 0)
    assert first.startswith(f"step 0 of {toy_history.steps}: J = {float(toy_history.cost[0]):.4f}, ")
    assert first.endswith(f"{int(toy_history.num_active[0])} of 288 triplets violate the margin")
    assert toy_step_summary(toy_history, toy_history.steps).endswith("J = 0.0000, 0 of 288 triplets violate the margin")
    with pytest.raises(ValueError, match="step"):
        toy_step_summary(toy_history, toy_history.steps + 1)


def test_toy_step_explorer_follows_the_slider(toy_history):
    explorer = ToyStepExplorer(toy_history)
    (slider,) = explorer.sliders
    assert slider.description == "step" and slider.max == toy_history.steps
    assert explorer.label.value == toy_step_summary(toy_history, 0)
    slider.value = toy_history.steps
    assert explorer.label.value == toy_step_summary(toy_history, toy_history.steps)
    assert bytes(explorer.picture.value).startswith(b"\x89PNG")


def test_explorer_pictures_keep_their_own_size(toy_history):
    """In a VBox an image stretches to the page width unless aligned to the start (tests/test_browser.py
    measures it in JupyterLab); the 03 picture also names the colours in a legend."""
    for explorer in (MarginExplorer(), ToyStepExplorer(toy_history)):
        assert explorer.picture.layout.align_self == "flex-start"
    figure = ToyStepExplorer(toy_history).draw(0)
    assert figure.axes[0].get_legend() is not None
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 600 and height <= 400


def test_negative_zero_inputs_are_shown_as_zero():
    state = margin_state(-0.0, -0.0, 0.0)
    assert state.text == "loss = 0.0000, verdict: margin met"
    assert "-" not in f"{state.alpha}{state.d_ap}{state.violation}{state.loss}"
