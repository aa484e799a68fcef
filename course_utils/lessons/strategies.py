"""Choosing triplets, measured: the bookkeeping of notebook 05's comparison, and timings.

Notebook 05 writes its training loop on the page; this module keeps what is not the lesson.
"""
from __future__ import annotations

import timeit
from typing import NamedTuple

import torch
from matplotlib.figure import Figure

from course_utils.core import reference
from course_utils._validate import check_alpha, check_whole_number
from course_utils.data import make_random_triplets
from course_utils.core.distances import pairwise_distances, squared_euclidean
from course_utils.evaluation.retrieval import embed, retrieval_metrics
from course_utils.core.losses import batch_all_triplet_loss
from course_utils.core.mining import valid_triplet_mask
from course_utils.lessons.triplet_kinds import zero_loss_fraction


class Probe(NamedTuple):
    """Random training triplets measured at every step: images (N, C, H, W), and (T,) indices into them."""

    images: torch.Tensor
    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


def make_probe(images: torch.Tensor, labels: torch.Tensor, n_persons: int = 100, n_triplets: int = 2000,
               seed: int = 0) -> Probe:
    """n_triplets random valid triplets among the (N, C, H, W) pictures of the first n_persons of the (N,) labels."""
    check_whole_number(n_persons, "n_persons", minimum=2)
    persons = labels.unique()[:n_persons]
    rows = torch.isin(labels, persons).nonzero().flatten()
    anchor, positive, negative = make_random_triplets(labels[rows], n_triplets, seed=seed)
    return Probe(images[rows], anchor, positive, negative)


def calibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> None:
    """Set every BatchNorm layer's running statistics from (N, C, H, W) pictures; no weight changes.

    Fresh layers hold mean 0 and variance 1, so in evaluation mode a fresh network squeezes every
    picture onto nearly one point; calibrated, step 0 shows it as it is. The train/eval mode is restored.
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # None: a cumulative average over all the passes below
    model.train()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)


def measure(model: torch.nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor, probe: Probe,
            alpha: float = 0.2) -> dict:
    """Held-out retrieval quality (in evaluation mode) and the zero-loss share of the probe's random triplets.

    Returns:
        {"test_precision_at_1", "test_map_at_r", "random_zero_loss_fraction", "random_mean_d_an"}.
    """
    metrics = retrieval_metrics(embed(model, test_images, batch_size=500), test_labels)
    encodings = embed(model, probe.images, batch_size=500)
    d_ap = squared_euclidean(encodings[probe.anchor], encodings[probe.positive])
    d_an = squared_euclidean(encodings[probe.anchor], encodings[probe.negative])
    return {"test_precision_at_1": metrics["precision_at_1"], "test_map_at_r": metrics["map_at_r"],
            "random_zero_loss_fraction": zero_loss_fraction(d_ap, d_an, alpha),
            "random_mean_d_an": float(d_an.mean())}


def summarise(records: list[dict], key: str, step: int) -> dict[str, tuple[float, float, float]]:
    """{strategy: (mean, min, max) of ``key`` over the seeds at one step}, in the order the strategies were run.

    records: dicts with strategy, seed, step and the recorded numbers.
    """
    found: dict[str, list[float]] = {}
    for record in records:
        if record["step"] == step and record.get(key) is not None:
            found.setdefault(record["strategy"], []).append(record[key])
    if not found:
        raise ValueError(f"no record has {key!r} at step {step}; check the key and the measured steps.")
    return {name: (sum(v) / len(v), min(v), max(v)) for name, v in found.items()}


_TITLES = {"loss": "training loss (mean over steps)", "test_precision_at_1": "held-out Precision@1",
           "test_map_at_r": "held-out MAP@R", "random_zero_loss_fraction": "random triplets with loss 0",
           "random_mean_d_an": "mean d(A,N) of random triplets"}


def plot_comparison(records: list[dict], keys: tuple[str, ...] = ("loss", "test_precision_at_1",
                                                                   "test_map_at_r")) -> Figure:
    """One panel per recorded number (keys from _TITLES): the mean over seeds as a line, their range shaded."""
    unknown = [key for key in keys if key not in _TITLES]
    if unknown:
        raise ValueError(f"cannot plot {unknown}; choose from {list(_TITLES)}.")
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    figure = Figure(figsize=(4.0 * len(keys), 3.4))
    axes = figure.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for number, strategy in enumerate(strategies):
            steps = sorted({r["step"] for r in records if r["strategy"] == strategy and r[key] is not None})
            mean, low, high = torch.tensor([summarise(records, key, s)[strategy] for s in steps]).T  # (steps,) each
            ax.plot(steps, mean, marker=".", color=f"C{number}", label=strategy)
            ax.fill_between(steps, low, high, color=f"C{number}", alpha=0.2)
        ax.set_xlabel("gradient step")
        ax.set_title(_TITLES[key], fontsize=10)
    axes[0].set_ylabel("value (line: mean, band: range over seeds)")
    axes[-1].legend(fontsize=8, title=f"{len(seeds)} seeds", title_fontsize=8)
    figure.tight_layout()
    return figure


def masked_batch_all_loss(embeddings: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """Batch-all loss of (B, D) encodings from the (B, B, B) valid-triplet mask: the textbook vectorised version.

    Returns:
        0-d tensor: mean over the valid triplets with a positive loss (0 when there is none).
    """
    dist = pairwise_distances(embeddings)
    # losses[a, p, n] = d(a, p) - d(a, n) + alpha for all B^3 index triples at once.
    losses = (dist.unsqueeze(2) - dist.unsqueeze(1) + check_alpha(alpha)).clamp(min=0)
    losses = losses * valid_triplet_mask(labels)
    return losses.sum() / (losses > 0).sum().clamp(min=1)


def _seconds(function, repeats: int) -> float:
    return min(timeit.repeat(function, number=1, repeat=repeats))  # the best: the least disturbed by other work


def time_batch_all(batch_sizes: tuple[int, ...], masked=masked_batch_all_loss, naive_up_to: int = 64,
                   repeats: int = 3) -> list[dict]:
    """Time the batch-all loss three ways for P x 4 batches of growing size B: the naive loop of
    `core.reference` (timed only up to naive_up_to: it grows like B^3), ``masked(embeddings, labels,
    alpha)`` (B^3 numbers at once) and the course's (sorted negatives, no B^3 tensor); best of repeats.

    Returns:
        one dict per B: batch_size, triplets, naive_seconds (None above naive_up_to),
        masked_seconds, course_seconds, and max_difference between the three losses.
    """
    k, rows = 4, []
    for b in batch_sizes:
        if b % k or b // k < 2:
            raise ValueError(f"batch size {b} must be a multiple of k={k} with at least 2 identities.")
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.nn.functional.normalize(torch.randn(b, 32, generator=generator), dim=1)
        labels = torch.arange(b // k).repeat_interleave(k)
        course = batch_all_triplet_loss(embeddings, labels)
        masked_loss = masked(embeddings, labels, 0.2)
        row = {"batch_size": b, "triplets": b * (k - 1) * (b - k), "naive_seconds": None,
               "masked_seconds": _seconds(lambda: masked(embeddings, labels, 0.2), repeats),
               "course_seconds": _seconds(lambda: batch_all_triplet_loss(embeddings, labels), repeats),
               "max_difference": float((course - masked_loss).abs())}
        if b <= naive_up_to:
            naive = reference.batch_all_triplet_loss(embeddings, labels)[0]
            row["naive_seconds"] = _seconds(lambda: reference.batch_all_triplet_loss(embeddings, labels), 1)
            row["max_difference"] = max(row["max_difference"], float((course.double() - naive).abs()))
        rows.append(row)
    return rows


def plot_timings(rows: list[dict]) -> Figure:
    """Seconds per batch-all loss against B (log-log) for the rows of `time_batch_all`, triplets on a second axis."""
    if not rows:
        raise ValueError("rows is empty; run time_batch_all first.")
    figure = Figure(figsize=(6.5, 3.8))
    ax = figure.subplots()
    sizes = [r["batch_size"] for r in rows]
    naive = [(r["batch_size"], r["naive_seconds"]) for r in rows if r["naive_seconds"] is not None]
    if naive:
        ax.plot(*zip(*naive), marker="o", label="naive loop (reference)")
    ax.plot(sizes, [r["masked_seconds"] for r in rows], marker="s", label="masked, B³ tensor")
    ax.plot(sizes, [r["course_seconds"] for r in rows], marker="^", label="course batch_all (sorted)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("batch size B (P x 4 pictures)")
    ax.set_ylabel("seconds per loss (CPU)")
    count = ax.twinx()
    count.plot(sizes, [r["triplets"] for r in rows], color="grey", linestyle=":", label="valid triplets")
    count.set_yscale("log")
    count.set_ylabel("valid triplets in the batch (grey, dotted)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("the cost of using all triplets")
    figure.tight_layout()
    return figure
