"""Distances between encodings: squared Euclidean (the course's d), Euclidean and cosine.

All functions compute in float32 (or float64 when given float64) with autocast
switched off, so mixed-precision training never changes which negative is the
hardest. Every result is >= 0 and finite, and backward through a distance of zero
gives finite gradients.
"""
from __future__ import annotations

import torch

from course_utils._validate import check_embeddings, check_metric, check_same_shape


def _full_precision(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Upcast half and bfloat16 inputs to float32; float32 and float64 stay as they are."""
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def _safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    """sqrt that is exactly 0 at 0 with a zero (not NaN) gradient there.

    d sqrt(s)/ds = 1 / (2 sqrt(s)) is infinite at s = 0 and autograd then multiplies
    inf by 0 and returns NaN. Taking the root of a value clamped to the smallest
    positive normal number, and selecting 0 where s == 0, keeps both value and
    gradient finite: the clamp passes no gradient to the zero entries. A NaN stays NaN, so
    a training loop that does not check its inputs still sees it in the loss.
    """
    tiny = torch.finfo(squared.dtype).tiny
    return torch.where(squared == 0, torch.zeros_like(squared), squared.clamp_min(tiny).sqrt())


def _unit_rows(x: torch.Tensor, name: str, check_values: bool = True) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    if check_values and bool((norms == 0).any()):
        rows = (norms.flatten() == 0).nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"cosine distance is undefined for an all-zero vector, and {name} has zero rows "
            f"at {rows}. Use metric='squared_euclidean' or 'euclidean', or make sure the "
            "network cannot output all zeros (for example L2-normalise a non-zero output)."
        )
    return x / norms


def row_distances(a: torch.Tensor, b: torch.Tensor, metric: str, check_values: bool = True) -> torch.Tensor:
    """Row-wise d(a_i, b_i) for already validated (n, d) inputs; the public functions check first.

    The losses validate their inputs once and then call this directly, so small batches do
    not pay for the same checks several times. check_values=False skips the host read of
    the all-zero-row check for the cosine distance.
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = _full_precision(a, b)
        if metric == "cosine":
            return (1 - (_unit_rows(a, "a", check_values) * _unit_rows(b, "b", check_values)).sum(dim=1)).clamp(0, 2)
        squared = ((a - b) ** 2).sum(dim=1)
        return _safe_sqrt(squared) if metric == "euclidean" else squared


def _checked_rows(a, b, metric: str) -> torch.Tensor:
    check_embeddings(a, "a"), check_embeddings(b, "b"), check_same_shape(a, b, "a", "b")
    return row_distances(a, b, metric)


def squared_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise squared Euclidean distance ||a_i - b_i||^2 of (n, d) encodings a, b: (n,), exactly 0 for equal rows."""
    return _checked_rows(a, b, "squared_euclidean")


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean distance ||a_i - b_i|| of (n, d) encodings a, b: (n,), with a finite gradient at 0."""
    return _checked_rows(a, b, "euclidean")


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine distance 1 - cos(a_i, b_i) of (n, d) encodings a, b: (n,), in [0, 2].

    An all-zero row raises ValueError: its angle is undefined.
    """
    return _checked_rows(a, b, "cosine")


def pairwise_distances(
    x: torch.Tensor, y: torch.Tensor | None = None, metric: str = "squared_euclidean"
) -> torch.Tensor:
    """All distances between the rows of x and the rows of y, vectorised.

    Uses ||x||^2 - 2 x.y + ||y||^2 (one matrix product) instead of n * m differences.

    Args:
        x: (n, d) encodings.
        y: (m, d) encodings; None means y = x.
        metric: "squared_euclidean", "euclidean" or "cosine".
    Returns:
        (n, m) matrix D with D[i, j] = d(x_i, y_j) >= 0. When y is None the matrix is
        symmetric with an exact zero diagonal.
    """
    check_embeddings(x, "x")
    check_metric(metric)
    if y is not None:
        check_embeddings(y, "y")
        if y.shape[1] != x.shape[1]:
            columns = f"{x.shape[1]} and {y.shape[1]}"
            raise ValueError(f"x and y must have the same number of columns (embedding size), got {columns}.")
    return matrix_distances(x, y, metric)


def matrix_distances(x: torch.Tensor, y: torch.Tensor | None, metric: str, check_values: bool = True) -> torch.Tensor:
    """``pairwise_distances`` for already validated inputs; the losses check once, then call this."""
    same = y is None
    with torch.autocast(device_type=x.device.type, enabled=False):
        (x,) = _full_precision(x)
        y = x if same else _full_precision(y)[0].to(x.dtype)
        if metric == "cosine":
            xu = _unit_rows(x, "x", check_values)
            yu = xu if same else _unit_rows(y, "y", check_values)
            dist = (1 - xu @ yu.T).clamp(0, 2)
        else:
            x_sq = (x * x).sum(dim=1, keepdim=True)
            y_sq = x_sq.T if same else (y * y).sum(dim=1).unsqueeze(0)
            # Round-off can make the expansion slightly negative; a squared distance is not.
            dist = (x_sq - 2 * x @ y.T + y_sq).clamp_min(0)
            if metric == "euclidean":
                dist = _safe_sqrt(dist)
        if same:
            # Exact symmetry and an exact zero diagonal, whatever the matrix product rounded.
            dist = ((dist + dist.T) / 2).fill_diagonal_(0)  # in place on a fresh tensor: safe for autograd
        return dist
