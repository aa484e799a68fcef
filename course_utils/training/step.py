"""One training step and the loss with its statistics; nothing here reads a value back to the host."""
from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from course_utils._validate import check_metric
from course_utils.core.distances import matrix_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, images: torch.Tensor,
                  labels: torch.Tensor, scaler: torch.amp.GradScaler | None = None,
                  amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of gradient descent on (B, C, H, W) images and (B,) labels, under autocast to amp_dtype (None:
    float32) with a float16 gradient scaler; returns (loss, embeddings (B, D)), detached, as notebook 06 asks."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        embeddings = model(images)
    loss = loss_fn(embeddings, labels)  # the course losses compute distances in float32 themselves
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()  # float16 gradients of small losses underflow to 0 unless scaled up
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), embeddings.detach()


def unpack_step(answer) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached (loss, embeddings) from what a step of one's own returned (the loss may be a Python number)."""
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2 and isinstance(answer[1], torch.Tensor)):
        raise TypeError(f"the step function must return (loss, embeddings); it returned a {type(answer).__name__}. "
                        "End it with `return loss, embeddings`.")
    loss, embeddings = answer[0], answer[1].detach()
    loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss), device=embeddings.device)
    return loss, embeddings


class LossWithStats:
    """Calls a loss and keeps the stats it reports (a module's ``last_stats``, or (loss, stats) from a function with
    ``return_stats``) in ``last_stats``; check_values=False makes the course's losses read nothing from the device."""

    def __init__(self, loss_fn, check_values: bool = True):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(embeddings, labels), got {type(loss_fn).__name__}.")
        self.name = _describe(loss_fn)
        if hasattr(loss_fn, "check_values") and loss_fn.check_values != check_values:
            loss_fn = copy.copy(loss_fn)  # the caller's module keeps its setting
            loss_fn.check_values = check_values
        self.loss_fn = loss_fn
        try:
            parameters = dict(inspect.signature(loss_fn).parameters)
        except (TypeError, ValueError):  # a builtin without a signature
            parameters = {}
        self.is_module = hasattr(loss_fn, "last_stats")
        self.asks_for_stats = not self.is_module and "return_stats" in parameters
        self.reports_stats = self.is_module or self.asks_for_stats
        self.keywords = {"check_values": check_values} if "check_values" in parameters else {}
        own = getattr(parameters.get("metric"), "default", None)  # a function's metric, else the course's
        self.metric = check_metric(getattr(loss_fn, "metric", own if isinstance(own, str) else "squared_euclidean"))
        self.last_stats = None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.asks_for_stats:
            loss, self.last_stats = self.loss_fn(embeddings, labels, return_stats=True, **self.keywords)
            return loss
        loss = self.loss_fn(embeddings, labels, **self.keywords)
        self.last_stats = self.loss_fn.last_stats if self.is_module else None
        return loss

    def counts(self, device: torch.device) -> torch.Tensor:
        """(2,) float [terms the last loss averaged over, how many were active], zeros without stats."""
        if self.last_stats is None:
            return torch.zeros(2, device=device)
        return torch.stack([torch.as_tensor(n, dtype=torch.float32, device=device) for n in self.last_stats[:2]])

    def at_collapse(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The 0-dim loss when all encodings coincide: alpha (hinge), ln 2 (soft margin), margin^2 / 2 (contrastive)."""
        with torch.no_grad():
            collapsed = embeddings[:1].repeat(len(embeddings), 1)  # (B, D), every row the first
            return self.loss_fn(collapsed, labels, **self.keywords).detach().float()


def _describe(loss_fn) -> str:
    """A loss's name without memory addresses, the same in every process (stored in checkpoints)."""
    if isinstance(loss_fn, nn.Module):
        return repr(loss_fn)
    func, keywords = getattr(loss_fn, "func", loss_fn), getattr(loss_fn, "keywords", {})  # a functools.partial's
    name = getattr(func, "__qualname__", type(func).__qualname__)
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(keywords.items()))})"


def batch_diagnostics(loss: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor, metric: str) -> torch.Tensor:
    """(6,) [loss, mean d(A,P), mean d(A,N), mean encoding length, A-P pairs, A-N pairs] of a batch, on its device."""
    dist = matrix_distances(embeddings, None, metric)  # (B, B), no value check: NaN stays NaN
    positive, negative = anchor_positive_mask(labels), anchor_negative_mask(labels)  # (B, B) each
    pairs = torch.stack([positive.sum(), negative.sum()]).float()  # (2,)
    # Masked sums instead of dist[mask], which would wait for the GPU to know the size.
    sums = torch.stack([torch.where(positive, dist, 0).sum(), torch.where(negative, dist, 0).sum()])  # (2,)
    means = sums.float() / pairs.clamp_min(1)
    return torch.cat([loss.detach().float().reshape(1), means, embeddings.norm(dim=1).mean().float().reshape(1), pairs])
