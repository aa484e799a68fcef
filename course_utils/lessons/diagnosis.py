"""Name the likely failure of a triplet-loss run from its history (notebook 08, the failure lab).

A failing run rarely crashes; each failure (see EXPLANATIONS) leaves its fingerprint in the per-step
(or per-epoch) diagnostics. The broken code is in the notebook; this module keeps the instruments.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from matplotlib.figure import Figure
from torch import nn

from course_utils._validate import (check_alpha, check_labels, check_metric, check_positive, check_tensor,
                                    check_whole_number)
from course_utils.data import PKBatchSampler
from course_utils.training.models import EmbeddingNet
from course_utils.lessons.notebook import seed_everything
from course_utils.training.step import LossWithStats, batch_diagnostics, training_step
from course_utils.training.trainer import looks_collapsed

EXPLANATIONS = {
    "nan": "NaN: a loss or distance became NaN or infinite (often the gradient of sqrt at distance 0).",
    "no_valid_triplets": "no valid triplets in the batches: most batches have no anchor-positive pair, "
                         "so the loss is 0 and nothing is learned. Use P x K batches.",
    "margin_too_large": "margin on the wrong scale: no pair of unit vectors can be that far apart under "
                        "this distance, so the loss can never reach 0.",
    "collapsed": "collapsed: every embedding close together and the loss stuck at alpha.",
    "healthy": "healthy: finite numbers, valid triplets, d(A,N) growing away from d(A,P).",
}
FAILURES = tuple(EXPLANATIONS)  # in the order diagnose checks them
# The largest distance between two unit vectors (opposite points of the sphere) per metric.
LARGEST_UNIT_DISTANCE = {"squared_euclidean": 4.0, "euclidean": 2.0, "cosine": 2.0}
# Each record's diagnostics, with the title of their panel in `plot_broken_and_fixed`.
_TITLES = {"loss": "training loss (per step)", "active_fraction": "active fraction of triplets",
           "mean_d_ap": "mean d(A,P), squared distance", "mean_d_an": "mean d(A,N), squared distance",
           "embedding_norm": "mean encoding length"}
REQUIRED_KEYS = tuple(_TITLES)
# Encodings count as unit vectors when their mean length is within this of 1.
UNIT_NORM_TOLERANCE = 1e-3


class Diagnosis(NamedTuple):
    """A name from FAILURES and a sentence in words."""

    name: str
    explanation: str

    def __str__(self) -> str:
        return self.explanation


def _check_history(history) -> list[dict]:
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError("history must be a non-empty list of records (dicts), one per step or epoch, as returned "
                         f"by record_steps or Trainer.fit; got {history!r:.60}.")
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
    """The likely failure of a run from its records (dicts with REQUIRED_KEYS) and the loss's alpha and metric.

    First match wins: NaN anywhere; more than half of the records without a valid triplet
    (active_fraction None); alpha at least the largest distance between unit vectors (when the
    encodings have length 1); the last record collapsed (`trainer.looks_collapsed`); else healthy.
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
    """ "<name> after <n> steps: loss ..., active_fraction ..., ...": the last record, rounded to 4 decimals."""
    last = _check_history(history)[-1]
    numbers = ", ".join(f"{key} {'None' if last[key] is None else format(last[key], '.4f')}" for key in REQUIRED_KEYS)
    return f"{name} after {len(history)} steps: {numbers}"


def record_steps(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, images: torch.Tensor,
                 labels: torch.Tensor, batches) -> list[dict]:
    """One Trainer `training_step` per (B,) index batch into (N, C, H, W) images; one record per step.

    Unlike the Trainer this takes any batches and reads every step back; the loss (TripletLoss, or a
    function with ``return_stats``) runs with check_values=False, so a NaN is recorded, not refused.
    Each record has step and REQUIRED_KEYS; active_fraction is None when the batch has no valid
    triplet, mean_d_ap / mean_d_an (squared Euclidean) are None without such a pair.
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
    """`steps` (batch_size,) index tensors into num_pictures pictures, drawn at random, ignoring identities."""
    for name, value in (("num_pictures", num_pictures), ("batch_size", batch_size), ("steps", steps)):
        check_whole_number(value, name)
    if batch_size > num_pictures:
        raise ValueError(f"batch_size ({batch_size}) cannot exceed num_pictures ({num_pictures}).")
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(num_pictures, generator=generator)[:batch_size] for _ in range(steps)]


def pk_batches(labels: torch.Tensor, p: int, k: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """The first `steps` (p * k,) index batches of `PKBatchSampler`, continuing into later epochs as needed."""
    check_whole_number(steps, "steps")
    sampler = PKBatchSampler(labels, p=p, k=k, seed=seed)
    batches, epoch = [], 0
    while len(batches) < steps:
        batches.extend(sampler.batches_for_epoch(epoch))
        epoch += 1
    return batches[:steps]


def train_fresh(loss_fn, images: torch.Tensor, labels: torch.Tensor, batches, lr: float, seed: int = 0,
                return_model: bool = False):
    """`record_steps` of a new small `EmbeddingNet` trained with Adam; (history, model) when return_model.

    For the same seed every run starts from the same weights, so a broken run and its fix differ
    only in what was changed.
    """
    lr = check_positive(lr, "lr")
    seed_everything(seed)
    model = EmbeddingNet(in_channels=images.shape[1], embedding_dim=16, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = record_steps(model, optimizer, loss_fn, images, labels, batches)
    return (history, model) if return_model else history


def plot_broken_and_fixed(broken: list[dict], fixed: list[dict], keys: tuple[str, ...] = ("loss", "mean_d_an"),
                          title: str = "") -> Figure:
    """One panel per diagnostic (from REQUIRED_KEYS), the broken and the fixed run of `record_steps` on shared axes.

    The broken run is drawn last, dashed with large open circles, so it stays visible where it lies
    on the fixed one (both start from the same weights). Its NaN or infinite values are red crosses
    along the bottom of the panel ("broken: NaN"); steps with no value (None) are gaps.
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
