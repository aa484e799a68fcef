"""Training an embedding network with the triplet loss, on a GPU or the CPU.

``Trainer`` runs the loop a learner would write by hand, with what a real run needs:

* the device is picked for you (cuda, then mps, then cpu) and named at the start;
* batches are P identities x K pictures (``course_utils.data.PKBatchSampler``), the
  shape online mining needs;
* when the training pictures fit in device memory they are moved there once and each
  batch is an index into them (no per-batch copy from the host); otherwise a DataLoader
  streams them from pinned host memory with non-blocking copies;
* on CUDA: automatic mixed precision (bfloat16 where supported, else float16 with a
  gradient scaler) and channels_last; distances and losses stay float32;
* a progress bar, a per-epoch history with the diagnostics of a healthy run, held-out
  retrieval metrics, and a warning when the embedding collapses;
* a checkpoint after every epoch that resumes the run exactly;
* ``step=`` runs a step function of one's own instead of ``training_step`` (notebook 06 trains
  with the learner's), with the same contract: it returns (loss, embeddings);
* under torchrun (``course_utils.training.distributed``): DistributedDataParallel, each process its own
  P x K batches, and only rank 0 shows progress, evaluates and writes the checkpoint.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from course_utils.training import distributed
from course_utils.core._validate import check_labels, check_metric, check_tensor, check_whole_number
from course_utils.data import PKBatchSampler
from course_utils.core.distances import pairwise_distances
from course_utils.evaluation.retrieval import embed, retrieval_metrics
from course_utils.core.losses import ContrastiveStats, TripletStats
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask
from course_utils.lessons.notebook import pick_device

CHECKPOINT_FORMAT = "course_utils.training.trainer.checkpoint/1"
_CHECKPOINT_KEYS = ("format", "epoch", "config", "model", "optimizer", "scaler", "sampler", "rng", "history")
# What load_checkpoint restores from each entry, checked before anything is changed.
_CHECKPOINT_TYPES = {
    "epoch": int, "config": dict, "model": dict, "optimizer": dict, "scaler": dict, "rng": dict, "history": list
}
_SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
# Pictures (evenly spaced) whose bytes the checkpoint's fingerprint of the training data hashes.
_FINGERPRINT_PICTURES = 256
# Share of the free GPU memory the training pictures may take; the rest is for activations.
_DEVICE_DATA_SHARE = 0.5


class CollapseWarning(UserWarning):
    """All encodings are (nearly) the same point: the loss sits at its collapsed value and nothing is learned."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, truncated, or from a different run."""


def cpu_threads() -> int:
    """A sensible number of CPU threads for training.

    An explicit OMP_NUM_THREADS is respected. Otherwise, the CPUs this process may use
    (containers often allow fewer than the machine has), capped by torch's default
    (one per physical core; hyper-threads do not speed up convolutions).

    Returns:
        number of threads, >= 1.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(allowed, torch.get_num_threads()))


def mixed_precision_dtype(device: torch.device, requested="auto") -> torch.dtype | None:
    """The autocast dtype for a device, or None for plain float32.

    Args:
        device: where training runs.
        requested: "auto" (on for CUDA, off elsewhere), True or False.
    Returns:
        torch.bfloat16 on GPUs that support it (no gradient scaler needed, same range as
        float32), torch.float16 on older GPUs (needs a gradient scaler), None off CUDA.
    """
    if requested not in ("auto", True, False):
        raise ValueError(f"mixed_precision must be 'auto', True or False, got {requested!r}.")
    if device.type != "cuda":
        if requested is True:
            raise ValueError(
                f"mixed precision is only used on a CUDA GPU; on {device.type} training runs in "
                "float32 (CPU half precision is slower, not faster). Use mixed_precision='auto'."
            )
        return None
    if requested is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe_device(device: torch.device, amp_dtype: torch.dtype | None = None) -> str:
    """One line naming the device and how it computes, for the start of a run."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        precision = {torch.bfloat16: "bfloat16", torch.float16: "float16 + gradient scaler"}.get(amp_dtype, "float32")
        return f"cuda ({name}), {precision} mixed precision, channels_last"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'}), float32"
    return f"{device.type}, float32"


def looks_collapsed(mean_d_an: float, loss: float, collapsed_loss: float | None) -> bool:
    """True when different identities sit on top of each other and the loss is stuck at its collapsed value.

    If every encoding is the same point, every distance is 0 and the loss takes one value:
    each triplet's hinge costs max(0 - 0 + alpha, 0) = alpha, the soft margin
    log(1 + e^0) = ln 2, and the contrastive loss margin^2 / 2 (its different-person pairs;
    same-person pairs cost 0). The network found the trivial solution the loss was meant to
    forbid (F3), usually from too high a learning rate or the hardest negatives early in
    training (F12).

    Args:
        mean_d_an: mean anchor-negative distance in the epoch.
        loss: mean training loss in the epoch.
        collapsed_loss: what the loss gives when all encodings coincide (alpha for the hinge);
            None (unknown) or <= 0 (a collapse would cost nothing) never reports a collapse.
    Returns:
        True when mean_d_an is below a tenth of collapsed_loss and the loss within a tenth of it.
    """
    if collapsed_loss is None or not collapsed_loss > 0:
        return False
    return mean_d_an < 0.1 * collapsed_loss and abs(loss - collapsed_loss) < 0.1 * collapsed_loss


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    images: torch.Tensor,
    labels: torch.Tensor,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of gradient descent on one batch: embed, loss, backward, update.

    Args:
        model: the embedding network, in training mode.
        optimizer: optimiser over the model's parameters.
        loss_fn: callable (embeddings (B, D), labels (B,)) -> scalar loss.
        images: (B, C, H, W) pictures on the model's device.
        labels: (B,) identities on the same device.
        scaler: gradient scaler for float16 mixed precision, else None.
        amp_dtype: autocast dtype (torch.bfloat16 / torch.float16) or None for float32.
    Returns:
        (loss, embeddings), both detached from the graph: the loss for the record, the
        embeddings for the diagnostics (mean d(A,P) and d(A,N)) without a second forward pass.
        Notebook 06's exercise asks for the same contract, so ``Trainer(step=...)`` can run a
        learner's own step.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        embeddings = model(images)
    # The course losses switch autocast off and compute distances in float32 themselves.
    loss = loss_fn(embeddings, labels)
    if scaler is not None and scaler.is_enabled():
        # float16 gradients of small losses underflow to 0; scaling the loss up keeps them.
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), embeddings.detach()


def _unpack_step(answer) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, embeddings) detached, from what a step of one's own returned; a clear error otherwise.

    The loss may also be a Python number (``loss.item()``); the embeddings must be a tensor.
    """
    pair = isinstance(answer, (tuple, list)) and len(answer) == 2
    if not pair or not isinstance(answer[1], torch.Tensor) or not isinstance(answer[0], (torch.Tensor, int, float)):
        shown = f"a {type(answer).__name__}" + (f" of {len(answer)}" if isinstance(answer, (tuple, list)) else "")
        raise TypeError(
            f"the step function must return (loss, embeddings), like course_utils.training.trainer.training_step; "
            f"it returned {shown}. End it with `return loss, embeddings`."
        )
    loss, embeddings = answer
    embeddings = embeddings.detach()
    loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss), device=embeddings.device)
    return loss, embeddings


class _LossWithStats:
    """Calls a loss and keeps its TripletStats or ContrastiveStats (None when it reports none)."""

    def __init__(self, loss_fn):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(embeddings, labels), got {type(loss_fn).__name__}.")
        self.loss_fn = loss_fn
        # Course loss modules (TripletLoss, ContrastiveLoss) keep the stats of their last call.
        self.is_module = isinstance(loss_fn, nn.Module) and hasattr(loss_fn, "last_stats")
        parameters = {} if self.is_module else _parameters(loss_fn)
        self.asks_for_stats = "return_stats" in parameters
        self.metric = _default(parameters, "metric", getattr(loss_fn, "metric", "squared_euclidean"))
        check_metric(self.metric)
        self.last_stats: TripletStats | ContrastiveStats | None = None

    def counts(self) -> tuple[int, int]:
        """(terms the last loss averaged over, how many of them were active); (0, 0) without stats."""
        if self.last_stats is None:
            return 0, 0
        return self.last_stats.num_terms, self.last_stats.num_active

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.is_module:
            loss = self.loss_fn(embeddings, labels)
            self.last_stats = self.loss_fn.last_stats
        elif self.asks_for_stats:
            loss, self.last_stats = self.loss_fn(embeddings, labels, return_stats=True)
        else:
            loss = self.loss_fn(embeddings, labels)
        return loss

    def at_collapse(self, embeddings: torch.Tensor, labels: torch.Tensor) -> float:
        """The loss of a batch whose encodings all coincide: each replaced by the batch's first.

        Args:
            embeddings: (B, D) encodings of a batch.
            labels: (B,) their identities.
        Returns:
            the loss at a collapsed embedding: alpha for the hinge, ln 2 for the soft margin,
            margin^2 / 2 for the contrastive loss.
        """
        with torch.no_grad():
            return float(self.loss_fn(embeddings[:1].repeat(len(embeddings), 1), labels))

    def describe(self) -> str:
        """A name without memory addresses, stable across processes (stored in checkpoints)."""
        if isinstance(self.loss_fn, nn.Module):
            return repr(self.loss_fn)
        func = getattr(self.loss_fn, "func", self.loss_fn)  # functools.partial keeps the function here
        keywords = getattr(self.loss_fn, "keywords", {})
        name = getattr(func, "__qualname__", type(func).__qualname__)
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(keywords.items()))})"


def _parameters(loss_fn) -> dict:
    try:
        return dict(inspect.signature(loss_fn).parameters)
    except (TypeError, ValueError):
        return {}


def _default(parameters: dict, name: str, fallback):
    parameter = parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return fallback
    return parameter.default


def _check_images_and_labels(images, labels, name: str) -> torch.Tensor:
    check_tensor(images, f"{name}_images")
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"{name}_images must be a float tensor of shape (N, C, H, W), got {images.dtype} "
            f"with shape {tuple(images.shape)}."
        )
    return check_labels(labels, images.shape[0])


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short summary that changes when the training pictures change (stored in checkpoints).

    A SHA-256 hash of the shape and dtype and of the raw bytes of a fixed subsample: up to
    _FINGERPRINT_PICTURES evenly spaced pictures and their labels, copied to the CPU. Only the
    subsample is copied (no float64 copy of the whole set, which would take 1 GB for 10,000
    pictures of 3 x 64 x 64), and raw bytes hash the same on every device and machine.

    Args:
        images: (N, C, H, W) training pictures, on any device.
        labels: (N,) their identities.
    Returns:
        "sha256 <16 hex digits> of <n> evenly spaced pictures, their labels, shape and dtype".
    """
    n = min(len(images), _FINGERPRINT_PICTURES)
    index = torch.arange(n) * len(images) // n  # whole-number arithmetic: the same pictures everywhere
    sample = images.detach()[index.to(images.device)].cpu().contiguous()
    sample_labels = labels.detach()[index.to(labels.device)].cpu().to(torch.int64)
    digest = hashlib.sha256(f"{tuple(images.shape)} {images.dtype}".encode())
    digest.update(sample.view(torch.uint8).numpy().tobytes())
    digest.update(sample_labels.numpy().tobytes())
    return f"sha256 {digest.hexdigest()[:16]} of {n} evenly spaced pictures, their labels, shape and dtype"


class Trainer:
    """Train an embedding network with P x K batches, evaluate, checkpoint, resume.

    Args:
        model: network mapping (B, C, H, W) pictures to (B, D) encodings.
        train_images: (N, C, H, W) float pictures.
        train_labels: (N,) integer identities.
        loss_fn: a ``TripletLoss`` or ``ContrastiveLoss`` module or a loss function such as
            ``batch_hard_triplet_loss`` (or a functools.partial of one); any callable
            (embeddings, labels) -> scalar works, without the active fraction.
        test_images, test_labels: held-out identities evaluated after every epoch
            (Precision@1, R-Precision, MAP@R); None skips evaluation.
        p: identities per batch.
        k: pictures per identity in a batch (>= 2, so every anchor has a positive).
        lr: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        seed: seed of the batch order (epoch e uses the order fixed by (seed, e)).
        device: "auto" (cuda, then mps, then cpu) or a device name.
        mixed_precision: "auto" (on for CUDA only), True or False.
        data_on_device: "auto" (when it fits in half the free memory), True or False.
        checkpoint_path: file written after every epoch; None writes nothing.
        step: the function that does one step, called as
            ``step(model, optimizer, loss_fn, images, labels)`` and returning ``(loss, embeddings)``
            (the contract of this module's ``training_step`` and of notebook 06's exercise); None uses
            ``training_step`` with mixed precision on CUDA. Another step runs in float32 (it is not
            given the autocast dtype or the gradient scaler), so ``mixed_precision=True`` refuses it.
        progress: show a progress bar.
        verbose: print what was found and chosen at the start (and, without a progress
            bar, one line per epoch).

    In a distributed run (a process group is initialised, see ``course_utils.training.distributed``)
    the model is wrapped in DistributedDataParallel for training (``self.model`` stays the
    plain network), each rank draws its own share of the epoch's P x K batches, the history
    holds the averages over all ranks, and only rank 0 shows progress, prints, evaluates and
    writes the checkpoint. BatchNorm statistics stay per rank (each normalises its own batch).
    """

    def __init__(
        self,
        model: nn.Module,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        loss_fn,
        test_images: torch.Tensor | None = None,
        test_labels: torch.Tensor | None = None,
        p: int = 16,
        k: int = 4,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "auto",
        mixed_precision="auto",
        data_on_device="auto",
        checkpoint_path: str | Path | None = None,
        step=None,
        progress: bool = True,
        verbose: bool = True,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        train_labels = _check_images_and_labels(train_images, train_labels, "train")
        if (test_images is None) != (test_labels is None):
            raise ValueError("give both test_images and test_labels, or neither.")
        if test_images is not None:
            test_labels = _check_images_and_labels(test_images, test_labels, "test")
        check_whole_number(p, "p", 2)
        check_whole_number(k, "k", 2)
        check_whole_number(seed, "seed", 0)
        for name, value, zero_ok in (("lr", lr, False), ("weight_decay", weight_decay, True)):
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not is_number or not (value > 0 or (zero_ok and value == 0)):
                raise ValueError(f"{name} must be a number {'>= 0' if zero_ok else '> 0'}, got {value!r}.")
        if data_on_device not in ("auto", True, False):
            raise ValueError(f"data_on_device must be 'auto', True or False, got {data_on_device!r}.")
        if step is not None and not callable(step):
            raise TypeError(
                "step must be a function step(model, optimizer, loss_fn, images, labels) -> (loss, embeddings), "
                f"passed without parentheses; got a {type(step).__name__}."
            )
        if step is not None and mixed_precision is True:
            raise ValueError(
                "mixed_precision=True needs the course's training_step (it applies autocast and the gradient "
                "scaler); a step of your own runs in float32. Leave step=None, or mixed_precision='auto'."
            )

        self.device = pick_device(device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if distributed.is_distributed() and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # the GPU of this rank
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads())
        self.step = step
        self.amp_dtype = mixed_precision_dtype(self.device, mixed_precision)
        if step is not None:  # a step of one's own gets no autocast dtype nor scaler: float32
            self.amp_dtype = None
        self.channels_last = self.device.type == "cuda"
        self.loss = _LossWithStats(loss_fn)
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format)
        # What the training step calls: DDP averages the gradients of all ranks in backward().
        self.network = self.model
        if distributed.is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        scaler_device = "cuda" if self.device.type == "cuda" else "cpu"
        self.scaler = torch.amp.GradScaler(scaler_device, enabled=self.amp_dtype == torch.float16)
        self.sampler = PKBatchSampler(
            train_labels.cpu(), p=p, k=k, seed=seed, rank=self.rank, world_size=self.world_size
        )
        self.seed = seed
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        is_main = self.rank == 0
        self.progress = progress and is_main
        self.verbose = verbose and is_main
        self.config = {
            "model": repr(model),
            "loss": self.loss.describe(),
            "p": p,
            "k": k,
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "seed": seed,
            "train_pictures": int(train_images.shape[0]),
            "picture_shape": list(train_images.shape[1:]),
            "train_data": _fingerprint(train_images, train_labels),
        }
        if self.world_size > 1:  # another process count gives other batches: no exact resume
            self.config["world_size"] = self.world_size

        nbytes = train_images.numel() * train_images.element_size()
        self.data_on_device = data_on_device if data_on_device != "auto" else self._fits_on_device(nbytes)
        if self.data_on_device:
            self.train_images = train_images.to(self.device)
            self.train_labels = train_labels.to(self.device)
            self.loader = None
        else:
            pin = self.device.type == "cuda"
            dataset = TensorDataset(train_images.cpu(), train_labels.cpu())
            # batch_size=None: each sampled item is already a whole batch of indices, and a
            # tensor dataset gathers it with one indexing operation instead of N small ones.
            self.loader = DataLoader(dataset, sampler=self.sampler, batch_size=None, pin_memory=pin)
        test_device = self.device if self.data_on_device else torch.device("cpu")
        self.test_images = None if test_images is None else test_images.to(test_device)
        self.test_labels = None if test_labels is None else test_labels.to(self.device)

        self.epoch = 0
        self.history: list[dict] = []
        self.interrupted = False
        if self.verbose:
            where = "moved to the device once" if self.data_on_device else "streamed from host memory"
            processes = f" in each of {self.world_size} processes" if self.world_size > 1 else ""
            print(
                f"Training on {describe_device(self.device, self.amp_dtype)}{processes}. "
                f"{train_images.shape[0]:,} pictures of {int(train_labels.unique().numel()):,} identities, "
                f"{len(self.sampler)} batches of P={p} x K={k} per epoch{processes}; data {where}."
            )

    def _fits_on_device(self, nbytes: int) -> bool:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return nbytes < _DEVICE_DATA_SHARE * free
        # On the CPU the data already sits in its memory; Apple's GPUs share memory with the CPU.
        return True

    def _batches(self):
        """Yield (images, labels) batches of one epoch on the training device."""
        if self.loader is not None:
            for images, labels in self.loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            return
        # One copy of the epoch's (B, P*K) index plan to the device, then a row per batch:
        # no per-batch transfer from the host.
        for batch in self.sampler.batches_for_epoch(self.epoch).to(self.device):
            yield self.train_images[batch], self.train_labels[batch]

    def _batch_diagnostics(self, loss: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[loss, mean d(A,P), mean d(A,N), mean encoding length] of one batch, kept on the device."""
        dist = pairwise_distances(embeddings, metric=self.loss.metric)
        positive, negative = anchor_positive_mask(labels), anchor_negative_mask(labels)
        # Masked sums instead of dist[mask]: boolean indexing would wait for the GPU every batch.
        mean_ap = (dist * positive).sum() / positive.sum().clamp_min(1)
        mean_an = (dist * negative).sum() / negative.sum().clamp_min(1)
        return torch.stack([loss.float(), mean_ap, mean_an, embeddings.norm(dim=1).mean()])

    def _train_one_epoch(self, bar) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: its record for the history, and the (embeddings, labels) of its last batch."""
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        sums = torch.zeros(4, device=self.device)
        num_terms = num_active = num_batches = num_pictures = 0
        refresh = max(1, len(self.sampler) // 10)
        start = time.perf_counter()
        for images, labels in self._batches():
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if self.step is None:
                loss, embeddings = training_step(
                    self.network, self.optimizer, self.loss, images, labels, self.scaler, self.amp_dtype
                )
            else:
                loss, embeddings = _unpack_step(self.step(self.network, self.optimizer, self.loss, images, labels))
            sums += self._batch_diagnostics(loss, embeddings, labels)
            terms, active = self.loss.counts()
            num_terms += terms
            num_active += active
            num_batches += 1
            num_pictures += len(labels)
            bar.update(1)
            if num_batches % refresh == 0:
                seconds = time.perf_counter() - start
                postfix = {"loss": f"{sums[0].item() / num_batches:.4f}", "pictures/s": f"{num_pictures / seconds:.0f}"}
                if num_terms:
                    postfix["active"] = f"{num_active / num_terms:.2f}"
                bar.set_postfix(postfix)
        if distributed.is_distributed():  # every rank's history holds the averages over all ranks
            counts = torch.tensor([num_terms, num_active, num_batches, num_pictures], device=self.device)
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(counts)
            num_terms, num_active, num_batches, num_pictures = counts.tolist()
        loss, mean_ap, mean_an, norm = (sums / max(num_batches, 1)).tolist()  # .tolist() waits for the GPU
        seconds = time.perf_counter() - start
        record = {
            "epoch": self.epoch + 1,
            "loss": loss,
            "active_fraction": num_active / num_terms if num_terms else None,
            "mean_d_ap": mean_ap,
            "mean_d_an": mean_an,
            "embedding_norm": norm,
            "train_seconds": seconds,
            "pictures_per_second": num_pictures / seconds,
        }
        return record, (embeddings, labels)

    def evaluate(self) -> dict:
        """Retrieval metrics on the held-out identities ({} when there are none, and on ranks other than 0).

        Returns:
            {"test_precision_at_1", "test_r_precision", "test_map_at_r"}: floats in [0, 1].
        """
        if self.test_images is None or self.rank != 0:
            return {}
        embeddings = embed(self.model, self.test_images, batch_size=512, device=self.device)
        metrics = retrieval_metrics(embeddings, self.test_labels, metric=self.loss.metric)
        return {f"test_{name}": value for name, value in metrics.items()}

    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs are complete (counting those loaded from a checkpoint).

        A KeyboardInterrupt (the stop button in Jupyter) ends training cleanly: the history
        of completed epochs is returned, the checkpoint of the last completed epoch is kept,
        and the model is put back to that checkpoint so that fit() can continue exactly.

        Args:
            epochs: total number of epochs the run should have.
        Returns:
            the history: one dict per completed epoch with epoch, loss, active_fraction
            (of triplets, or of pairs for the contrastive loss; None if the loss does not
            report it), mean_d_ap, mean_d_an, embedding_norm,
            train_seconds, pictures_per_second and, with held-out data, test_precision_at_1,
            test_r_precision, test_map_at_r.
        """
        check_whole_number(epochs, "epochs")
        self.interrupted = False
        bar = tqdm(
            total=max(0, epochs - self.epoch) * len(self.sampler),
            desc="training",
            unit="batch",
            disable=not self.progress,
        )
        try:
            while self.epoch < epochs:
                bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
                record, (embeddings, labels) = self._train_one_epoch(bar)
                record.update(self.evaluate())
                self.epoch += 1
                self.history.append(record)
                # Every rank computes it: a loss that mines across ranks gathers from all of them.
                collapsed_loss = self.loss.at_collapse(embeddings, labels)
                if self.rank == 0:
                    self._warn_if_collapsed(record, collapsed_loss)
                if self.checkpoint_path is not None and self.rank == 0:
                    self.save_checkpoint(self.checkpoint_path)
                if self.verbose and not self.progress:
                    print(_epoch_line(record, epochs), flush=True)
        except KeyboardInterrupt:
            self._recover_from_interrupt()
        finally:
            bar.close()
        return self.history

    def _warn_if_collapsed(self, record: dict, collapsed_loss: float) -> None:
        if looks_collapsed(record["mean_d_an"], record["loss"], collapsed_loss):
            warnings.warn(
                f"epoch {record['epoch']}: the embedding looks collapsed: mean d(A,N) = "
                f"{record['mean_d_an']:.2e} and the loss {record['loss']:.4f} sits at {collapsed_loss:.4f}, "
                "what it gives when every picture maps to the same point. Lower the learning rate, "
                "start with semi-hard instead of hardest negatives, or check the data.",
                CollapseWarning,
                stacklevel=3,
            )

    def _recover_from_interrupt(self) -> None:
        self.interrupted = True
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)
            print(
                f"Interrupted. Kept {self.checkpoint_path} (epoch {self.epoch}) and the history of "
                f"{len(self.history)} completed epoch(s); the model is back at epoch {self.epoch}."
            )
        else:
            print(
                f"Interrupted. The history holds {len(self.history)} completed epoch(s); the model "
                "holds part of the unfinished epoch (give checkpoint_path to be able to go back)."
            )

    def state_dict(self) -> dict:
        """Everything needed to continue this run exactly (see save_checkpoint)."""
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "config": self.config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": {"seed": self.seed, "next_epoch": self.epoch},
            # The training loop draws random numbers only from torch (the sampler has its own
            # seed), so torch's CPU and CUDA generator states are all there is to restore.
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng},
            "history": self.history,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write model, optimiser, scaler, sampler and RNG state, epoch and history to a file.

        The file is written under a temporary name and then renamed, so an interruption
        while saving never leaves a half-written checkpoint in place of the last good one;
        when writing fails (a full disk, Ctrl-C) the temporary file is removed and the error raised.

        Args:
            path: the checkpoint file (parent folders are created).
        Returns:
            the path.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per process: two runs sharing a checkpoint (a notebook executed by
        # two test workers, say) never rename each other's half-written file into place.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            torch.save(self.state_dict(), partial)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint written by save_checkpoint for the same run.

        Args:
            path: the checkpoint file.
        Raises:
            FileNotFoundError: there is no such file.
            CheckpointError: the file is corrupt or truncated, is not a training checkpoint,
                holds a value that cannot be restored, or was written by a run with different
                settings or network. The model, optimiser and run are then left as they were.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path.")
        state = _read_checkpoint(path)
        problem = _malformed_value(state)
        if problem is not None:
            raise _malformed(path, problem)
        differences = [
            _describe_difference(key, state["config"].get(key), value)
            for key, value in self.config.items()
            if state["config"].get(key) != value
        ]
        saved_world_size = state["config"].get("world_size", 1)
        if saved_world_size != self.world_size and "world_size" not in self.config:
            differences.append(_describe_difference("world_size", saved_world_size, self.world_size))
        if differences:
            raise CheckpointError(
                f"{path} was written by a different run ({'; '.join(differences)}). Use the same "
                "settings to resume, or another checkpoint path to start a new run."
            )
        problem = _model_problem(state["model"], self.model.state_dict()) or _optimizer_problem(
            state["optimizer"], self.optimizer
        )
        if problem is not None:
            raise _malformed(path, problem)
        # Every value was checked above, so none of these fails half-way.
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without float16 (CPU, or bfloat16): keep the fresh scale
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and len(state["rng"]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])


def _epoch_line(record: dict, epochs: int) -> str:
    """One line per epoch for logs, when there is no progress bar."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['loss']:.4f}"]
    if record["active_fraction"] is not None:
        parts.append(f"active {record['active_fraction']:.2f}")
    parts.append(f"d(A,P) {record['mean_d_ap']:.3f}, d(A,N) {record['mean_d_an']:.3f}")
    if "test_map_at_r" in record:
        parts.append(f"held-out MAP@R {record['test_map_at_r']:.4f}")
    parts.append(f"{record['pictures_per_second']:.0f} pictures/s")
    return ", ".join(parts)


def _describe_difference(key: str, saved, current) -> str:
    """'key: checkpoint X, now Y'; for multi-line values (a network's repr) only the first differing line."""
    if isinstance(saved, str) and isinstance(current, str) and "\n" in saved + current:
        pairs = zip(saved.splitlines() + [""], current.splitlines() + [""])
        saved, current = next((a.strip(), b.strip()) for a, b in pairs if a != b)
    return f"{key}: checkpoint {saved!r}, now {current!r}"


def _malformed(path: Path, problem: str) -> CheckpointError:
    """The error for a checkpoint with a value that cannot be restored."""
    return CheckpointError(
        f"{path} holds a malformed checkpoint: {problem}. Nothing was loaded. Delete it and train "
        "from scratch (on the command line: without --resume), or point to another checkpoint."
    )


def _malformed_value(state: dict) -> str | None:
    """What in a checkpoint has the wrong type or cannot be restored, apart from model and optimiser.

    Args:
        state: a checkpoint with every key of _CHECKPOINT_KEYS (see _read_checkpoint).
    Returns:
        the first problem found, in words, or None when every value fits.
    """
    for key, kind in _CHECKPOINT_TYPES.items():
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"'{key}' is of type {type(state[key]).__name__}, not {kind.__name__}"
    if not all(isinstance(value, (str, int, float, list)) for value in state["config"].values()):
        return "'config' holds something other than the run's settings (text, numbers and lists)"
    if state["epoch"] < 0:
        return f"'epoch' is {state['epoch']}, below 0"
    if not all(isinstance(record, dict) for record in state["history"]):
        return "'history' holds something other than one dict per epoch"
    rng = state["rng"]
    cpu_state, cuda_states = rng.get("torch"), rng.get("cuda")
    if not (_is_rng_state(cpu_state) and cpu_state.shape == torch.get_rng_state().shape
            and isinstance(cuda_states, list) and all(_is_rng_state(s) for s in cuda_states)):  # fmt: skip
        return "'rng' does not hold torch's random number generator states"
    scaler = state["scaler"]
    if scaler and (scaler.keys() != _SCALER_KEYS or not all(_is_number(value) for value in scaler.values())):
        return "'scaler' is not the state of a gradient scaler"
    return None


def _is_rng_state(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _model_problem(saved: dict, expected: dict) -> str | None:
    """How saved weights differ from a network's state_dict (names, tensors, shapes), or None."""
    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in expected]
    if missing or unexpected:
        return (
            f"its weights are not this network's (missing {missing[:3] or 'none'}, "
            f"unexpected {unexpected[:3] or 'none'})"
        )
    for name, value in saved.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            shown = list(value.shape) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
            return f"weight {name!r} is {shown}, where this network has shape {list(expected[name].shape)}"
    return None


def _optimizer_problem(saved: dict, optimizer: torch.optim.Optimizer) -> str | None:
    """How a saved optimiser state_dict does not fit an optimiser (groups, settings, shapes), or None."""
    groups = saved.get("param_groups")
    if not (isinstance(saved.get("state"), dict) and isinstance(groups, list) and all(_is_group(g) for g in groups)):
        return "'optimizer' is not an optimiser's state_dict (a dict of 'state' and 'param_groups')"
    sizes = [len(group["params"]) for group in groups]
    expected_sizes = [len(group["params"]) for group in optimizer.param_groups]
    if sizes != expected_sizes:
        return f"the optimiser's parameter groups hold {sizes} parameters, this optimiser's {expected_sizes}"
    shapes = {}
    for group, current in zip(groups, optimizer.param_groups):
        for name, value in current.items():
            if name != "params" and name in group and not _same_kind(group[name], value):
                return f"the optimiser setting {name!r} is {group[name]!r}, not like this optimiser's {value!r}"
        shapes.update((key, parameter.shape) for key, parameter in zip(group["params"], current["params"]))
    for key, values in saved["state"].items():
        if key not in shapes:
            return f"the optimiser's state {key!r} belongs to none of its parameters"
        if not isinstance(values, dict):
            return f"the optimiser's state of parameter {key} is of type {type(values).__name__}, not dict"
        for name, value in values.items():
            is_tensor = isinstance(value, torch.Tensor)
            if not (_is_number(value) or is_tensor and value.shape in (torch.Size([]), shapes[key])):
                return f"the optimiser's {name!r} of parameter {key} is neither a number nor shaped like the parameter"
    return None


def _is_group(group) -> bool:
    """A saved parameter group: a dict whose 'params' is a list of parameter numbers."""
    params = group.get("params") if isinstance(group, dict) else None
    return isinstance(params, list) and all(isinstance(key, int) for key in params)


def _same_kind(saved, current) -> bool:
    """Both numbers, or of the same type (an optimiser setting as torch.load gives it back)."""
    return _is_number(saved) and _is_number(current) or type(saved) is type(current)


def _read_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True (no code runs from the file), then a shape check."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged zip archives and pickles
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}: {reason}). It is "
            "probably truncated or corrupt (for example a copy that did not finish); delete it and "
            "train again, or point to another checkpoint."
        ) from error
    if not isinstance(state, dict):
        state = {}
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a course_utils training checkpoint (format {state.get('format')!r}"
            f"{', missing ' + ', '.join(missing) if missing else ''}); it may be a bare model state_dict, "
            "which model.load_state_dict can read, but a Trainer cannot resume from."
        )
    return state
