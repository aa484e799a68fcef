"""The shared plot helpers draw labelled figures from the numbers they are given, and refuse bad input."""
import math

import pytest
from matplotlib.figure import Figure

from course_utils.lessons.plots import plot_curves, plot_toy_snapshots


def test_toy_snapshots(toy_history):
    figure = plot_toy_snapshots(toy_history, [0, toy_history.steps])
    assert isinstance(figure, Figure) and all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes)
    assert figure.axes[0].get_title().startswith(f"step 0: J = {float(toy_history.cost[0]):.4f}")
    assert len(figure.axes[0].collections) == 1 + 3  # the arrows, then one colour per identity
    assert len(figure.axes[1].collections) == 3  # J = 0: nothing moves, no arrows
    for bad in ([toy_history.steps + 1], []):
        with pytest.raises(ValueError, match="step"):
            plot_toy_snapshots(toy_history, bad)


def test_toy_snapshots_share_their_axes(toy_history):
    """One scale for every panel, so the spread at step 0 can be compared with the last step."""
    first, middle, last = plot_toy_snapshots(toy_history, [0, toy_history.steps // 2, toy_history.steps]).axes[:3]
    assert first.get_shared_x_axes().joined(first, last) and first.get_shared_y_axes().joined(first, middle)
    assert first.get_xlim() == last.get_xlim() and first.get_ylim() == last.get_ylim()


def test_curves_one_panel_per_entry_with_gaps_bands_and_nan_crosses():
    figure = plot_curves({"loss": {"broken": ([1, 2, 3], [0.5, math.nan, None]), "fixed": ([1, 2, 3], [0.4, 0.3, 0.2])},
                          "spread": {"mean": ([0, 1], [1.0, 2.0], [0.5, 1.5], [1.5, 2.5])}}, title="runs")
    loss, spread = figure.axes
    assert (loss.get_ylabel(), spread.get_ylabel(), loss.get_xlabel()) == ("loss", "spread", "gradient step")
    assert [line.get_label() for line in loss.get_lines()] == ["broken", "broken: NaN", "fixed"]
    assert list(loss.get_lines()[1].get_xdata()) == [2]  # the NaN step is marked; None (step 3) is only a gap
    assert math.isnan(loss.get_lines()[0].get_ydata()[2])
    assert len(spread.collections) == 1 and figure._suptitle.get_text() == "runs"  # the shaded band


@pytest.mark.parametrize("bad", [{}, {"loss": {}}, [("loss", {})]])
def test_curves_refuse_anything_but_panels_of_lines(bad):
    with pytest.raises(ValueError, match="panel title"):
        plot_curves(bad)
