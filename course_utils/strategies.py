"""Choosing triplets, measured: the side-by-side comparison and the cost of "all triplets".

`compare_strategies` trains the same network (same initial weights), on the same P x K
batches, for the same number of steps, once per triplet-choosing strategy and seed:

* "random": B valid triplets drawn at random inside the batch, mean loss over them;
* "batch-all": every valid triplet of the batch, mean over those with a positive loss;
* "batch-hard": per anchor its farthest positive and closest negative;
* "semi-hard": per positive pair the closest negative farther than the positive (FaceNet).

It uses `course_utils.training.training_step`, the miners of `course_utils.mining` and
the losses of `course_utils.losses`, and records the loss, the fraction of active
triplets (positive loss), held-out retrieval quality and the share of random training
triplets whose loss is already zero. `time_batch_all` times the three ways to compute
the batch-all loss for growing batches (course fact F13).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from . import reference
from ._validate import check_alpha, check_choice, check_whole_number
from .data import PKBatchSampler, keyed_generator, make_random_triplets
from .distances import pairwise_distances, squared_euclidean
from .evaluation import embed, retrieval_metrics
from .losses import TripletLoss, TripletStats, batch_all_triplet_loss, triplet_loss
from .mining import mine_triplets, valid_triplet_mask
from .models import EmbeddingNet
from .notebook import seed_everything
from .training import training_step
from .triplet_kinds import zero_loss_fraction

STRATEGIES = ("random", "batch-all", "batch-hard", "semi-hard")
_MINING = {"batch-all": "all", "batch-hard": "hard", "semi-hard": "semihard"}
# Stream of keyed_generator for the random triplets, apart from the batch order's numbers.
_RANDOM_TRIPLET_STREAM = 1


@dataclass(frozen=True)
class ComparisonSettings:
    """What every run of the comparison shares.

    Attributes:
        steps: gradient steps per run.
        eval_every: steps between two measurements (the first is before training).
        p, k: P x K batches.
        alpha: the margin.
        lr: Adam's learning rate.
        embedding_dim: length of the encodings (unit length).
        width: channels of the first block of the small EmbeddingNet.
        probe_triplets: random training triplets used to measure the zero-loss fraction.
    """

    steps: int = 100
    eval_every: int = 20
    p: int = 16
    k: int = 4
    alpha: float = 0.2
    lr: float = 1e-3
    embedding_dim: int = 32
    width: int = 8
    probe_triplets: int = 2000

    def __post_init__(self):
        for name in ("steps", "eval_every", "p", "k", "embedding_dim", "width", "probe_triplets"):
            check_whole_number(getattr(self, name), name, minimum=2 if name in "pk" else 1)
        if self.steps % self.eval_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of eval_every ({self.eval_every}).")
        check_alpha(self.alpha)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")


class StrategyLoss:
    """The loss of one strategy as a callable (embeddings, labels) -> scalar, with ``last_stats``.

    Args:
        strategy: one of STRATEGIES.
        alpha: the margin.
        generator: draws the "random" strategy's triplets (ignored by the others).
    """

    def __init__(self, strategy: str, alpha: float, generator: torch.Generator | None = None):
        self.strategy = check_choice(strategy, "strategy", STRATEGIES)
        self.alpha = check_alpha(alpha)
        self.generator = generator
        self.mined = None if strategy == "random" else TripletLoss(alpha=alpha, mining=_MINING[strategy])
        self.last_stats: TripletStats | None = None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.mined is not None:
            loss = self.mined(embeddings, labels)
            self.last_stats = self.mined.last_stats
            return loss
        anchor, positive, negative = mine_triplets(embeddings, labels, strategy="random",
                                                   num_triplets=len(labels), generator=self.generator)
        losses = triplet_loss(embeddings[anchor], embeddings[positive], embeddings[negative], alpha=self.alpha)
        self.last_stats = TripletStats(len(losses), int((losses > 0).sum()))
        return losses.mean()


def _measure(model, test_images, test_labels, probe_images, probe_triplets, alpha) -> dict:
    """Held-out retrieval metrics and the zero-loss share of the fixed random probe triplets."""
    metrics = retrieval_metrics(embed(model, test_images, batch_size=500), test_labels)
    probe = embed(model, probe_images, batch_size=500)
    anchor, positive, negative = probe_triplets
    d_ap = squared_euclidean(probe[anchor], probe[positive])
    d_an = squared_euclidean(probe[anchor], probe[negative])
    return {"test_precision_at_1": metrics["precision_at_1"], "test_map_at_r": metrics["map_at_r"],
            "random_zero_loss_fraction": zero_loss_fraction(d_ap, d_an, alpha),
            "random_mean_d_an": float(d_an.mean())}


def train_one_strategy(strategy: str, seed: int, train_images: torch.Tensor, train_labels: torch.Tensor,
                       test_images: torch.Tensor, test_labels: torch.Tensor,
                       settings: ComparisonSettings) -> tuple[list[dict], EmbeddingNet]:
    """One run of the comparison: a fresh network trained with one strategy.

    The initial weights, the batch order and the probe triplets depend on ``seed`` only,
    so two strategies with the same seed start from the same network and see the same batches.

    Args:
        strategy: one of STRATEGIES.
        seed: non-negative int.
        train_images, train_labels: (N, C, H, W) pictures and (N,) identities to train on.
        test_images, test_labels: held-out identities for Precision@1 and MAP@R.
        settings: ComparisonSettings.
    Returns:
        records: one dict per measurement (step 0, eval_every, ..., steps) with strategy,
            seed, step, loss and active_fraction (means over the steps since the last
            measurement; None at step 0), test_precision_at_1, test_map_at_r,
            random_zero_loss_fraction and random_mean_d_an (mean d(A,N) of the probe
            triplets: near 0 means the encodings have collapsed together).
        model: the trained network.
    """
    check_choice(strategy, "strategy", STRATEGIES)
    if not isinstance(settings, ComparisonSettings):
        raise TypeError(f"settings must be a ComparisonSettings, got {type(settings).__name__}.")
    seed_everything(seed)
    model = EmbeddingNet(in_channels=train_images.shape[1], embedding_dim=settings.embedding_dim,
                         width=settings.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = StrategyLoss(strategy, settings.alpha, keyed_generator(seed, _RANDOM_TRIPLET_STREAM))
    sampler = PKBatchSampler(train_labels, p=settings.p, k=settings.k, seed=seed)
    # A fixed probe: 100 training persons' pictures and random triplets among them.
    probe_persons = train_labels.unique()[:100]
    probe_idx = torch.isin(train_labels, probe_persons).nonzero().flatten()
    probe_triplets = make_random_triplets(train_labels[probe_idx], settings.probe_triplets, seed=seed)
    measure = (model, test_images, test_labels, train_images[probe_idx], probe_triplets, settings.alpha)

    records = [{"strategy": strategy, "seed": seed, "step": 0, "loss": None, "active_fraction": None,
                **_measure(*measure)}]
    losses, actives, epoch, plan = [], [], 0, sampler.batches_for_epoch(0)
    for step in range(1, settings.steps + 1):
        row = (step - 1) - epoch * len(plan)
        if row == len(plan):
            epoch, row = epoch + 1, 0
            plan = sampler.batches_for_epoch(epoch)
        batch = plan[row]
        loss, _ = training_step(model, optimizer, loss_fn, train_images[batch], train_labels[batch])
        losses.append(float(loss))
        actives.append(loss_fn.last_stats.active_fraction)
        if step % settings.eval_every == 0:
            records.append({"strategy": strategy, "seed": seed, "step": step,
                            "loss": sum(losses) / len(losses), "active_fraction": sum(actives) / len(actives),
                            **_measure(*measure)})
            losses, actives = [], []
    return records, model


def compare_strategies(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                       test_labels: torch.Tensor, settings: ComparisonSettings,
                       strategies: tuple[str, ...] = STRATEGIES,
                       seeds: tuple[int, ...] = (0, 1)) -> tuple[list[dict], dict[tuple[str, int], EmbeddingNet]]:
    """Train one network per (strategy, seed) under identical conditions; all records in one list.

    Args:
        train_images, train_labels, test_images, test_labels: as in `train_one_strategy`.
        settings: ComparisonSettings shared by every run.
        strategies: names from STRATEGIES.
        seeds: at least one non-negative int; two or more show the spread.
    Returns:
        records: the records of every run (see `train_one_strategy`), in one list.
        models: the trained networks, by (strategy, seed).
    """
    if not seeds:
        raise ValueError("give at least one seed, for example seeds=(0, 1).")
    records, models = [], {}
    for strategy in strategies:
        for seed in seeds:
            run, models[strategy, seed] = train_one_strategy(strategy, seed, train_images, train_labels,
                                                             test_images, test_labels, settings)
            records.extend(run)
    return records, models


def summarise(records: list[dict], key: str, step: int) -> dict[str, tuple[float, float, float]]:
    """Mean, smallest and largest value of ``key`` over the seeds, per strategy, at one step.

    Args:
        records: from `compare_strategies`.
        key: a recorded number, for example "test_precision_at_1".
        step: a measured step.
    Returns:
        {strategy: (mean, min, max)} in the order the strategies were run.
    """
    found: dict[str, list[float]] = {}
    for record in records:
        if record["step"] == step and record.get(key) is not None:
            found.setdefault(record["strategy"], []).append(record[key])
    if not found:
        raise ValueError(f"no record has {key!r} at step {step}; check the key and the measured steps.")
    return {name: (sum(v) / len(v), min(v), max(v)) for name, v in found.items()}


_PANELS = (("loss", "training loss (mean over steps)"), ("active_fraction", "active fraction of chosen triplets"),
           ("test_precision_at_1", "held-out Precision@1"), ("random_zero_loss_fraction",
                                                              "random triplets with loss 0"),
           ("random_mean_d_an", "mean d(A,N) of random triplets"))


def plot_comparison(records: list[dict], keys: tuple[str, ...] = ("loss", "active_fraction",
                                                                   "test_precision_at_1")) -> Figure:
    """One panel per recorded number: the mean over seeds as a line, the range over seeds shaded.

    Args:
        records: from `compare_strategies`.
        keys: which numbers to plot (loss, active_fraction, test_precision_at_1,
            random_zero_loss_fraction, random_mean_d_an).
    Returns:
        the Figure.
    """
    titles = dict(_PANELS)
    unknown = [key for key in keys if key not in titles]
    if unknown:
        raise ValueError(f"cannot plot {unknown}; choose from {list(titles)}.")
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    figure = Figure(figsize=(4.0 * len(keys), 3.4))
    axes = figure.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for number, strategy in enumerate(strategies):
            steps = sorted({r["step"] for r in records if r["strategy"] == strategy and r[key] is not None})
            spread = [summarise([r for r in records if r["strategy"] == strategy], key, s) for s in steps]
            mean, low, high = (torch.tensor([s[strategy][i] for s in spread]) for i in range(3))
            ax.plot(steps, mean, marker=".", color=f"C{number}", label=strategy)
            ax.fill_between(steps, low, high, color=f"C{number}", alpha=0.2)
        ax.set_xlabel("gradient step")
        ax.set_title(titles[key], fontsize=10)
    axes[0].set_ylabel("value (line: mean, band: range over seeds)")
    axes[-1].legend(fontsize=8, title=f"{len(seeds)} seeds", title_fontsize=8)
    figure.tight_layout()
    return figure


def masked_batch_all_loss(embeddings: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """Batch-all loss from the (B, B, B) valid-triplet mask: the textbook vectorised version.

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer identities.
        alpha: the margin.
    Returns:
        0-d tensor: mean over the valid triplets with a positive loss (0 when there is none).
    """
    dist = pairwise_distances(embeddings)
    # losses[a, p, n] = d(a, p) - d(a, n) + alpha for all B^3 index triples at once.
    losses = (dist.unsqueeze(2) - dist.unsqueeze(1) + check_alpha(alpha)).clamp(min=0)
    losses = losses * valid_triplet_mask(labels)
    return losses.sum() / (losses > 0).sum().clamp(min=1)


def _seconds(function, repeats: int) -> float:
    """Best of ``repeats`` wall-clock times of function(): the least disturbed by other work."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def time_batch_all(batch_sizes: tuple[int, ...], k: int = 4, naive_up_to: int = 64, repeats: int = 3,
                   seed: int = 0) -> list[dict]:
    """Time the batch-all loss three ways for P x K batches of growing size B.

    The naive loop is `course_utils.reference.batch_all_triplet_loss` (one Python step per
    triplet), the masked version `masked_batch_all_loss` (B^3 numbers at once), and the
    course's `losses.batch_all_triplet_loss` (sorted negatives, no B^3 tensor).

    Args:
        batch_sizes: B values, each a multiple of k with B / k >= 2.
        k: pictures per identity.
        naive_up_to: the naive loop is timed only for B up to this (it grows like B^3).
        repeats: timings per method; the best is kept.
        seed: seed of the random encodings.
    Returns:
        one dict per B: batch_size, triplets, naive_seconds (None above naive_up_to),
        masked_seconds, course_seconds, and max_difference between the three losses.
    """
    rows = []
    for b in batch_sizes:
        if b % k or b // k < 2:
            raise ValueError(f"batch size {b} must be a multiple of k={k} with at least 2 identities.")
        generator = torch.Generator().manual_seed(seed)
        embeddings = torch.nn.functional.normalize(torch.randn(b, 32, generator=generator), dim=1)
        labels = torch.arange(b // k).repeat_interleave(k)
        course = batch_all_triplet_loss(embeddings, labels)
        masked = masked_batch_all_loss(embeddings, labels)
        row = {"batch_size": b, "triplets": b * (k - 1) * (b - k), "naive_seconds": None,
               "masked_seconds": _seconds(lambda: masked_batch_all_loss(embeddings, labels), repeats),
               "course_seconds": _seconds(lambda: batch_all_triplet_loss(embeddings, labels), repeats),
               "max_difference": float((course - masked).abs())}
        if b <= naive_up_to:
            naive = reference.batch_all_triplet_loss(embeddings, labels)[0]
            row["naive_seconds"] = _seconds(lambda: reference.batch_all_triplet_loss(embeddings, labels), 1)
            row["max_difference"] = max(row["max_difference"], float((course.double() - naive).abs()))
        rows.append(row)
    return rows


def plot_timings(rows: list[dict]) -> Figure:
    """Seconds per batch-all loss against B (log-log), with the triplet count on a second axis.

    Args:
        rows: from `time_batch_all`.
    Returns:
        the Figure.
    """
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
