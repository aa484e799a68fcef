"""Command-line trainer: ``python -m course_utils.training.cli --dataset synthetic-faces --out runs/faces`` writes
checkpoint.pt (resumable with --resume), history.json, metrics.json and config.json into --out; under torchrun
rank 0 alone writes, and P is --identities-per-batch (torchrun reads --p as its own flag)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from course_utils import data
from course_utils.core.losses import MININGS, TripletLoss
from course_utils.evaluation.retrieval import embed, one_shot_identification, retrieval_metrics
from course_utils.training import distributed
from course_utils.training.distributed import GlobalMiningTripletLoss
from course_utils.training.models import EmbeddingNet
from course_utils.training.trainer import Trainer

DEFAULT_P = 32  # lowered to the number of training identities of a smaller dataset
# Names in course_utils.data, looked up when a run starts, so a test can stand in a fake loader.
_LOADERS = {"synthetic-faces": "make_synthetic_faces", "digits": "load_digits_dataset",
            "olivetti": "load_olivetti_faces", "lfw": "load_lfw_people", "mnist": "load_mnist"}


class UsageError(Exception):
    """Flags that cannot work; reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.training.cli",
                                     description="Train an embedding network with the triplet loss.")
    add = parser.add_argument
    add("--dataset", choices=tuple(_LOADERS), default="synthetic-faces",
        help="olivetti, lfw and mnist must have been downloaded once (see data/README.md)")
    add("--identities", type=int, default=1000, help="synthetic-faces: number of persons")
    add("--pictures-per-identity", type=int, default=10, help="synthetic-faces: pictures of each person")
    add("--image-size", type=int, default=32, help="synthetic-faces: picture side in pixels, at least 16")
    add("--width", type=int, default=32, help="channels of the network's first block")
    add("--embedding-dim", type=int, default=128, help="length of each encoding")
    add("--mining", choices=MININGS, default="semihard", help="which triplets of a batch the loss uses")
    add("--global-mining", action="store_true", help="under torchrun: mine among the encodings of all processes")
    add("--epochs", type=int, default=20, help="total epochs, with --resume including those done")
    add("--p", "--identities-per-batch", type=int, help=f"identities per batch (default {DEFAULT_P} or fewer)")
    add("--k", type=int, default=4, help="pictures per identity in a batch")
    add("--lr", type=float, default=1e-3, help="Adam learning rate")
    add("--seed", type=int, default=0, help="seed of the network, the data split and the batches")
    add("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    add("--out", type=Path, required=True, help="folder for checkpoint.pt, history.json, metrics.json")
    add("--resume", action="store_true", help="continue the run saved in --out up to --epochs")
    add("--no-progress", action="store_true", help="no progress bar, one line per epoch (for log files)")
    return parser


def _check_arguments(args) -> None:
    smallest = {"identities": 2, "pictures_per_identity": 2, "image_size": 16, "width": 1, "embedding_dim": 1,
                "epochs": 1, "p": 2, "k": 2}
    for name, minimum in smallest.items():
        if getattr(args, name) is not None and getattr(args, name) < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    checkpoint = args.out / "checkpoint.pt"
    if args.resume != checkpoint.is_file():
        raise UsageError(f"--resume was given but {checkpoint} does not exist" if args.resume else
                         f"{args.out} already holds a run; add --resume to continue it or choose another --out")


def _load_data(args):
    """(train images, train labels, test images, test labels, P): split by identity, a fifth held out."""
    faces = dict(n_identities=args.identities, images_per_identity=args.pictures_per_identity,
                 image_size=args.image_size, seed=args.seed) if args.dataset == "synthetic-faces" else {}
    try:
        images, labels = getattr(data, _LOADERS[args.dataset])(**faces)
    except (OSError, RuntimeError, ValueError) as error:
        raise UsageError(f"cannot load dataset {args.dataset!r}: {error}") from error
    train, test = data.split_by_identity(labels, test_fraction=0.2, seed=args.seed)
    most, identities = int(torch.bincount(labels[train]).max()), int(labels[train].unique().numel())
    if args.k > most:
        raise UsageError(f"--k {args.k} is larger than the {most} pictures of the best-covered training identity; "
                         f"use --k {most} or less")
    if args.p is not None and args.p > identities:
        raise UsageError(f"--p {args.p} is larger than the {identities} training identities of {args.dataset}; "
                         f"use --p {identities} or less")
    if args.p is None and identities < DEFAULT_P and distributed.rank() == 0:
        print(f"--p not given: using P = {identities}, the number of training identities of {args.dataset}.")
    return images[train], labels[train], images[test], labels[test], args.p or min(DEFAULT_P, identities)


def run(args) -> int:
    """Train and evaluate as the parsed arguments say, under torchrun too; returns the exit status."""
    try:
        distributed.init_from_environment(args.device)
    except (ValueError, RuntimeError) as error:  # half-set torchrun variables, a device that is not there
        raise UsageError(str(error)) from error
    try:
        with warnings.catch_warnings():
            if not distributed.rank() == 0:  # the ranks run the same code: rank 0 warns for all
                warnings.simplefilter("ignore")
            return _train_and_evaluate(args)
    finally:
        distributed.shut_down()


def _train_and_evaluate(args) -> int:
    checkpoint, is_main = args.out / "checkpoint.pt", distributed.rank() == 0
    try:
        _check_arguments(args)
        train_images, train_labels, test_images, test_labels, p = _load_data(args)
        torch.manual_seed(args.seed)
        model = EmbeddingNet(in_channels=train_images.shape[1], embedding_dim=args.embedding_dim, width=args.width)
        loss = (GlobalMiningTripletLoss if args.global_mining else TripletLoss)(mining=args.mining)
        trainer = Trainer(model, train_images, train_labels, loss, test_images=test_images, test_labels=test_labels,
                          p=p, k=args.k, lr=args.lr, seed=args.seed, device=args.device, checkpoint_path=checkpoint,
                          progress=not args.no_progress)  # fmt: skip
        if args.resume:
            trainer.load_checkpoint(checkpoint)
            if is_main:
                print(f"Resumed {checkpoint} at epoch {trainer.epoch}.")
    except torch.OutOfMemoryError:
        raise  # main() says which flags make the run smaller
    except (ValueError, RuntimeError) as error:  # a bad --lr or --seed, no such device, a mismatched checkpoint
        raise UsageError(str(error)) from error
    if is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        (args.out / "config.json").write_text(json.dumps(config | {"p": p, "world_size": trainer.world_size}))
    history = trainer.fit(args.epochs)
    if is_main:
        (args.out / "history.json").write_text(json.dumps(history, indent=1))
    if trainer.interrupted or not is_main:  # rank 0 evaluates for everyone
        return 130 if trainer.interrupted else 0
    embeddings = embed(trainer.model, test_images, batch_size=512, device=trainer.device)
    metrics = retrieval_metrics(embeddings, test_labels.to(trainer.device))
    trained = one_shot_identification(embeddings, test_labels.to(trainer.device), seed=args.seed)
    pixels = one_shot_identification(test_images.flatten(1), test_labels, seed=args.seed)
    metrics.update(one_shot_accuracy=trained.accuracy, pixel_one_shot_accuracy=pixels.accuracy,
                   held_out_identities=trained.num_identities, epochs=trainer.epoch)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"Held-out MAP@R {metrics['map_at_r']:.4f}, one-shot identification {trained.accuracy:.4f} (pixels: "
          f"{pixels.accuracy:.4f}). Wrote {checkpoint}, history.json, metrics.json and config.json.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; impossible settings and out of GPU memory give one error line (argparse reports bad flags)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
    except torch.OutOfMemoryError as error:
        print("error: out of GPU memory: make each step smaller with a smaller --p or --k (identities and pictures "
              "per batch) or --image-size (synthetic-faces), or train on the CPU with --device cpu "
              f"({type(error).__name__}: {' '.join(str(error).split())})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
