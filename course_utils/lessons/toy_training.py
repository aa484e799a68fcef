"""Gradient descent on a handful of trainable 2-D points: the triplet cost at work, step by drawable step.

The cost J, the sum of the triplet losses over every valid triplet, pulls points of the same identity
together and pushes the others apart until every margin holds and J is exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from course_utils._validate import check_alpha, check_embeddings, check_labels, check_positive, check_whole_number
from course_utils.core.losses import triplet_loss
from course_utils.core.mining import mine_triplets


def make_toy_points(n_identities: int = 3, points_per_identity: int = 4, dim: int = 2, separation: float = 1.0,
                    spread: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Made-up (n_identities * points_per_identity, dim) float64 encodings and their labels (0, 0, ..., 1, ...).

    Each identity's centre is drawn from N(0, separation^2) per coordinate and its points scatter
    around it with standard deviation spread. The global random generator is not touched.
    """
    for value, name in ((n_identities, "n_identities"), (points_per_identity, "points_per_identity")):
        if check_whole_number(value, name) < 2:
            raise ValueError(f"{name} must be at least 2 to form triplets, got {value}.")
    check_whole_number(dim, "dim")
    separation, spread = check_positive(separation, "separation"), check_positive(spread, "spread")
    generator = torch.Generator().manual_seed(seed)
    centres = separation * torch.randn(n_identities, dim, generator=generator, dtype=torch.float64)
    labels = torch.arange(n_identities).repeat_interleave(points_per_identity)
    noise = spread * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return centres[labels] + noise, labels


@dataclass(frozen=True)
class ToyHistory:
    """What `train_toy_points` recorded at steps 0 (the start) .. steps; num_triplets is m, the valid triplets.

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

    @property
    def reached_zero(self) -> bool:
        """True when the last J is exactly 0 (every margin holds)."""
        return bool(self.cost[-1] == 0)

    @property
    def mean_cost(self) -> torch.Tensor:
        """(steps + 1,) J / m: the mean over all triplets, easy ones included."""
        return self.cost / self.num_triplets

    @property
    def mean_active_cost(self) -> torch.Tensor:
        """(steps + 1,) J / (number of triplets with positive loss); 0 once none is left."""
        return torch.where(self.num_active > 0, self.cost / self.num_active.clamp_min(1), 0.0)

    def check_step(self, step) -> int:
        """Return step if it is a recorded step (0 .. steps), else raise ValueError saying the range."""
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= self.steps:
            raise ValueError(f"step must be a whole number from 0 to {self.steps}, got {step!r}.")
        return step


def check_history(history) -> ToyHistory:
    """Refuse anything that is not a ToyHistory, saying where one comes from."""
    if not isinstance(history, ToyHistory):
        raise TypeError(f"history must be a ToyHistory from train_toy_points, got {type(history).__name__}.")
    return history


def train_toy_points(points: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, learning_rate: float = 0.01,
                     max_steps: int = 500) -> ToyHistory:
    """Plain gradient descent on (n, 2) points (not modified), minimising J = sum_i L(A_i, P_i, N_i).

    J runs over every valid triplet, d is the squared Euclidean distance. Descent stops once J is
    exactly 0 (every margin holds, so the gradient is 0) or after max_steps updates.
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
        raise ValueError(
            "these labels form no valid triplet: give every identity at least 2 points and use at least 2 identities."
        )
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
