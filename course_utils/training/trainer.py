"""Training an embedding network with the triplet loss, on a GPU or the CPU: ``Trainer``.

It runs the loop a learner would write by hand (P x K batches, Adam), with what a real run needs: the
device picked and named, the pictures moved to the device once when they fit, mixed precision and
channels_last on CUDA, a per-epoch history with held-out retrieval metrics, a checkpoint that resumes
exactly, and DistributedDataParallel under torchrun. A step never waits for the GPU: the loss and
diagnostics are summed on the device and read back only when the progress bar refreshes and at the
end of an epoch, where a NaN loss stops the run and a collapsed embedding is warned about.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from course_utils._validate import check_labels, check_nonnegative, check_positive, check_tensor, check_whole_number
from course_utils.core.losses import DegenerateBatchWarning
from course_utils.data import PKBatchSampler
from course_utils.evaluation.retrieval import embed, retrieval_metrics
from course_utils.lessons.notebook import pick_device
from course_utils.training import distributed
from course_utils.training.checkpoints import (CHECKPOINT_FORMAT, CheckpointError, fingerprint, read_checked, restore,
                                               save_atomically)
from course_utils.training.device import cpu_threads, describe_device, mixed_precision_dtype
from course_utils.training.step import LossWithStats, batch_diagnostics, training_step, unpack_step

__all__ = ["CheckpointError", "CollapseWarning", "Trainer", "cpu_threads", "describe_device", "looks_collapsed",
           "mixed_precision_dtype", "training_step"]
# The sums kept on the device during an epoch, one row per batch added up.
_SUMS = ("loss", "mean_d_ap", "mean_d_an", "embedding_norm", "terms", "active", "batches_without_terms")


class CollapseWarning(UserWarning):
    """All encodings are (nearly) the same point: the loss sits at its collapsed value and nothing is learned."""


def looks_collapsed(mean_d_an: float, loss: float, collapsed_loss: float | None) -> bool:
    """True when the mean anchor-negative distance is below a tenth of collapsed_loss (the loss when all
    encodings coincide: None or <= 0 never reports a collapse) and the loss within a tenth of it."""
    if collapsed_loss is None or not collapsed_loss > 0:
        return False
    return mean_d_an < 0.1 * collapsed_loss and abs(loss - collapsed_loss) < 0.1 * collapsed_loss


def _check_images_and_labels(images, labels, name: str) -> torch.Tensor:
    check_tensor(images, f"{name}_images")
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"{name}_images must be a float tensor of shape (N, C, H, W), got {images.dtype} "
            f"with shape {tuple(images.shape)}."
        )
    return check_labels(labels, images.shape[0])


def _check_settings(model, p, k, seed, lr, weight_decay, data_on_device, step, mixed_precision) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_whole_number(p, "p", 2)
    check_whole_number(k, "k", 2)
    check_whole_number(seed, "seed", 0)
    check_positive(lr, "lr")
    check_nonnegative(weight_decay, "weight_decay", "It is the strength of the L2 penalty on the weights.")
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


def _training_device(device: str) -> torch.device:
    """The device this process trains on (under torchrun: its rank's GPU); on the CPU, sets the threads."""
    chosen = pick_device(device)
    if distributed.is_distributed() and chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", torch.cuda.current_device())
    if chosen.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return chosen


class Trainer:
    """Train an embedding network with P x K batches, evaluate, checkpoint, resume.

    Args:
        model: network mapping (B, C, H, W) pictures to (B, D) encodings.
        train_images, train_labels: (N, C, H, W) float pictures and their (N,) identities.
        loss_fn: ``TripletLoss``, ``ContrastiveLoss``, a function such as ``batch_hard_triplet_loss`` (or a
            functools.partial of one); any (embeddings, labels) -> scalar works, without the active fraction.
        test_images, test_labels: held-out identities evaluated after every epoch; None skips it.
        p, k: identities per batch, pictures per identity; lr, weight_decay: Adam's settings.
        seed: seed of the batch order (epoch e uses the order fixed by (seed, e)).
        device: "auto" (cuda, then mps, then cpu) or a device name; mixed_precision: "auto" (CUDA only), True, False.
        data_on_device: "auto" (when the pictures take under half the free GPU memory), True or False.
        checkpoint_path: file written after every epoch; None writes nothing.
        step: ``step(model, optimizer, loss_fn, images, labels) -> (loss, embeddings)`` like ``training_step``
            (notebook 06's exercise), run in float32; None uses ``training_step``.
        verbose: say what was chosen at the start (and, without a progress bar, one line per epoch).

    Under torchrun ``self.model`` stays the plain network, each rank draws its own share of the batches,
    the history holds the averages over all ranks, and only rank 0 shows progress, evaluates and writes.
    """

    def __init__(self, model: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor, loss_fn,
                 test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                 p: int = 16, k: int = 4, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                 device: str = "auto", mixed_precision="auto", data_on_device="auto",
                 checkpoint_path: str | Path | None = None, step=None, progress: bool = True, verbose: bool = True):
        _check_settings(model, p, k, seed, lr, weight_decay, data_on_device, step, mixed_precision)
        train_labels = _check_images_and_labels(train_images, train_labels, "train")
        if (test_images is None) != (test_labels is None):
            raise ValueError("give both test_images and test_labels, or neither.")
        if test_images is not None:
            test_labels = _check_images_and_labels(test_images, test_labels, "test")
        self.device, self.step, self.seed = _training_device(device), step, seed
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        # A step of one's own gets no autocast dtype nor scaler: it runs in float32.
        self.amp_dtype = mixed_precision_dtype(self.device, mixed_precision) if step is None else None
        self.channels_last = self.device.type == "cuda"
        # The loss reads nothing back to the host; the epoch checks the sums it reads (_read_sums).
        self.loss = LossWithStats(loss_fn, check_values=False)
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = self.network = model.to(self.device, memory_format=memory_format)
        if distributed.is_distributed():  # DDP averages the gradients of all ranks in backward()
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.scaler = torch.amp.GradScaler("cuda" if self.device.type == "cuda" else "cpu",
                                           enabled=self.amp_dtype == torch.float16)
        self.sampler = PKBatchSampler(train_labels.cpu(), p=p, k=k, seed=seed, rank=self.rank,
                                      world_size=self.world_size)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.progress, self.verbose = progress and self.rank == 0, verbose and self.rank == 0
        self.config = {
            "model": repr(model), "loss": self.loss.name, "p": p, "k": k, "lr": float(lr),
            "weight_decay": float(weight_decay), "seed": seed, "train_pictures": int(train_images.shape[0]),
            "picture_shape": list(train_images.shape[1:]), "train_data": fingerprint(train_images, train_labels),
        }  # fmt: skip
        if self.world_size > 1:  # another process count gives other batches: no exact resume
            self.config["world_size"] = self.world_size
        self._place_data(train_images, train_labels, test_images, test_labels, data_on_device)
        self.epoch, self.history, self.interrupted = 0, [], False
        if self.verbose:
            where = "moved to the device once" if self.data_on_device else "streamed from host memory"
            processes = f" in each of {self.world_size} processes" if self.world_size > 1 else ""
            print(
                f"Training on {describe_device(self.device, self.amp_dtype)}{processes}. "
                f"{train_images.shape[0]:,} pictures of {int(train_labels.unique().numel()):,} identities, "
                f"{len(self.sampler)} batches of P={p} x K={k} per epoch{processes}; data {where}."
            )

    def _place_data(self, train_images, train_labels, test_images, test_labels, data_on_device) -> None:
        if data_on_device == "auto":  # only CUDA is measured: CPU and Apple GPUs share the host's memory
            nbytes = train_images.numel() * train_images.element_size()
            data_on_device = self.device.type != "cuda" or nbytes < 0.5 * torch.cuda.mem_get_info(self.device)[0]
        self.data_on_device, self.loader = data_on_device, None
        if self.data_on_device:
            self.train_images, self.train_labels = train_images.to(self.device), train_labels.to(self.device)
        else:
            dataset = TensorDataset(train_images.cpu(), train_labels.cpu())
            # batch_size=None: each sampled item is already a whole batch of indices, gathered by one indexing.
            self.loader = DataLoader(dataset, sampler=self.sampler, batch_size=None,
                                     pin_memory=self.device.type == "cuda")
        test_device = self.device if self.data_on_device else torch.device("cpu")
        self.test_images = None if test_images is None else test_images.to(test_device)
        self.test_labels = None if test_labels is None else test_labels.to(self.device)

    def _batches(self):
        """(images, labels) batches of one epoch on the training device."""
        if self.loader is not None:
            for images, labels in self.loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            return
        # One copy of the epoch's (batches, P*K) index plan to the device, then a row per batch.
        for batch in self.sampler.batches_for_epoch(self.epoch).to(self.device):
            yield self.train_images[batch], self.train_labels[batch]

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step, measured without a read from the device: (row (7,) of _SUMS, embeddings (B, D))."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.step is None:
            loss, embeddings = training_step(self.network, self.optimizer, self.loss, images, labels, self.scaler,
                                             self.amp_dtype)
        else:
            loss, embeddings = unpack_step(self.step(self.network, self.optimizer, self.loss, images, labels))
        counts = self.loss.counts(self.device)  # (2,) terms, active
        without_terms = (counts[:1] == 0).float() * self.loss.reports_stats  # (1,)
        diagnostics = batch_diagnostics(loss, embeddings, labels, self.loss.metric)[:4]  # (4,)
        return torch.cat([diagnostics, counts, without_terms]), embeddings

    def _train_one_epoch(self, bar) -> dict:
        """One epoch; its record for the history (and the collapse warning on rank 0)."""
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        sums = torch.zeros(len(_SUMS), device=self.device)
        batches = pictures = 0
        refresh = max(1, len(self.sampler) // 10)
        start = time.perf_counter()
        for images, labels in self._batches():
            row, embeddings = self._step(images, labels)
            sums += row
            batches, pictures = batches + 1, pictures + len(labels)
            bar.update(1)
            if self.progress and batches % refresh == 0:
                loss, *_, terms, active, _ = _read_sums(self.epoch + 1, sums)
                speed = pictures / (time.perf_counter() - start)
                postfix = {"loss": f"{loss / batches:.4f}", "pictures/s": f"{speed:.0f}"}
                bar.set_postfix(postfix | ({"active": f"{active / terms:.2f}"} if terms else {}))
        # Every rank computes it: a loss that mines across ranks gathers from all of them.
        collapsed_loss = self.loss.at_collapse(embeddings, labels).reshape(1)
        totals = torch.cat([sums, torch.tensor([batches, pictures], dtype=sums.dtype, device=self.device)])
        if distributed.is_distributed():  # every rank's history holds the sums over all ranks
            torch.distributed.all_reduce(totals)
        *values, batches, pictures, collapsed_loss = _read_sums(self.epoch + 1, torch.cat([totals, collapsed_loss]))
        loss, mean_ap, mean_an, norm, terms, active, without_terms = values
        seconds = time.perf_counter() - start
        record = {
            "epoch": self.epoch + 1, "loss": loss / batches, "active_fraction": active / terms if terms else None,
            "mean_d_ap": mean_ap / batches, "mean_d_an": mean_an / batches, "embedding_norm": norm / batches,
            "train_seconds": seconds, "pictures_per_second": pictures / seconds,
        }  # fmt: skip
        if self.rank == 0:
            _warn_about(record, int(without_terms), int(batches), collapsed_loss)
        return record

    def evaluate(self) -> dict:
        """{"test_precision_at_1", "test_r_precision", "test_map_at_r"} of the held-out identities, in [0, 1];
        {} without held-out pictures, and on ranks other than 0."""
        if self.test_images is None or self.rank != 0:
            return {}
        embeddings = embed(self.model, self.test_images, batch_size=512, device=self.device)
        metrics = retrieval_metrics(embeddings, self.test_labels, metric=self.loss.metric)
        return {f"test_{name}": value for name, value in metrics.items()}

    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs are complete (counting those loaded from a checkpoint).

        A KeyboardInterrupt (Jupyter's stop button) ends training cleanly: the history of completed
        epochs is returned and the model put back to the last checkpoint, so fit() continues exactly.

        Returns:
            the history, a dict per completed epoch: epoch, loss, active_fraction (of triplets or pairs;
            None if the loss does not report it), mean_d_ap, mean_d_an, embedding_norm, train_seconds,
            pictures_per_second and, with held-out data, test_precision_at_1, test_r_precision, test_map_at_r.
        """
        check_whole_number(epochs, "epochs")
        self.interrupted = False
        total = max(0, epochs - self.epoch) * len(self.sampler)
        bar = tqdm(total=total, desc="training", unit="batch", disable=not self.progress)
        try:
            while self.epoch < epochs:
                bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
                record = self._train_one_epoch(bar)
                record.update(self.evaluate())
                self.epoch += 1
                self.history.append(record)
                if self.checkpoint_path is not None and self.rank == 0:
                    self.save_checkpoint(self.checkpoint_path)
                if self.verbose and not self.progress:
                    print(_epoch_line(record, epochs), flush=True)
        except KeyboardInterrupt:
            self.interrupted = True
            if self.checkpoint_path is None or not self.checkpoint_path.exists():
                print(f"Interrupted. The history holds {len(self.history)} completed epoch(s); the model holds "
                      "part of the unfinished epoch (give checkpoint_path to be able to go back).")
            else:
                self.load_checkpoint(self.checkpoint_path)
                print(f"Interrupted. Kept {self.checkpoint_path} (epoch {self.epoch}) and the history of "
                      f"{len(self.history)} completed epoch(s); the model is back at epoch {self.epoch}.")
        finally:
            bar.close()
        return self.history

    def state_dict(self) -> dict:
        """Everything needed to continue this run exactly (see save_checkpoint)."""
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "config": self.config, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "sampler": {"seed": self.seed, "next_epoch": self.epoch},  # the loop draws random numbers only from torch
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng}, "history": self.history,
        }  # fmt: skip

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write state_dict() to ``path`` (under a temporary name, then renamed: never a half file); returns it."""
        return save_atomically(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint that save_checkpoint wrote for the same run.

        Raises:
            FileNotFoundError: there is no file at ``path``.
            CheckpointError: the file is corrupt or comes from another run; then nothing was changed.
        """
        state = read_checked(Path(path), self.config, self.model, self.optimizer)
        restore(state, self.model, self.optimizer, self.scaler)
        self.epoch, self.history = state["epoch"], list(state["history"])


def _read_sums(epoch: int, sums: torch.Tensor) -> list[float]:
    """The one read of an epoch's sums back to Python; a loss or distance that is not finite stops here."""
    values = sums.tolist()  # waits for the device: only at a progress refresh and at the end of an epoch
    if not all(math.isfinite(value) for value in values[:4]):
        raise FloatingPointError(
            f"epoch {epoch}: the training loss or the distances became NaN or infinite, so the network "
            "now outputs invalid numbers. Lower the learning rate, check the pictures for NaN, and look "
            "for a sqrt or log of 0 in the model or the loss."
        )
    return values


def _warn_about(record: dict, without_terms: int, batches: int, collapsed_loss: float) -> None:
    """Warnings read from an epoch's record: batches that taught nothing, a collapsed embedding."""
    if without_terms:
        warnings.warn(
            f"epoch {record['epoch']}: {without_terms} of {batches} batches held no triplet (or pair), so "
            "they taught nothing. Build batches of P identities x K >= 2 pictures each.",
            DegenerateBatchWarning, stacklevel=4,
        )  # fmt: skip
    if looks_collapsed(record["mean_d_an"], record["loss"], collapsed_loss):
        warnings.warn(
            f"epoch {record['epoch']}: the embedding looks collapsed: mean d(A,N) = "
            f"{record['mean_d_an']:.2e} and the loss {record['loss']:.4f} sits at {collapsed_loss:.4f}, "
            "what it gives when every picture maps to the same point. Lower the learning rate, "
            "start with semi-hard instead of hardest negatives, or check the data.",
            CollapseWarning, stacklevel=4,
        )  # fmt: skip


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
