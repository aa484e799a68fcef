"""Name the likely failure of a triplet-loss run from its history (notebook 08, the failure lab).

A run that fails rarely crashes: it prints numbers that look plausible. Each failure
leaves its own fingerprint in the per-step (or per-epoch) diagnostics:

* "nan"               a loss or distance is NaN or infinite;
* "no_valid_triplets" most batches hold no anchor-positive pair, so no triplet exists;
* "margin_too_large"  alpha is at least the largest distance two unit vectors can have,
                      so no triplet can ever reach loss 0;
* "collapsed"         d(A,N) is near 0 and the loss sits at alpha (every encoding is one point);
* "healthy"           none of the above.

`record_steps` trains a network on given batches and records those diagnostics per step.
The broken code of each failure (a plain sqrt, a hand-built label mask) is written out in the
notebook itself, where the learner reads it; this module keeps the instruments.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from matplotlib.figure import Figure
from torch import nn

from course_utils.core._validate import check_alpha, check_labels, check_metric, check_tensor, check_whole_number
from course_utils.data import PKBatchSampler
from course_utils.training.models import EmbeddingNet
from course_utils.lessons.notebook import seed_everything
from course_utils.training.step import LossWithStats, batch_diagnostics, training_step
from course_utils.training.trainer import looks_collapsed

FAILURES = ("nan", "no_valid_triplets", "margin_too_large", "collapsed", "healthy")
EXPLANATIONS = {
    "nan": "NaN: a loss or distance became NaN or infinite (often the gradient of sqrt at distance 0).",
    "no_valid_triplets": "no valid triplets in the batches: most batches have no anchor-positive pair, "
                         "so the loss is 0 and nothing is learned. Use P x K batches.",
    "margin_too_large": "margin on the wrong scale: no pair of unit vectors can be that far apart under "
                        "this distance, so the loss can never reach 0.",
    "collapsed": "collapsed: every embedding close together and the loss stuck at alpha.",
    "healthy": "healthy: finite numbers, valid triplets, d(A,N) growing away from d(A,P).",
}
# The largest distance between two unit vectors (opposite points of the sphere) per metric.
LARGEST_UNIT_DISTANCE = {"squared_euclidean": 4.0, "euclidean": 2.0, "cosine": 2.0}
REQUIRED_KEYS = ("loss", "active_fraction", "mean_d_ap", "mean_d_an", "embedding_norm")
# Encodings count as unit vectors when their mean length is within this of 1.
UNIT_NORM_TOLERANCE = 1e-3


class Diagnosis(NamedTuple):
    """The likely failure of a run: a name from FAILURES and a sentence in words."""

    name: str
    explanation: str

    def __str__(self) -> str:
        return self.explanation


def _check_history(history) -> list[dict]:
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError(
            "history must be a non-empty list of records (dicts), one per step or epoch, as returned "
            f"by record_steps or Trainer.fit; got {type(history).__name__} of length "
            f"{len(history) if hasattr(history, '__len__') else '?'}."
        )
    for number, record in enumerate(history):
        if not isinstance(record, dict):
            raise TypeError(f"history[{number}] must be a dict, got {type(record).__name__}.")
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(
                f"history[{number}] lacks {missing}; each record needs {list(REQUIRED_KEYS)} "
                "(record_steps and Trainer.fit write them)."
            )
    return list(history)


def _not_finite(value) -> bool:
    return value is not None and not math.isfinite(value)


def diagnose(history, alpha, metric: str = "squared_euclidean") -> Diagnosis:
    """The likely failure of a run, from its records.

    Checked in this order, first match wins: NaN anywhere; more than half of the records
    without a valid triplet (active_fraction None); alpha at least the largest distance
    between unit vectors (when the encodings have length 1); the last record collapsed
    (`course_utils.training.trainer.looks_collapsed`); otherwise healthy.

    Args:
        history: list of dicts with loss, active_fraction (None when the batch held no
            valid triplet), mean_d_ap, mean_d_an (None when undefined) and embedding_norm.
        alpha: the margin the run used.
        metric: the distance the loss used.
    Returns:
        Diagnosis(name, explanation).
    """
    records = _check_history(history)
    alpha = check_alpha(alpha)
    check_metric(metric)
    if any(_not_finite(r[key]) for r in records for key in REQUIRED_KEYS if key != "active_fraction"):
        name = "nan"
    elif sum(r["active_fraction"] is None for r in records) > len(records) / 2:
        name = "no_valid_triplets"
    elif (abs(records[-1]["embedding_norm"] - 1) < UNIT_NORM_TOLERANCE
          and alpha >= LARGEST_UNIT_DISTANCE[metric]):
        name = "margin_too_large"
    elif records[-1]["mean_d_an"] is not None and looks_collapsed(records[-1]["mean_d_an"], records[-1]["loss"], alpha):
        name = "collapsed"
    else:
        name = "healthy"
    return Diagnosis(name, EXPLANATIONS[name])


def summary_line(name: str, history) -> str:
    """The last record of a run in one line, numbers rounded to 4 decimals (stable across machines).

    Args:
        name: what the run was ("batch-hard, lr 0.05").
        history: the run's records.
    Returns:
        "<name> after <n> steps: loss ..., active_fraction ..., ...".
    """
    last = _check_history(history)[-1]
    numbers = ", ".join(f"{key} {'None' if last[key] is None else format(last[key], '.4f')}" for key in REQUIRED_KEYS)
    return f"{name} after {len(history)} steps: {numbers}"


def record_steps(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, images: torch.Tensor,
                 labels: torch.Tensor, batches) -> list[dict]:
    """Train on the given batches, one `training_step` each, and record every step's diagnostics.

    The step, the loss with its statistics and the measurements are the `Trainer`'s
    (`course_utils.training.step`); unlike the Trainer this takes any batches (the failure lab
    also trains on purely random ones) and reads every step back. The loss runs with
    check_values=False: a NaN is recorded (it is what the lab looks for), not refused.

    Args:
        model: the embedding network.
        optimizer: its optimiser.
        loss_fn: a loss reporting what it averaged over: a module with ``last_stats``
            (TripletLoss), or a function with a ``return_stats`` parameter returning
            (loss, TripletStats) when it is True.
        images: (N, C, H, W) pictures.
        labels: (N,) identities.
        batches: iterable of (B,) index tensors into images.
    Returns:
        one dict per step: step, loss, active_fraction (None when the batch has no valid
        triplet), mean_d_ap and mean_d_an (squared Euclidean; None without such a pair) and
        embedding_norm.
    """
    labels = check_labels(labels, check_tensor(images, "images").shape[0])
    reporting = LossWithStats(loss_fn, check_values=False)
    if not reporting.reports_stats:
        raise TypeError(
            "loss_fn must report what it averaged over: use TripletLoss(...) (it keeps last_stats), or a "
            "function with a return_stats parameter that returns (loss, TripletStats) when it is True."
        )
    history = []
    for step, batch in enumerate(batches, start=1):
        loss, embeddings = training_step(model, optimizer, reporting, images[batch], labels[batch])
        measured = batch_diagnostics(loss, embeddings, labels[batch], "squared_euclidean")  # (6,)
        numbers = torch.cat([measured, reporting.counts(embeddings.device)]).tolist()
        loss, mean_ap, mean_an, norm, positives, negatives, terms, active = numbers
        history.append({
            "step": step,
            "loss": loss + 0.0,  # + 0.0 turns the -0.0 of an empty batch (0 * negative) into 0.0
            "active_fraction": (active / terms if terms else 0.0) if positives and negatives else None,
            "mean_d_ap": mean_ap if positives else None,
            "mean_d_an": mean_an if negatives else None,
            "embedding_norm": norm,
        })  # fmt: skip
    return history


def random_batches(num_pictures: int, batch_size: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Batches of pictures drawn uniformly at random, ignoring identities (failure 3).

    Args:
        num_pictures: N, the size of the picture set.
        batch_size: pictures per batch, <= N.
        steps: number of batches.
        seed: seed of the draws.
    Returns:
        list of `steps` (batch_size,) long index tensors.
    """
    for name, value in (("num_pictures", num_pictures), ("batch_size", batch_size), ("steps", steps)):
        check_whole_number(value, name)
    if batch_size > num_pictures:
        raise ValueError(f"batch_size ({batch_size}) cannot exceed num_pictures ({num_pictures}).")
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(num_pictures, generator=generator)[:batch_size] for _ in range(steps)]


def pk_batches(labels: torch.Tensor, p: int, k: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """The first ``steps`` P x K batches of `PKBatchSampler`, continuing into later epochs as needed.

    Args:
        labels: (N,) identities.
        p: identities per batch.
        k: pictures per identity.
        steps: number of batches.
        seed: the sampler's seed.
    Returns:
        list of `steps` (p * k,) long index tensors.
    """
    check_whole_number(steps, "steps")
    sampler = PKBatchSampler(labels, p=p, k=k, seed=seed)
    batches, epoch = [], 0
    while len(batches) < steps:
        batches.extend(sampler.batches_for_epoch(epoch))
        epoch += 1
    return batches[:steps]


def train_fresh(loss_fn, images: torch.Tensor, labels: torch.Tensor, batches, lr: float, seed: int = 0,
                embedding_dim: int = 16, width: int = 8, return_model: bool = False):
    """Train a new small `EmbeddingNet` with Adam on the given batches; its per-step history.

    Every run of the failure lab starts from the same weights for the same seed, so a broken
    run and its fix differ only in what was changed.

    Args:
        loss_fn: a loss that reports its stats (see `record_steps`).
        images: (N, C, H, W) pictures.
        labels: (N,) identities.
        batches: iterable of (B,) index tensors.
        lr: Adam's learning rate, > 0.
        seed: seed of the initial weights.
        embedding_dim: length of the unit-length encodings.
        width: channels of the network's first block.
        return_model: also return the trained network (to measure retrieval with it).
    Returns:
        the history from `record_steps`; (history, model) when return_model is True.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}.")
    seed_everything(seed)
    model = EmbeddingNet(in_channels=images.shape[1], embedding_dim=embedding_dim, width=width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = record_steps(model, optimizer, loss_fn, images, labels, batches)
    return (history, model) if return_model else history


_TITLES = {"loss": "training loss (per step)", "active_fraction": "active fraction of triplets",
           "mean_d_ap": "mean d(A,P), squared distance", "mean_d_an": "mean d(A,N), squared distance",
           "embedding_norm": "mean encoding length"}


def plot_broken_and_fixed(broken: list[dict], fixed: list[dict], keys: tuple[str, ...] = ("loss", "mean_d_an"),
                          title: str = "") -> Figure:
    """One panel per diagnostic, the broken run and the fixed run on the same axes.

    The broken run is drawn last, as a dashed line with large open circles, so it stays
    visible where it lies on the fixed one (both runs start from the same weights, so their
    first steps often coincide). Its NaN or infinite values are marked by red crosses along
    the bottom of the panel ("broken: NaN"); steps with no value (None) are gaps.

    Args:
        broken, fixed: per-step histories from `record_steps`.
        keys: diagnostics to plot, from REQUIRED_KEYS.
        title: the figure's title (the failure's name).
    Returns:
        the Figure.
    """
    unknown = [key for key in keys if key not in _TITLES]
    if unknown:
        raise ValueError(f"cannot plot {unknown}; choose from {list(_TITLES)}.")
    broken, fixed = _check_history(broken), _check_history(fixed)
    figure = Figure(figsize=(4.2 * len(keys), 3.2))
    axes = figure.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for history, name, style in ((fixed, "fixed", dict(color="C0", marker=".", linestyle="-")),
                                     (broken, "broken", dict(color="C3", marker="o", markersize=7, linestyle="--",
                                                             markerfacecolor="none"))):
            steps = [r.get("step", i + 1) for i, r in enumerate(history)]
            values = [math.nan if r[key] is None else r[key] for r in history]
            ax.plot(steps, values, label=name, **style)
        not_finite = [r.get("step", i + 1) for i, r in enumerate(broken) if _not_finite(r[key])]
        if not_finite:
            # A NaN is not drawn by plot(); a cross on the lower edge (axes coordinates) shows where.
            ax.plot(not_finite, [0.03] * len(not_finite), "x", color="C3", markersize=8,
                    transform=ax.get_xaxis_transform(), label="broken: NaN", clip_on=False)
        ax.set_xlabel("gradient step")
        ax.set_ylabel(_TITLES[key], fontsize=9)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure
