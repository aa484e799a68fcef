"""Training quality and speed: the course's losses against pytorch-metric-learning's.

Every run trains the same network (same initial weights) on the same pictures with the
same P x K batches, epochs, optimiser (Adam) and seed, through the same
``course_utils.training.trainer.Trainer``; only the loss differs:

* course semi-hard  - ``TripletLoss(mining="semihard")`` (FaceNet / TF-Addons semantics);
* PML semi-hard     - ``TripletMarginLoss`` + ``TripletMarginMiner("semihard")``;
* course batch-hard - ``TripletLoss(mining="hard")`` (Hermans et al.);
* PML hard          - ``TripletMarginLoss`` + ``TripletMarginMiner("hard")``;
* PML batch-hard    - ``TripletMarginLoss`` + ``BatchHardMiner`` (the same rule as the
                      course's batch-hard, PML's way).

PML is configured with squared Euclidean distances and the same margin, so its losses
are on the course's scale. After the last epoch the held-out identities (never trained
on) are evaluated: MAP@R and Precision@1 (Musgrave et al. 2020). Time per epoch is
the training time only (the evaluation is excluded), the median over the epochs; the
forward pass of the loss alone (mining included) is timed too, since on a CPU the
network's convolutions take most of an epoch.

    python benchmarks/compare_pml.py                    # faces and digits, CPU, a few minutes each
    python benchmarks/compare_pml.py --dataset digits --epochs 3
    python benchmarks/compare_pml.py --device cuda --identities 1000 --image-size 64
    python benchmarks/compare_pml.py --throughput          # pictures/s against the compute bound
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import pytorch_metric_learning
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from course_utils.data import load_digits_dataset, make_synthetic_faces, split_by_identity
from course_utils.core.losses import TripletLoss
from course_utils.training.models import EmbeddingNet
from course_utils.training.device import describe_device
from course_utils.training.step import training_step
from course_utils.training.trainer import Trainer

ALPHA = 0.2
# Which PML run each course run is compared with (the first is the pairing).
PAIRS = (
    ("course semi-hard", "PML semi-hard"),
    ("course batch-hard", "PML hard"),
    ("course batch-hard", "PML batch-hard"),
)


class TimedLoss:
    """Wraps a loss and adds up the wall time of its forward pass (mining included).

    Args:
        loss_fn: callable (embeddings, labels) -> scalar loss with ``alpha`` and ``metric``.
    """

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn
        self.alpha = loss_fn.alpha
        self.metric = loss_fn.metric
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _synchronize(embeddings.device)
        start = time.perf_counter()
        loss = self.loss_fn(embeddings, labels)
        _synchronize(embeddings.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return loss


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times measure it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PMLTripletLoss:
    """pytorch-metric-learning's TripletMarginLoss after a miner, callable as loss(embeddings, labels).

    Args:
        miner: a PML miner (TripletMarginMiner or BatchHardMiner) using squared distances.
        alpha: the margin.
    """

    metric = "squared_euclidean"

    def __init__(self, miner, alpha: float = ALPHA):
        self.alpha = alpha
        self.miner = miner
        # power=2: squared Euclidean distances, the course's d (PML's default is plain Euclidean).
        self.loss = pml_losses.TripletMarginLoss(margin=alpha, distance=pml_distances.LpDistance(power=2))

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


def make_losses(alpha: float) -> dict:
    """The five losses, by the names used in the tables."""
    squared = pml_distances.LpDistance(power=2)
    return {
        "course semi-hard": TripletLoss(alpha=alpha, mining="semihard"),
        "PML semi-hard": PMLTripletLoss(pml_miners.TripletMarginMiner(alpha, "semihard", distance=squared), alpha),
        "course batch-hard": TripletLoss(alpha=alpha, mining="hard"),
        "PML hard": PMLTripletLoss(pml_miners.TripletMarginMiner(alpha, "hard", distance=squared), alpha),
        "PML batch-hard": PMLTripletLoss(pml_miners.BatchHardMiner(distance=squared), alpha),
    }


def load(dataset: str, identities: int, image_size: int, seed: int):
    """Pictures split by identity: (train_images, train_labels, test_images, test_labels)."""
    if dataset == "faces":
        images, labels = make_synthetic_faces(
            n_identities=identities, images_per_identity=10, image_size=image_size, seed=seed
        )
    else:
        images, labels = load_digits_dataset()
    train_idx, test_idx = split_by_identity(labels, test_fraction=0.2, seed=seed)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def make_trainer(loss_fn, data, args, p, k) -> Trainer:
    """A trainer starting from the seed's initial weights (identical for every loss)."""
    train_images, train_labels, test_images, test_labels = data
    torch.manual_seed(args.seed)
    model = EmbeddingNet(in_channels=train_images.shape[1], embedding_dim=args.embedding_dim, width=args.width)
    return Trainer(
        model, train_images, train_labels, TimedLoss(loss_fn), test_images=test_images, test_labels=test_labels,
        p=p, k=k, lr=args.lr, seed=args.seed, device=args.device, progress=False, verbose=False,
    )  # fmt: skip


def summarise(name: str, trainer: Trainer) -> dict:
    """Final held-out metrics and timings of one finished run."""
    history = trainer.history
    return {
        "name": name,
        "map_at_r": history[-1]["test_map_at_r"],
        "precision_at_1": history[-1]["test_precision_at_1"],
        "best_map_at_r": max(row["test_map_at_r"] for row in history),
        # The median is robust to the odd slow epoch when other programs share the CPU.
        "seconds_per_epoch": statistics.median(row["train_seconds"] for row in history),
        "loss_ms_per_batch": 1000 * trainer.loss.loss_fn.seconds / trainer.loss.loss_fn.calls,
        "device": trainer.device,
    }


def print_tables(dataset: str, results: dict, args, p: int, k: int, sizes: str) -> None:
    device = next(iter(results.values()))["device"]
    print(
        f"\n### {dataset} on {device}: {sizes}; P={p} x K={k}, {args.epochs} epochs, "
        f"Adam lr={args.lr}, seed {args.seed}\n"
    )
    print(
        "| loss | held-out MAP@R | Precision@1 | best MAP@R (any epoch) | time per epoch (s) "
        "| loss forward (ms/batch) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in results.values():
        print(
            f"| {row['name']} | {row['map_at_r']:.4f} | {row['precision_at_1']:.4f} | "
            f"{row['best_map_at_r']:.4f} | {row['seconds_per_epoch']:.2f} | {row['loss_ms_per_batch']:.2f} |"
        )
    print("\n| course vs PML | MAP@R ratio (target >= 1) | time ratio (target <= 1) | MAP@R | time |")
    print("|---|---:|---:|---|---|")
    for course, pml in PAIRS:
        quality = results[course]["map_at_r"] / results[pml]["map_at_r"]
        speed = results[course]["seconds_per_epoch"] / results[pml]["seconds_per_epoch"]
        print(
            f"| {course} / {pml} | {quality:.3f} | {speed:.3f} | {'met' if quality >= 1 else 'missed'} | "
            f"{'met' if speed <= 1 else 'missed'} |"
        )


def run_dataset(dataset: str, args) -> dict:
    data = load(dataset, args.identities, args.image_size, args.seed)
    train_images, train_labels, test_images, test_labels = data
    # Digits have only 10 identities (8 for training) of about 180 pictures each.
    p, k = (16, 4) if dataset == "faces" else (4, 16)
    sizes = (
        f"{len(train_labels.unique())} training identities ({len(train_labels)} pictures "
        f"{tuple(train_images.shape[1:])}), {len(test_labels.unique())} held-out ({len(test_labels)} pictures)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-batch notes are expected from PML's empty mines
        trainers = {name: make_trainer(loss_fn, data, args, p, k) for name, loss_fn in make_losses(ALPHA).items()}
        # Round robin, one epoch of each run in turn: a burst of other work on the machine
        # then slows every run alike instead of the one that happened to be running.
        for epoch in range(1, args.epochs + 1):
            for trainer in trainers.values():
                trainer.fit(epoch)
    results = {name: summarise(name, trainer) for name, trainer in trainers.items()}
    print_tables(dataset, results, args, p, k, sizes)
    return results


def trivial_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A loss that costs nothing: what is left of a step is the network's own work."""
    return embeddings.sum()


def measure_throughput(args) -> None:
    """Training pictures per second against the compute bound of the same network.

    The bound is a bare loop of ``training_step`` (same network, optimiser, precision and
    memory format) on one fixed P x K batch with a trivial loss: no mining, no diagnostics,
    no batch indexing. The trainer's pictures per second (median over the epochs after a
    warm-up epoch) divided by the bound says how much the pipeline around the network costs.
    """
    data = load("faces", args.identities, args.image_size, args.seed)
    trainer = make_trainer(TripletLoss(alpha=ALPHA, mining="semihard"), data, args, 16, 4)
    trainer.fit(1 + args.epochs)
    training = statistics.median(row["pictures_per_second"] for row in trainer.history[1:])
    batch = trainer.sampler.batches_for_epoch(0)[0].to(trainer.device)
    images, labels = trainer.train_images[batch], trainer.train_labels[batch]
    if trainer.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    steps = len(trainer.sampler)
    for _ in range(3):  # warm-up: kernel selection, allocator
        training_step(trainer.model, trainer.optimizer, trivial_loss, images, labels, trainer.scaler, trainer.amp_dtype)
    _synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        training_step(trainer.model, trainer.optimizer, trivial_loss, images, labels, trainer.scaler, trainer.amp_dtype)
    _synchronize(trainer.device)
    bound = steps * len(labels) / (time.perf_counter() - start)
    print(f"\n### throughput on {describe_device(trainer.device, trainer.amp_dtype)}\n")
    print("| what | pictures per second |")
    print("|---|---:|")
    print(f"| Trainer, semi-hard loss (median of {args.epochs} epochs after a warm-up epoch) | {training:.0f} |")
    print(f"| bare forward + backward + step, trivial loss, one fixed batch ({steps} steps) | {bound:.0f} |")
    print(f"| ratio (target >= 0.9 on a GPU) | {training / bound:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("faces", "digits", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run")
    parser.add_argument("--identities", type=int, default=500, help="generated persons (faces only)")
    parser.add_argument("--image-size", type=int, default=32, help="face picture side in pixels")
    parser.add_argument("--width", type=int, default=16, help="channels of the network's first block")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--throughput", action="store_true",
                        help="measure training pictures/s against the network's compute bound instead (faces)")
    args = parser.parse_args()
    datasets = ("faces", "digits") if args.dataset == "both" else (args.dataset,)
    print(
        f"torch {torch.__version__}, pytorch-metric-learning {pytorch_metric_learning.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU thread(s)"
    )
    if args.throughput:
        measure_throughput(args)
        return
    for dataset in datasets:
        run_dataset(dataset, args)


if __name__ == "__main__":
    main()
