"""``Trainer``: notebook 06's P x K loop with mixed precision on CUDA, held-out metrics, exact resume and DDP.

A step never waits for the GPU: an epoch's sums are read back once, at its end.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from course_utils._validate import check_labels, check_positive, check_tensor, check_whole_number
from course_utils.core.losses import DegenerateBatchWarning
from course_utils.data import PKBatchSampler
from course_utils.evaluation.retrieval import embed, retrieval_metrics
from course_utils.training import distributed
from course_utils.training.checkpoints import CHECKPOINT_FORMAT, CheckpointError, fingerprint, read_checked
from course_utils.training.checkpoints import save_atomically
from course_utils.training.device import describe_device, mixed_precision_dtype, pick_device
from course_utils.training.step import LossWithStats, batch_diagnostics, training_step, unpack_step

__all__ = ["CheckpointError", "CollapseWarning", "Trainer", "training_step"]


class CollapseWarning(UserWarning):
    """All encodings are (nearly) the same point: the loss sits at its collapsed value and nothing is learned."""


def looks_collapsed(mean_d_an: float, loss: float, collapsed_loss: float | None) -> bool:
    """True when mean d(A,N) and |loss - collapsed_loss| are below a tenth of collapsed_loss (if it is > 0)."""
    if collapsed_loss is None or not collapsed_loss > 0:
        return False
    return mean_d_an < 0.1 * collapsed_loss and abs(loss - collapsed_loss) < 0.1 * collapsed_loss


def _check_inputs(model, images, labels, test_images, test_labels, step) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if (test_images is None) != (test_labels is None):
        raise ValueError("give both test_images and test_labels, or neither.")
    for name, x, y in (("train", images, labels), ("test", test_images, test_labels)):
        if x is None:
            continue
        if check_tensor(x, f"{name}_images").dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{name}_images must be a float tensor (N, C, H, W), got {x.dtype} {tuple(x.shape)}.")
        check_labels(y, x.shape[0])
    if step is not None and not callable(step):
        raise TypeError(f"step must be a function, passed without parentheses; got a {type(step).__name__}.")


class Trainer:
    """Train an embedding network with P x K batches and Adam, evaluate, checkpoint, resume.

    model maps (B, C, H, W) pictures to (B, D) encodings; train_images (N, C, H, W) are float, train_labels (N,);
    test_images and test_labels, held-out identities, are evaluated after every epoch; step: a function like
    ``training_step`` (notebook 06's exercise), run in float32. Under torchrun the history holds the averages over
    all ranks, and only rank 0 shows progress, evaluates and writes.
    """

    def __init__(self, model: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor, loss_fn,
                 test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                 p: int = 16, k: int = 4, lr: float = 1e-3, seed: int = 0, device: str = "auto",
                 checkpoint_path: str | Path | None = None, step=None, progress: bool = True, verbose: bool = True):
        _check_inputs(model, train_images, train_labels, test_images, test_labels, step)
        check_positive(lr, "lr")
        self.device, self.step = pick_device(device), step
        if distributed.is_distributed() and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.amp_dtype = mixed_precision_dtype(self.device) if step is None else None  # one's own step: float32
        self.channels_last = self.device.type == "cuda"
        self.loss = LossWithStats(loss_fn, check_values=False)  # the epoch checks the sums it reads
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = self.network = model.to(self.device, memory_format=memory_format)
        if distributed.is_distributed():  # DDP averages the gradients of all ranks in backward()
            on_cuda = self.device.type == "cuda"
            self.network = DistributedDataParallel(self.model, device_ids=[self.device.index] if on_cuda else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        float16 = self.amp_dtype is torch.float16  # bfloat16 has float32's range: no scaler
        self.scaler = torch.amp.GradScaler("cuda" if self.device.type == "cuda" else "cpu", enabled=float16)
        self.sampler = PKBatchSampler(train_labels.cpu(), p=p, k=k, seed=seed, rank=self.rank,
                                      world_size=self.world_size)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.progress, self.verbose = progress and self.rank == 0, verbose and self.rank == 0
        self.config = {"model": repr(model), "loss": self.loss.name, "p": p, "k": k, "lr": float(lr), "seed": seed,
                       "train_data": fingerprint(train_images, train_labels), "world_size": self.world_size}
        self.train_images, self.train_labels = train_images.to(self.device), train_labels.to(self.device)
        self.test_images = None if test_images is None else test_images.to(self.device)
        self.test_labels = None if test_labels is None else test_labels.to(self.device)
        self.epoch, self.history, self.interrupted = 0, [], False
        if self.verbose:
            ranks = f" in each of {self.world_size} processes" if self.world_size > 1 else ""
            print(f"Training on {describe_device(self.device, self.amp_dtype)}: {len(train_labels):,} pictures, "
                  f"{len(self.sampler)} batches of P={p} x K={k} per epoch{ranks}.")

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step without a read from the device: (row (7,) of sums, embeddings (B, D))."""
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
        """One epoch; its record for the history (and the warnings on rank 0)."""
        self.model.train()
        sums = torch.zeros(7, device=self.device)  # loss, d(A,P), d(A,N), norm, terms, active, batches without terms
        batches = pictures = 0
        start = time.perf_counter()
        # One copy of the epoch's (batches, P*K) index plan to the device, then a row per batch.
        for batch in self.sampler.batches_for_epoch(self.epoch).to(self.device):
            row, embeddings = self._step(self.train_images[batch], self.train_labels[batch])
            sums += row
            batches, pictures = batches + 1, pictures + len(batch)
            bar.update(1)
        # Every rank computes it: a loss that mines across ranks gathers from all of them.
        collapsed_loss = self.loss.at_collapse(embeddings, self.train_labels[batch]).reshape(1)
        totals = torch.cat([sums, torch.tensor([batches, pictures], dtype=sums.dtype, device=self.device)])
        if distributed.is_distributed():  # every rank's history holds the sums over all ranks
            torch.distributed.all_reduce(totals)
        loss, ap, an, norm, terms, active, without_terms, batches, pictures, collapsed_loss = _read_sums(
            self.epoch + 1, torch.cat([totals, collapsed_loss]))
        seconds = time.perf_counter() - start
        record = {
            "epoch": self.epoch + 1, "loss": loss / batches, "active_fraction": active / terms if terms else None,
            "mean_d_ap": ap / batches, "mean_d_an": an / batches, "embedding_norm": norm / batches,
            "train_seconds": seconds, "pictures_per_second": pictures / seconds,
        }  # fmt: skip
        if self.rank == 0 and without_terms:
            warnings.warn(f"epoch {self.epoch + 1}: {int(without_terms)} of {int(batches)} batches held no triplet "
                          "(or pair) and taught nothing. Use P identities x K >= 2 pictures each.",
                          DegenerateBatchWarning, stacklevel=3)
        if self.rank == 0 and looks_collapsed(record["mean_d_an"], record["loss"], collapsed_loss):
            warnings.warn(f"epoch {self.epoch + 1}: the embedding looks collapsed: mean d(A,N) = {an / batches:.2e} "
                          f"and the loss {loss / batches:.4f} sits at {collapsed_loss:.4f}, what it gives when every "
                          "picture maps to the same point. Lower the learning rate, start with semi-hard "
                          "negatives, or check the data.", CollapseWarning, stacklevel=3)
        return record

    def evaluate(self) -> dict:
        """The held-out test_precision_at_1, test_r_precision and test_map_at_r; {} without them or off rank 0."""
        if self.test_images is None or self.rank != 0:
            return {}
        embeddings = embed(self.model, self.test_images, batch_size=512, device=self.device)
        metrics = retrieval_metrics(embeddings, self.test_labels, metric=self.loss.metric)
        return {f"test_{name}": value for name, value in metrics.items()}

    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs are complete (counting those loaded from a checkpoint); Jupyter's stop button
        ends it cleanly. Returns the history, a dict per epoch: loss, active_fraction (None if the loss does not say),
        mean_d_ap, mean_d_an, embedding_norm, train_seconds, pictures_per_second and the held-out test_* metrics."""
        check_whole_number(epochs, "epochs")
        self.interrupted = False
        bar = tqdm(total=max(0, epochs - self.epoch) * len(self.sampler), unit="batch", disable=not self.progress)
        try:
            while self.epoch < epochs:
                bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
                record = self._train_one_epoch(bar) | self.evaluate()
                self.epoch += 1
                self.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                if self.checkpoint_path is not None and self.rank == 0:
                    self.save_checkpoint(self.checkpoint_path)
                if self.verbose and not self.progress:
                    shown = ", ".join(f"{key} {value:.4g}" for key, value in record.items() if key != "epoch"
                                      and isinstance(value, float))  # fmt: skip
                    print(f"epoch {self.epoch}/{epochs}: {shown}", flush=True)
        except KeyboardInterrupt:
            self.interrupted, back = True, self.checkpoint_path is not None and self.checkpoint_path.exists()
            if back:
                self.load_checkpoint(self.checkpoint_path)
            print(f"Interrupted after {len(self.history)} complete epoch(s); the model is "
                  f"{'back at the last checkpoint' if back else 'part-way through an epoch'}.")
        finally:
            bar.close()
        return self.history

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write all this run needs to continue exactly to ``path`` (under a temporary name, then renamed)."""
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return save_atomically({
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "config": self.config, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng}, "history": self.history,
        }, path)  # fmt: skip

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint of this same run; CheckpointError (nothing changed) if it is not one."""
        state = read_checked(Path(path), self.config, self.model, self.optimizer)  # every entry fits: no half load
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without float16 (CPU, or bfloat16): keep the fresh scale
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and len(state["rng"]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch, self.history = state["epoch"], list(state["history"])


def _read_sums(epoch: int, sums: torch.Tensor) -> list[float]:
    """The one read of an epoch's sums back to Python; a loss or distance that is not finite stops here."""
    values = sums.tolist()  # waits for the device, once an epoch
    if not all(math.isfinite(value) for value in values[:4]):
        raise FloatingPointError(f"epoch {epoch}: the training loss or the distances became NaN or infinite. "
                                 "Lower the learning rate, check the pictures for NaN, and look for a sqrt "
                                 "or log of 0 in the model or the loss.")
    return values
