"""Command-line trainer: the notebook's training run, at scale, from a terminal.

    python -m course_utils.training.cli --dataset synthetic-faces --epochs 30 --mining semihard --out runs/faces

writes checkpoint.pt (resumable with --resume), history.json, metrics.json (held-out retrieval and
one-shot identification against the pixel baseline) and config.json into --out. A wrong flag, an
impossible combination or running out of GPU memory stops with one line on stderr and exit status 2.
Under torchrun write --identities-per-batch (torchrun reads --p as its own flag); rank 0 alone writes.
"""
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
from course_utils.training.models import BACKBONES, EmbeddingNet
from course_utils.training.trainer import Trainer

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# P when --p is not given, lowered to the number of training identities of a smaller dataset.
DEFAULT_P = 32


class UsageError(Exception):
    """A flag or combination of flags that cannot work; reported as one line, exit status 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none (the help text says what happens)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block, no traceback)."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


# Dataset name -> function of the arguments returning (images (N, C, H, W) in [0, 1], labels (N,)).
_LOADERS = {
    "synthetic-faces": lambda args: data.make_synthetic_faces(
        n_identities=args.identities, images_per_identity=args.pictures_per_identity, image_size=args.image_size,
        seed=args.seed,
    ),
    "digits": lambda args: data.load_digits_dataset(),
    "olivetti": lambda args: data.load_olivetti_faces(),
    "lfw": lambda args: data.load_lfw_people(),
    "mnist": lambda args: data.load_mnist(),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m course_utils.training.cli",
        description="Train an embedding network with the triplet loss and evaluate it on held-out identities.",
        formatter_class=_HelpFormatter,
    )
    what = parser.add_argument_group("data")
    what.add_argument("--dataset", choices=tuple(_LOADERS), default="synthetic-faces",
                      help="pictures to train on; olivetti, lfw and mnist must have been downloaded once "
                           "(see data/README.md)")
    what.add_argument("--identities", type=int, default=1000, help="synthetic-faces only: number of persons")
    what.add_argument("--pictures-per-identity", type=int, default=10,
                      help="synthetic-faces only: pictures of each person")
    what.add_argument("--image-size", type=int, default=32,
                      help="synthetic-faces only: picture side in pixels (32, or 64 for GPU runs; at least 16)")
    what.add_argument("--test-fraction", type=float, default=0.2,
                      help="share of identities held out for evaluation (never trained on)")
    model = parser.add_argument_group("network and loss")
    model.add_argument("--backbone", choices=BACKBONES, default="small", help="embedding network")
    model.add_argument("--width", type=int, default=32, help="channels of the first block of the small network")
    model.add_argument("--embedding-dim", type=int, default=128, help="length of each encoding")
    model.add_argument("--mining", choices=MININGS, default="semihard",
                       help="which triplets of a batch the loss uses: all, hard (batch-hard) or semihard")
    model.add_argument("--global-mining", action="store_true",
                       help="under torchrun: mine among the encodings of all processes (R x P x K) instead of "
                            "each process's own P x K batch; costs one all-gather of the encodings per step")
    model.add_argument("--alpha", type=float, default=0.2, help="margin of the triplet loss")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=20, help="total epochs (with --resume: including those done)")
    # The long alias is for torchrun, whose own parser takes a bare --p for its --print-completion.
    training.add_argument("--p", "--identities-per-batch", type=int, default=None,
                          help=f"identities per batch (P), of each process under torchrun; when not given, "
                               f"{DEFAULT_P}, or the number of training identities where the dataset has fewer")
    training.add_argument("--k", type=int, default=4, help="pictures per identity in a batch (K)")
    training.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    training.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    training.add_argument("--seed", type=int, default=0, help="seed for the network, the data split and the batches")
    training.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    training.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                          help="autocast on CUDA (bfloat16, or float16 with a gradient scaler); "
                               "auto = on for CUDA only")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt, history.json, metrics.json")
    output.add_argument("--resume", action="store_true", help="continue the run saved in --out up to --epochs")
    output.add_argument("--no-progress", action="store_true", help="no progress bar (for log files)")
    return parser


def _check_arguments(args) -> None:
    smallest_values = {"identities": 2, "pictures_per_identity": 2, "image_size": 16, "width": 1, "embedding_dim": 1,
                       "epochs": 1, "p": 2, "k": 2}
    for name, smallest in smallest_values.items():
        value = getattr(args, name)
        if value is not None and value < smallest:  # only --p may be left out (None)
            raise UsageError(f"--{name.replace('_', '-')} must be at least {smallest}, got {value}")
    if not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction must be between 0 and 1 (exclusive), got {args.test_fraction}")
    for name, value in (("alpha", args.alpha), ("weight_decay", args.weight_decay), ("seed", args.seed)):
        if value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.lr <= 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if args.dataset == "synthetic-faces" and args.k > args.pictures_per_identity:
        raise UsageError(
            f"--k {args.k} is larger than --pictures-per-identity {args.pictures_per_identity}: "
            "a batch cannot hold more pictures of a person than the person has"
        )
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and not checkpoint.is_file():
        raise UsageError(f"--resume was given but {checkpoint} does not exist; train without --resume first")
    if not args.resume and checkpoint.exists():
        raise UsageError(
            f"{args.out} already holds a run ({checkpoint}); add --resume to continue it or choose another --out"
        )


def _load_data(args):
    """Load the dataset and split it by identity; errors become one-line usage errors."""
    try:
        images, labels = _LOADERS[args.dataset](args)
    except (OSError, RuntimeError, ValueError) as error:
        raise UsageError(f"cannot load dataset {args.dataset!r}: {error}") from error
    train_idx, test_idx = data.split_by_identity(labels, test_fraction=args.test_fraction, seed=args.seed)
    train_labels = labels[train_idx]
    most = int(torch.bincount(train_labels).max())
    if args.k > most:
        raise UsageError(
            f"--k {args.k} is larger than the most pictures any training identity of {args.dataset} has ({most}); "
            f"use --k {most} or less"
        )
    return images[train_idx], train_labels, images[test_idx], labels[test_idx]


def _identities_per_batch(args, train_labels: torch.Tensor) -> int:
    """P: --p if given and possible, else DEFAULT_P lowered to the training identities (said in one line)."""
    identities = int(train_labels.unique().numel())
    if args.p is None:
        if identities >= DEFAULT_P:
            return DEFAULT_P
        if distributed.is_main_process():
            print(f"--p not given: using P = {identities}, the number of training identities of {args.dataset}.")
        return identities
    if args.p > identities:
        raise UsageError(
            f"--p {args.p} is larger than the {identities} training identities of {args.dataset}; "
            f"use --p {identities} or less (or leave --p out)"
        )
    return args.p


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def run(args) -> int:
    """Train and evaluate as the parsed arguments say, under torchrun too; returns the exit status."""
    try:
        distributed.init_from_environment(args.device)
    except (ValueError, RuntimeError) as error:  # half-set torchrun variables, a device that is not there
        raise UsageError(str(error)) from error
    try:
        with warnings.catch_warnings():
            if not distributed.is_main_process():  # the ranks run the same code: rank 0 warns for all
                warnings.simplefilter("ignore")
            return _train_and_evaluate(args)
    finally:
        distributed.shut_down()


def _train_and_evaluate(args) -> int:
    _check_arguments(args)
    train_images, train_labels, test_images, test_labels = _load_data(args)
    p = _identities_per_batch(args, train_labels)
    torch.manual_seed(args.seed)
    model = EmbeddingNet(
        in_channels=train_images.shape[1], embedding_dim=args.embedding_dim, backbone=args.backbone, width=args.width
    )
    precision = {"auto": "auto", "on": True, "off": False}[args.mixed_precision]
    checkpoint = args.out / "checkpoint.pt"
    loss = (GlobalMiningTripletLoss if args.global_mining else TripletLoss)(alpha=args.alpha, mining=args.mining)
    is_main = distributed.is_main_process()
    try:
        trainer = Trainer(
            model, train_images, train_labels, loss,
            test_images=test_images, test_labels=test_labels, p=p, k=args.k, lr=args.lr,
            weight_decay=args.weight_decay, seed=args.seed, device=args.device, mixed_precision=precision,
            checkpoint_path=checkpoint, progress=not args.no_progress,
        )  # fmt: skip
        if args.resume:
            trainer.load_checkpoint(checkpoint)
            if is_main:
                print(f"Resumed {checkpoint} at epoch {trainer.epoch}.")
    except torch.OutOfMemoryError:
        raise  # not a usage error: main() says which flags make the run smaller
    except (ValueError, RuntimeError) as error:  # a device that is not there, a mismatched checkpoint
        raise UsageError(str(error)) from error
    if is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        arguments = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
        _write_json(args.out / "config.json", {**arguments, "p": p, "world_size": distributed.world_size()})
    history = trainer.fit(args.epochs)
    if not is_main:  # rank 0 writes the history and evaluates for everyone
        return EXIT_INTERRUPTED if trainer.interrupted else 0
    _write_json(args.out / "history.json", history)
    if trainer.interrupted:
        print(f"Interrupted: history of {len(history)} epoch(s) in {args.out / 'history.json'}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    embeddings = embed(trainer.model, test_images, batch_size=512, device=trainer.device)
    metrics = retrieval_metrics(embeddings, test_labels.to(trainer.device))
    trained = one_shot_identification(embeddings, test_labels.to(trainer.device), seed=args.seed)
    pixels = one_shot_identification(test_images.flatten(1), test_labels, seed=args.seed)
    metrics.update(one_shot_accuracy=trained.accuracy, pixel_one_shot_accuracy=pixels.accuracy,
                   held_out_identities=trained.num_identities, one_shot_queries=trained.num_queries,
                   epochs=trainer.epoch)
    _write_json(args.out / "metrics.json", metrics)
    print(
        f"Held-out MAP@R {metrics['map_at_r']:.4f}, Precision@1 {metrics['precision_at_1']:.4f}; one-shot "
        f"identification {trained.accuracy:.4f} (pixels: {pixels.accuracy:.4f}).\n"
        f"Wrote {checkpoint}, {args.out / 'history.json'}, {args.out / 'metrics.json'} and {args.out / 'config.json'}."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status instead of raising on usage errors and out of GPU memory."""
    try:
        return run(build_parser().parse_args(argv))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except torch.OutOfMemoryError as error:
        print(
            "error: out of GPU memory: make each step smaller with a smaller --p or --k (identities and "
            "pictures per batch) or --image-size (synthetic-faces), or train on the CPU with --device cpu "
            f"({type(error).__name__}: {' '.join(str(error).split())})",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
