"""Training on several processes (one per GPU) with PyTorch's DistributedDataParallel.

R processes ("ranks") each hold a copy of the network and draw their own P x K batch; DDP averages the
gradients over the ranks before every optimiser step, so all copies stay identical. ``torchrun`` starts
the processes and names each one in environment variables, read by ``init_from_environment``. Mining
stays inside each rank's batch unless the loss gathers the encodings of all ranks first
(``GlobalMiningTripletLoss``): then every anchor mines among R x P x K encodings, at the price of one
all-gather per step.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

from course_utils._validate import check_alpha, check_embeddings, check_labels, check_whole_number
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import TripletLoss
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask, hardest_pairs
from course_utils.lessons.notebook import pick_device

# What torchrun sets for every process; a process started without it is a single-process run.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """True inside a process group started by ``init_from_environment`` (or by hand)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 .. world_size() - 1 (0 without distributed training)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes training together (1 without distributed training)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the one process that prints and writes files."""
    return rank() == 0


def init_from_environment(device: str = "auto", environ: Mapping[str, str] | None = None) -> torch.device:
    """Join the process group torchrun set up, or do nothing in a plain single-process run.

    Args:
        device: as for ``pick_device``; under torchrun on CUDA each process takes the GPU numbered by LOCAL_RANK.
        environ: the environment variables to read (default: os.environ).
    Returns:
        the torch.device this process trains on.
    Raises:
        ValueError: the variables are half set or hold impossible values; the message says how to launch.
    """
    environ = os.environ if environ is None else environ
    chosen = pick_device(device)
    present = [name for name in LAUNCH_VARIABLES if environ.get(name)]
    if not present:
        return chosen
    missing = [name for name in LAUNCH_VARIABLES if name not in present]
    if missing:
        raise ValueError(
            f"distributed training needs the environment variables {', '.join(LAUNCH_VARIABLES)}, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set (found {', '.join(present)}). "
            "Start the processes with torchrun (torchrun --nproc_per_node=2 -m course_utils.training.cli ...), "
            "or unset the variables for a single-process run."
        )
    numbers = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        text = environ.get(name, "0")
        if not text.isdigit():
            raise ValueError(f"environment variable {name} must be a whole number >= 0, got {text!r}.")
        numbers[name] = int(text)
    if not numbers["RANK"] < numbers["WORLD_SIZE"]:
        raise ValueError(
            f"RANK={numbers['RANK']} must be below WORLD_SIZE={numbers['WORLD_SIZE']} (ranks count 0, 1, ...); "
            "let torchrun set both."
        )
    if chosen.type == "cuda":
        if numbers["LOCAL_RANK"] >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={numbers['LOCAL_RANK']} but this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (--nproc_per_node)."
            )
        chosen = torch.device("cuda", numbers["LOCAL_RANK"])
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=numbers["RANK"], world_size=numbers["WORLD_SIZE"])
    return chosen


def shut_down() -> None:
    """Leave the process group (no-op without one); call it once at the end of a run."""
    if is_distributed():
        dist.destroy_process_group()


def gather_with_grad(
    embeddings: torch.Tensor, labels: torch.Tensor, check_values: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the encodings (B, D) and labels (B,) of every rank; gradients flow back to this rank's part.

    Every rank must call it at the same step with a batch of the same size. Without distributed training it
    returns its inputs. check_values: refuse NaN or inf encodings (a read on the host); False reads nothing.

    Returns:
        (R * B, D) encodings and (R * B,) labels, rank 0's rows first, the same on every rank.
    """
    embeddings = check_embeddings(embeddings, check_values=check_values)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    if not is_distributed():
        return embeddings, labels
    # torch.distributed.nn's all_gather is differentiable, torch.distributed.all_gather is not. PyTorch marks
    # it deprecated in favour of a private module; it is still the public one.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        gathered = torch.cat(all_gather(embeddings), dim=0)
    all_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(all_labels, labels.contiguous())
    return gathered, torch.cat(all_labels)


class GlobalMiningTripletLoss(TripletLoss):
    """``TripletLoss`` (same arguments) whose mining looks at the encodings of all ranks.

    Every rank computes the same loss, the mean over the triplets of the whole gathered batch; with one
    process it is exactly ``TripletLoss``.
    """

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the gathered (R * B, D) batch; embeddings (B, D), labels (B,) are this rank's."""
        # Every rank computes the same global loss L, so the backward of the all-gather SUMS R identical
        # gradients into each rank's part, and DDP then AVERAGES the parameter gradients over the R ranks.
        # The two cancel: the update equals one process training on the concatenated batch.
        return super().forward(*gather_with_grad(embeddings, labels, self.check_values))


class MiningComparison(NamedTuple):
    """Local mining (each rank's batch) against global mining (all ranks' batches), same encodings.

    hardest_negative: mean over anchors of the distance to the closest negative.
    active_hard: share of anchors whose batch-hard triplet violates the margin.
    semihard_available: share of anchor-positive pairs with a negative d(A,P) < d(A,N) < d(A,P) + alpha.
    """

    hardest_negative_local: float
    hardest_negative_global: float
    active_hard_local: float
    active_hard_global: float
    semihard_available_local: float
    semihard_available_global: float


def compare_local_and_global_mining(
    embeddings: torch.Tensor, labels: torch.Tensor, world_size: int, alpha: float = 0.2
) -> MiningComparison:
    """Simulate R ranks in one process: mine (squared Euclidean) inside each chunk, then in the whole batch.

    Args:
        embeddings: (R * B, D) encodings of the global batch; rank r holds rows r*B .. (r+1)*B - 1.
        labels: (R * B,) identities.
        world_size: R, which must divide the number of rows.
    Returns:
        MiningComparison of floats; the global hardest negative is never farther than the local one.
    """
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    alpha = check_alpha(alpha)
    check_whole_number(world_size, "world_size")
    if embeddings.shape[0] % world_size:
        raise ValueError(
            f"{embeddings.shape[0]} encodings cannot be split into {world_size} equal rank batches; "
            "give R * B rows (every rank holds a batch of the same size)."
        )
    with torch.no_grad():
        chunks = zip(embeddings.chunk(world_size), labels.chunk(world_size))
        local = torch.stack([_mining_sums(e, lab, alpha) for e, lab in chunks]).sum(dim=0)  # (5,)
        whole = _mining_sums(embeddings, labels, alpha)  # (5,)
    sums = torch.stack([local, whole])  # (2, 5): local, then global
    ratios = sums[:, [0, 2, 3]] / sums[:, [1, 1, 4]]  # (2, 3): mean hardest d(A,N), active share, semi-hard share
    (hard_l, active_l, semi_l), (hard_g, active_g, semi_g) = ratios.tolist()
    return MiningComparison(hard_l, hard_g, active_l, active_g, semi_l, semi_g)


def _mining_sums(embeddings, labels, alpha) -> torch.Tensor:
    """(5,) [sum of hardest d(A,N), anchors, active batch-hard anchors, pairs with a semi-hard negative, pairs]."""
    dist_matrix = pairwise_distances(embeddings).double()
    positive_idx, negative_idx, has_both = hardest_pairs(dist_matrix, labels)
    rows = torch.arange(len(labels))
    hardest_ap, hardest_an = dist_matrix[rows, positive_idx][has_both], dist_matrix[rows, negative_idx][has_both]
    d_ap = dist_matrix.unsqueeze(2)  # (B, B, 1): anchor a, positive p
    d_an = dist_matrix.unsqueeze(1)  # (B, 1, B): anchor a, negative n
    semihard = (d_an > d_ap) & (d_an < d_ap + alpha) & anchor_negative_mask(labels).unsqueeze(1)
    pairs = anchor_positive_mask(labels) & has_both.unsqueeze(1)
    active = hardest_ap - hardest_an + alpha > 0
    return torch.stack([hardest_an.sum(), has_both.sum(), active.sum(), (semihard.any(dim=2) & pairs).sum(),
                        pairs.sum()]).float()


def gather_bytes_per_step(world_size: int, batch_size: int, embedding_dim: int) -> int:
    """Bytes of float32 encodings gathered on every rank per step: R x (P * K per rank) x D x 4.

    The backward pass sends as many gradient bytes back; DDP averages 4 bytes per network parameter anyway.
    """
    for value, name in ((world_size, "world_size"), (batch_size, "batch_size"), (embedding_dim, "embedding_dim")):
        check_whole_number(value, name)
    return world_size * batch_size * embedding_dim * 4


def torchrun_command(nproc_per_node: int, train_arguments: Sequence[str], python: str = "python") -> list[str]:
    """The command (a list of strings) that starts ``course_utils.training.cli`` with these flags on
    nproc_per_node processes: ``python -m torch.distributed.run`` (what ``torchrun`` runs), --standalone
    picking a free port so that two runs never collide."""
    check_whole_number(nproc_per_node, "nproc_per_node")
    if isinstance(train_arguments, str) or not all(isinstance(a, str) for a in train_arguments):
        raise TypeError("train_arguments must be a list of strings, e.g. ['--epochs', '2', '--out', 'runs/x'].")
    if any(argument == "--p" or argument.startswith("--p=") for argument in train_arguments):
        raise ValueError(
            "torchrun reads --p as an abbreviation of its own --print-completion; "
            "write --identities-per-batch (the same flag of course_utils.training.cli) instead."
        )
    launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
    return [*launcher, "-m", "course_utils.training.cli", *train_arguments]


class LaunchResult(NamedTuple):
    """What a launched training run left: history.json, metrics.json, the printed text and its warnings."""

    history: list
    metrics: dict
    output: str
    stderr: str


def launch_training(
    nproc_per_node: int, train_arguments: Sequence[str], out: str | Path, timeout: float = 120.0
) -> LaunchResult:
    """Run ``course_utils.training.cli`` under torchrun as a child process, one CPU thread per process.

    Args:
        train_arguments: flags of the trainer, without --out.
        out: the run's folder (passed as --out).
        timeout: seconds before the run is stopped and an error raised.
    Raises:
        RuntimeError: the run failed or timed out; the message ends with its last output.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}.")
    out = Path(out)
    command = torchrun_command(nproc_per_node, [*train_arguments, "--out", str(out)], python=sys.executable)
    # The children must not inherit a process group of ours, nor share the cores with more than one thread each.
    environment = {key: value for key, value in os.environ.items() if key not in LAUNCH_VARIABLES}
    environment.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # A session of its own: on a timeout the launcher and all its workers are stopped together.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"the run did not finish within {timeout} s: {' '.join(command)}") from error
    if process.returncode != 0:
        tail = (stdout + stderr)[-2000:]
        raise RuntimeError(f"the run failed (exit status {process.returncode}); its last output:\n{tail}")
    history, metrics = (json.loads((out / name).read_text()) for name in ("history.json", "metrics.json"))
    return LaunchResult(history, metrics, stdout, stderr)
