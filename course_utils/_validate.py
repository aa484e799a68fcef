"""Input checks shared by every public function: a ``TypeError`` or ``ValueError`` that says what is
wrong and how to fix it, so a learner never meets a bare traceback from deep inside torch."""
from __future__ import annotations

import math

import torch

METRICS = ("squared_euclidean", "euclidean", "cosine")


def check_tensor(x, name: str) -> torch.Tensor:
    """Refuse anything that is not a torch tensor, with the conversion to use."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}. "
                        f"Convert it first, for example torch.as_tensor({name}, dtype=torch.float32).")
    return x


def check_embeddings(x, name: str = "embeddings", check_values: bool = True) -> torch.Tensor:
    """A 2-D floating tensor (n, d) of finite numbers (the values are read only if check_values)."""
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D with shape (n, d): one row per picture, got shape {tuple(x.shape)}. "
                         f"Flatten extra dimensions with {name}.flatten(1), or add a batch dimension with "
                         f"{name}.unsqueeze(0) for a single vector.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}. Use {name}.float().")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: each row needs at least one coordinate.")
    # One host sync: cheap next to the distance matrix, and it turns a silent NaN loss into an error.
    if check_values and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        raise ValueError(f"{name} contains NaN or inf in row(s) {bad[:5].tolist()}{' ...' if bad.numel() > 5 else ''}. "
                         "The network produced invalid numbers upstream (check the learning rate, the input data "
                         "and any sqrt or log in the model).")
    return x


def check_distances(x, name: str, allow_empty: bool = False, hint: str = "") -> torch.Tensor:
    """A 1-D floating tensor of finite distances >= 0 (one per pair or per triplet)."""
    check_tensor(x, name)
    if x.dim() != 1 or (x.numel() == 0 and not allow_empty):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}1-D tensor of distances, "
                         f"got shape {tuple(x.shape)}.{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}. Use {name}.float().")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; compute distances from finite encodings.")
    if bool((x < 0).any()):
        raise ValueError(f"{name} contains negative values; a distance is >= 0.")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape (one row each per triplet), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}.")


def check_labels(labels, n: int, device: torch.device | None = None) -> torch.Tensor:
    """A 1-D integer tensor with one label per embedding row. A (n, 1) column or one-hot (n, c) labels are
    rejected, not squeezed: that would hide the broadcasting mistake behind them."""
    check_tensor(labels, "labels")
    if labels.dim() == 2:
        kind, fix = ("a column", "labels.view(-1)") if labels.shape[1] == 1 else ("one-hot", "labels.argmax(dim=1)")
        raise ValueError(f"labels has shape {tuple(labels.shape)}, {kind}; the losses need one integer identity "
                         f"per row, shape (n,): use {fix}.")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D with shape (n,), got shape {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (identity ids), got dtype {labels.dtype}. "
                        "Float labels compare unreliably; use labels.long() if they hold whole numbers.")
    if labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries but there are {n} embeddings; "
                         "give exactly one label per embedding row.")
    return labels if device is None else labels.to(device)


def check_whole_number(value, name: str, minimum: int = 1, why: str = "") -> int:
    """A Python int >= minimum (a count, a size, a seed): bools and floats such as 2.0 get a TypeError,
    a too small int a ValueError; ``why`` (optional) says why the minimum holds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number (an int), got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value}" + (f": {why}." if why else "."))
    return value


def _finite_number(value, name: str) -> float:
    """A Python number or a one-element tensor as a finite float, else a clear error."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    return float(value)


def check_nonnegative(value, name: str, why: str) -> float:
    """A finite number >= 0 (alpha, a margin); ``why`` completes the error: what the number means."""
    value = _finite_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}. {why}")
    return value


def check_positive(value, name: str) -> float:
    """A finite number > 0 (a learning rate, a scale)."""
    value = _finite_number(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value}.")
    return value


def check_alpha(alpha) -> float:
    return check_nonnegative(
        alpha, "alpha", "The margin asks d(A,N) to exceed d(A,P) by alpha; "
        "a negative margin would reward negatives that are closer than positives."
    )


def check_metric(metric) -> str:
    return check_choice(metric, "metric", METRICS)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}.")
    return value
