"""Gradient descent on a handful of trainable 2-D points: the triplet cost J at work, step by drawable step."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from course_utils._validate import check_alpha, check_embeddings, check_labels, check_positive, check_whole_number
from course_utils.core.losses import triplet_loss
from course_utils.core.mining import mine_triplets


def make_toy_points(n_identities: int = 3, points_per_identity: int = 4, dim: int = 2, separation: float = 1.0,
                    spread: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Made-up (n_identities * points_per_identity, dim) float64 encodings and their labels (0, 0, ..., 1, ...).

    Centres are drawn from N(0, separation^2) per coordinate, points around them with standard deviation spread.
    """
    check_whole_number(n_identities, "n_identities", 2, why="at least 2 to form triplets")
    check_whole_number(points_per_identity, "points_per_identity", 2, why="at least 2 to form triplets")
    check_whole_number(dim, "dim")
    separation, spread = check_positive(separation, "separation"), check_positive(spread, "spread")
    generator = torch.Generator().manual_seed(seed)
    centres = separation * torch.randn(n_identities, dim, generator=generator, dtype=torch.float64)
    labels = torch.arange(n_identities).repeat_interleave(points_per_identity)
    noise = spread * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return centres[labels] + noise, labels


@dataclass(frozen=True)
class ToyHistory:
    """What `train_toy_points` recorded at steps 0 .. steps; num_triplets is m, the valid triplets.

    points, gradients: (steps + 1, n, 2) positions and the gradient of J there; cost, num_active (triplets
    with a positive loss), mean_positive_distance, mean_negative_distance: (steps + 1,).
    """

    labels: torch.Tensor
    alpha: float
    learning_rate: float
    points: torch.Tensor
    gradients: torch.Tensor
    cost: torch.Tensor
    num_active: torch.Tensor
    num_triplets: int
    mean_positive_distance: torch.Tensor
    mean_negative_distance: torch.Tensor

    @property
    def steps(self) -> int:
        """Number of gradient steps taken."""
        return len(self.cost) - 1


def check_history(history, step=None) -> ToyHistory:
    """Refuse anything but a ToyHistory, and a step (if given) outside 0 .. history.steps."""
    if not isinstance(history, ToyHistory):
        raise TypeError(f"history must be a ToyHistory from train_toy_points, got {type(history).__name__}.")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= history.steps):
        raise ValueError(f"step must be a whole number from 0 to {history.steps}, got {step!r}.")
    return history


def train_toy_points(points: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, learning_rate: float = 0.01,
                     max_steps: int = 500) -> ToyHistory:
    """Plain gradient descent on (n, 2) points (not modified), minimising J = sum of L over every valid triplet.

    d is the squared Euclidean distance. It stops once J is exactly 0 (every margin holds) or after max_steps.
    """
    check_embeddings(points, "points")
    if points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2) so they can be drawn, got {tuple(points.shape)}.")
    labels = check_labels(labels, points.shape[0])
    alpha = check_alpha(alpha)
    learning_rate = check_positive(learning_rate, "learning_rate")
    max_steps = check_whole_number(max_steps, "max_steps")
    anchor_idx, positive_idx, negative_idx = mine_triplets(points, labels, strategy="all")  # (m,) each
    if anchor_idx.numel() == 0:
        raise ValueError("these labels form no valid triplet: give at least 2 identities 2 points or more each.")
    position = points.detach().clone().requires_grad_()  # (n, 2), the parameters
    record = []
    for step in range(max_steps + 1):
        anchor, positive, negative = position[anchor_idx], position[positive_idx], position[negative_idx]  # (m, 2)
        losses = triplet_loss(anchor, positive, negative, alpha=alpha, reduction="none")  # (m,)
        cost = losses.sum()
        (gradient,) = torch.autograd.grad(cost, position)  # (n, 2)
        with torch.no_grad():
            d_ap, d_an = ((anchor - positive) ** 2).sum(dim=1), ((anchor - negative) ** 2).sum(dim=1)  # (m,)
            record.append((position.clone(), gradient, cost.detach(), (losses > 0).sum(), d_ap.mean(), d_an.mean()))
            if cost == 0 or step == max_steps:
                break
            position -= learning_rate * gradient
    positions, gradients, costs, num_active, mean_ap, mean_an = (torch.stack(column) for column in zip(*record))
    return ToyHistory(labels.clone(), alpha, learning_rate, positions, gradients, costs, num_active,
                      int(anchor_idx.numel()), mean_ap, mean_an)  # fmt: skip
