"""The bookkeeping of notebook 05's comparison of triplet choices; its training loop is on the page."""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from course_utils.core.distances import squared_euclidean
from course_utils.evaluation.retrieval import embed, retrieval_metrics
from course_utils.lessons.plots import plot_curves
from course_utils.lessons.triplet_kinds import triplet_kind_counts


def measure(model: torch.nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor, probe,
            alpha: float = 0.2) -> dict:
    """{"test_precision_at_1", "test_map_at_r"} of held-out retrieval (evaluation mode), and of the probe's
    triplets (pictures and three (T,) indices) {"random_zero_loss_fraction", "random_mean_d_an"}."""
    metrics = retrieval_metrics(embed(model, test_images, batch_size=500), test_labels)
    images, anchor, positive, negative = probe
    encodings = embed(model, images, batch_size=500)
    d_ap = squared_euclidean(encodings[anchor], encodings[positive])
    d_an = squared_euclidean(encodings[anchor], encodings[negative])
    counts = triplet_kind_counts(d_ap, d_an, alpha)
    return {"test_precision_at_1": metrics["precision_at_1"], "test_map_at_r": metrics["map_at_r"],
            "random_zero_loss_fraction": counts.easy / counts.total, "random_mean_d_an": float(d_an.mean())}


def summarise(records: list[dict], key: str, step: int) -> dict[str, tuple[float, float, float]]:
    """{strategy: (mean, min, max) of ``key`` over the seeds at one step}, from dicts with strategy, seed and step."""
    found: dict[str, list[float]] = {}
    for record in records:
        if record["step"] == step and record.get(key) is not None:
            found.setdefault(record["strategy"], []).append(record[key])
    if not found:
        raise ValueError(f"no record has {key!r} at step {step}; check the key and the measured steps.")
    return {name: (sum(v) / len(v), min(v), max(v)) for name, v in found.items()}


def plot_comparison(records: list[dict], keys: tuple[str, ...] = ("loss", "test_precision_at_1",
                                                                   "test_map_at_r")) -> Figure:
    """One panel per recorded number: per strategy the mean over seeds as a line, their range shaded."""
    panels = {}
    for key in keys:
        steps = sorted({r["step"] for r in records if r.get(key) is not None})
        if not steps:
            raise ValueError(f"no record has a value for {key!r}; choose keys that measure() or the loop recorded.")
        at = [summarise(records, key, step) for step in steps]  # {strategy: (mean, min, max)} per step
        panels[key] = {name: (steps, *zip(*(numbers[name] for numbers in at))) for name in at[-1]}
    seeds = len({r["seed"] for r in records})
    return plot_curves(panels, title=f"line: mean, band: range over {seeds} seeds")
