"""Figures shared by the notebooks: the toy descent, and curves over steps.

Figures are made without pyplot, so a notebook shows each once and no global list keeps it alive.
"""
from __future__ import annotations

import math

from matplotlib.figure import Figure

from course_utils.lessons.toy_training import ToyHistory, check_history


def plot_toy_snapshots(history: ToyHistory, steps: list[int]) -> Figure:
    """The toy points at a few steps on shared axes, coloured by identity, arrows (magnified) where each next
    step moves them."""
    if not steps:
        raise ValueError("give at least one step to draw, for example [0, history.steps].")
    for step in steps:
        check_history(history, step)
    figure = Figure(figsize=(3.4 * len(steps) + 1.2, 3.2), layout="constrained")
    axes = figure.subplots(1, len(steps), squeeze=False, sharex=True, sharey=True)[0]
    low, high = history.points.reshape(-1, 2).min(dim=0).values, history.points.reshape(-1, 2).max(dim=0).values
    size = float((high - low).max())
    for ax, step in zip(axes, steps):
        points = history.points[step].numpy()
        if history.cost[step] > 0:
            update = -history.learning_rate * history.gradients[step]
            update = (0.3 * size / float(update.norm(dim=1).max()) * update).numpy()
            ax.quiver(points[:, 0], points[:, 1], update[:, 0], update[:, 1], angles="xy", scale_units="xy",
                      scale=1, color="grey", width=0.004)
        for identity in history.labels.unique().tolist():
            rows = (history.labels == identity).numpy()
            ax.scatter(points[rows, 0], points[rows, 1], s=45, color=f"C{identity % 10}", zorder=3,
                       label=f"identity {identity}")
        ax.set(xlim=(float(low[0]) - 0.1 * size, float(high[0]) + 0.1 * size), aspect="equal",
               ylim=(float(low[1]) - 0.1 * size, float(high[1]) + 0.1 * size),
               xlabel="encoding coordinate 1", ylabel="encoding coordinate 2")
        ax.set_title(f"step {step}: J = {float(history.cost[step]):.4f}\n"
                     f"{int(history.num_active[step])} of {history.num_triplets} triplets violated", fontsize=9)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return figure


def plot_curves(panels: dict, xlabel: str = "gradient step", title: str = "") -> Figure:
    """One panel per {panel title: {line label: (x, y) or (x, y, low, high)}}, low .. high shaded.

    None in y is a gap; NaN or inf a red cross on the panel's lower edge.
    """
    if not isinstance(panels, dict) or not panels or not all(isinstance(p, dict) and p for p in panels.values()):
        raise ValueError("panels must be a non-empty dict {panel title: {line label: (x, y)}}.")
    figure = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    for ax, (name, lines) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for label, (x, given, *band) in lines.items():
            x, y = list(x), [math.nan if v is None else float(v) for v in given]
            line, = ax.plot(x, y, marker=".", label=label)
            if band:
                ax.fill_between(x, *band, color=line.get_color(), alpha=0.2)
            bad = [step for step, v, g in zip(x, y, given) if g is not None and not math.isfinite(v)]
            if bad:  # plot() leaves them out; a cross on the lower edge (axes coordinates) shows where
                ax.plot(bad, [0.03] * len(bad), "x", color="C3", transform=ax.get_xaxis_transform(),
                        label=f"{label}: NaN", clip_on=False)
        ax.set(xlabel=xlabel, ylabel=name)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return figure
