"""Training on several processes (one per GPU) with DistributedDataParallel, started by ``torchrun``.

Each rank draws its own P x K batch and DDP averages the gradients; ``GlobalMiningTripletLoss`` first gathers
the encodings of all ranks, so every anchor mines among R x P x K of them at the price of one all-gather per step.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

from course_utils._validate import check_alpha, check_embeddings, check_labels, check_whole_number
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import TripletLoss
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask, hardest_pairs
from course_utils.training.device import pick_device

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """True inside a process group (``init_from_environment`` joins the one torchrun set up)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 .. world_size() - 1 (0 without distributed training)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes training together (1 without distributed training)."""
    return dist.get_world_size() if is_distributed() else 1


def init_from_environment(device: str = "auto") -> torch.device:
    """Join the process group torchrun set up, if any; the device this process trains on (on CUDA: LOCAL_RANK's)."""
    chosen = pick_device(device)
    present = [name for name in LAUNCH_VARIABLES if os.environ.get(name)]
    if not present:
        return chosen
    if len(present) < len(LAUNCH_VARIABLES):
        raise ValueError(f"distributed training needs {', '.join(LAUNCH_VARIABLES)}, but only {', '.join(present)} "
                         "are set. Start the processes with torchrun, or unset them for a single-process run.")
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", init_method="env://",
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    return chosen


def shut_down() -> None:
    """Leave the process group, if any, at the end of a run."""
    if is_distributed():
        dist.destroy_process_group()


def gather_with_grad(embeddings: torch.Tensor, labels: torch.Tensor,
                     check_values: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(R * B, D) encodings and (R * B,) labels of every rank, rank 0's first; gradients flow back to this rank's
    (B, D) part. Every rank calls it at the same step with as many rows; without a process group it returns its
    inputs. check_values=False skips the NaN check, which reads from the device.
    """
    embeddings = check_embeddings(embeddings, check_values=check_values)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    if not is_distributed():
        return embeddings, labels
    # The differentiable all_gather, deprecated in favour of a private module, is still the public one.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        gathered = torch.cat(all_gather(embeddings), dim=0)
    all_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(all_labels, labels.contiguous())
    return gathered, torch.cat(all_labels)


class GlobalMiningTripletLoss(TripletLoss):
    """``TripletLoss`` (same arguments) mining among the encodings of all ranks; with one process, ``TripletLoss``."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the gathered (R * B, D) batch; embeddings (B, D), labels (B,) are this rank's."""
        # Every rank computes the same loss: the all-gather's backward SUMS R identical gradients into each rank's
        # part, DDP AVERAGES over the R ranks; the update equals one process training on the concatenated batch.
        return super().forward(*gather_with_grad(embeddings, labels, self.check_values))


class MiningComparison(NamedTuple):
    """Local mining (each rank's batch) against global mining (all ranks' batches) of the same encodings:
    mean distance to the closest negative, share of active batch-hard anchors, share of anchor-positive pairs
    with a semi-hard negative."""

    hardest_negative_local: float
    hardest_negative_global: float
    active_hard_local: float
    active_hard_global: float
    semihard_available_local: float
    semihard_available_global: float


def compare_local_and_global_mining(embeddings: torch.Tensor, labels: torch.Tensor, world_size: int,
                                    alpha: float = 0.2) -> MiningComparison:
    """Simulate R = world_size ranks in one process: mine (squared Euclidean) in each of the R chunks of the
    (R * B, D) embeddings and (R * B,) labels (rank r holds rows r*B .. (r+1)*B - 1), then in the whole batch."""
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    alpha = check_alpha(alpha)
    check_whole_number(world_size, "world_size")
    if embeddings.shape[0] % world_size:
        raise ValueError(f"{embeddings.shape[0]} encodings cannot be split into {world_size} equal rank batches.")
    with torch.no_grad():
        chunks = zip(embeddings.chunk(world_size), labels.chunk(world_size))
        local = torch.stack([_mining_sums(e, lab, alpha) for e, lab in chunks]).sum(dim=0)  # (5,)
        sums = torch.stack([local, _mining_sums(embeddings, labels, alpha)])  # (2, 5): local, then global
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
    """Bytes of float32 encodings gathered on every rank per step: R x (P * K per rank) x D x 4."""
    return world_size * batch_size * embedding_dim * 4


def torchrun_command(nproc_per_node: int, train_arguments: Sequence[str], python: str = "python") -> list[str]:
    """The command that starts ``course_utils.training.cli`` with these flags on nproc_per_node processes
    (``python -m torch.distributed.run``, what ``torchrun`` runs; --standalone picks a free port)."""
    if any(argument == "--p" or argument.startswith("--p=") for argument in train_arguments):
        raise ValueError("torchrun reads --p as its own --print-completion; write --identities-per-batch instead.")
    launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
    return [*launcher, "-m", "course_utils.training.cli", *train_arguments]


class LaunchResult(NamedTuple):
    """What a launched run left: history.json, metrics.json, its stdout and stderr."""

    history: list
    metrics: dict
    output: str
    stderr: str


def launch_training(nproc_per_node: int, train_arguments: Sequence[str], out: str | Path,
                    timeout: float = 120.0) -> LaunchResult:
    """Run ``course_utils.training.cli`` with these flags and ``--out out`` under torchrun as a child process,
    one CPU thread per process; RuntimeError with its last output if it fails or runs over timeout seconds."""
    out = Path(out)
    command = torchrun_command(nproc_per_node, [*train_arguments, "--out", str(out)], python=sys.executable)
    # No process group of ours for the children, one thread each; a session of their own, to stop them together.
    environment = {key: value for key, value in os.environ.items() if key not in LAUNCH_VARIABLES}
    environment.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"the run did not finish within {timeout} s: {' '.join(command)}") from error
    if process.returncode != 0:
        raise RuntimeError(f"the run failed (exit status {process.returncode}); its last output:\n"
                           f"{(stdout + stderr)[-2000:]}")
    history, metrics = (json.loads((out / name).read_text()) for name in ("history.json", "metrics.json"))
    return LaunchResult(history, metrics, stdout, stderr)
