"""Name the likely failure of a triplet-loss run from its records, one per step or epoch (notebook 08)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from matplotlib.figure import Figure

from course_utils._validate import check_alpha, check_labels, check_metric, check_positive
from course_utils.lessons.notebook import seed_everything
from course_utils.lessons.plots import plot_curves
from course_utils.training.models import EmbeddingNet
from course_utils.training.step import LossWithStats, batch_diagnostics, training_step
from course_utils.training.trainer import looks_collapsed

EXPLANATIONS = {
    "nan": "NaN: a loss or distance became NaN or infinite (often the gradient of sqrt at distance 0).",
    "no_valid_triplets": "no valid triplets: most batches hold no anchor-positive pair, so nothing is learned.",
    "margin_too_large": "margin on the wrong scale: no two unit vectors are that far apart, so the loss stays > 0.",
    "collapsed": "collapsed: every embedding close together and the loss stuck at alpha.",
    "healthy": "healthy: finite numbers, valid triplets, d(A,N) growing away from d(A,P).",
}
FAILURES = tuple(EXPLANATIONS)  # in the order diagnose checks them
LARGEST_UNIT_DISTANCE = {"squared_euclidean": 4.0, "euclidean": 2.0, "cosine": 2.0}  # opposite unit vectors
REQUIRED_KEYS = ("loss", "active_fraction", "mean_d_ap", "mean_d_an", "embedding_norm")


class Diagnosis(NamedTuple):
    """A name from FAILURES and a sentence in words."""

    name: str
    explanation: str


def _check_history(history) -> list[dict]:
    if not isinstance(history, (list, tuple)) or not history or not all(isinstance(r, dict) for r in history):
        raise ValueError("history must be a non-empty list of dicts, one per step or epoch, as train_fresh or "
                         f"Trainer.fit returns; got {history!r:.60}.")
    missing = sorted({key for record in history for key in REQUIRED_KEYS if key not in record})
    if missing:
        raise ValueError(f"history's records lack {missing}; each record needs {list(REQUIRED_KEYS)}.")
    return list(history)


def diagnose(history, alpha, metric: str = "squared_euclidean") -> Diagnosis:
    """The likely failure of a run from its records (dicts with REQUIRED_KEYS) and the loss's alpha and metric.

    First match wins: NaN or inf anywhere; over half the records without a valid triplet; alpha at least the
    largest distance between unit vectors (encodings of length 1); the last record collapsed; else healthy.
    """
    records, alpha, metric = _check_history(history), check_alpha(alpha), check_metric(metric)
    last = records[-1]
    if any(r[key] is not None and not math.isfinite(r[key]) for r in records for key in REQUIRED_KEYS):
        name = "nan"
    elif sum(r["active_fraction"] is None for r in records) > len(records) / 2:
        name = "no_valid_triplets"
    elif abs(last["embedding_norm"] - 1) < 1e-3 and alpha >= LARGEST_UNIT_DISTANCE[metric]:
        name = "margin_too_large"
    elif last["mean_d_an"] is not None and looks_collapsed(last["mean_d_an"], last["loss"], alpha):
        name = "collapsed"
    else:
        name = "healthy"
    return Diagnosis(name, EXPLANATIONS[name])


def summary_line(name: str, history) -> str:
    """ "<name> after <n> steps: loss ..., active_fraction ..., ...": the last record, rounded to 4 decimals."""
    last = _check_history(history)[-1]
    numbers = ", ".join(f"{key} {'None' if last[key] is None else format(last[key], '.4f')}" for key in REQUIRED_KEYS)
    return f"{name} after {len(history)} steps: {numbers}"


def train_fresh(loss_fn, images: torch.Tensor, labels: torch.Tensor, batches, lr: float, seed: int = 0,
                return_model: bool = False):
    """Train a new small `EmbeddingNet` with Adam, one `training_step` per (B,) index batch into (N, C, H, W) images.

    The same seed gives the same start. The loss (TripletLoss, or a function with ``return_stats``) runs
    unchecked, so a NaN is recorded. Returns one record per step (step and REQUIRED_KEYS, None where the batch
    has no such triplet or pair), and the network too when return_model.
    """
    lr, labels = check_positive(lr, "lr"), check_labels(labels, len(images))
    reporting = LossWithStats(loss_fn, check_values=False)
    if not reporting.reports_stats:
        raise TypeError("loss_fn must report what it averaged over: use TripletLoss(...), or a function with a "
                        "return_stats parameter that returns (loss, TripletStats) when it is True.")
    seed_everything(seed)
    model = EmbeddingNet(in_channels=images.shape[1], embedding_dim=16, width=8)
    optimizer, history = torch.optim.Adam(model.parameters(), lr=lr), []
    for step, batch in enumerate(batches, start=1):
        loss, embeddings = training_step(model, optimizer, reporting, images[batch], labels[batch])
        measured = batch_diagnostics(loss, embeddings, labels[batch], "squared_euclidean")  # (6,)
        loss, mean_ap, mean_an, norm, positives, negatives, terms, active = torch.cat(
            [measured, reporting.counts(embeddings.device)]).tolist()
        history.append({"step": step, "loss": loss + 0.0,  # + 0.0: the -0.0 of an empty batch becomes 0.0
                        "active_fraction": (active / terms if terms else 0.0) if positives and negatives else None,
                        "mean_d_ap": mean_ap if positives else None, "mean_d_an": mean_an if negatives else None,
                        "embedding_norm": norm})
    return (history, model) if return_model else history


def plot_broken_and_fixed(broken: list[dict], fixed: list[dict], keys: tuple[str, ...] = ("loss", "mean_d_an"),
                          title: str = "") -> Figure:
    """One panel per key in `keys` (from REQUIRED_KEYS): the broken and the fixed run (see `plot_curves`)."""
    unknown = [key for key in keys if key not in REQUIRED_KEYS]
    if unknown:
        raise ValueError(f"cannot plot {unknown}; choose from {list(REQUIRED_KEYS)}.")
    runs = {"fixed": _check_history(fixed), "broken": _check_history(broken)}
    return plot_curves({key: {name: ([r.get("step", i + 1) for i, r in enumerate(run)], [r[key] for r in run])
                              for name, run in runs.items()} for key in keys}, title=title)
