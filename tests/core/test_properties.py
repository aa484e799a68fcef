"""Properties every triplet loss must have, checked on generated batches (hypothesis)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import _validate
from course_utils.core.losses import (
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    triplet_loss,
)

LOSSES = [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss]
METRICS = list(_validate.METRICS)  # every distance the course knows
SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def labelled_batches(draw):
    """A float64 batch where every label occurs at least twice and there are >= 2 classes."""
    seed = draw(st.integers(0, 2**31 - 1))
    classes = draw(st.integers(2, 5))
    per_class = draw(st.integers(2, 4))
    dim = draw(st.integers(2, 6))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    return x, labels, g


def random_rotation(dim, g):
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@SETTINGS
@given(labelled_batches(), st.sampled_from(LOSSES), st.sampled_from(METRICS), st.sampled_from([0.0, 0.2, 1.0]))
def test_invariant_to_batch_order_and_never_negative(batch, loss_fn, metric, alpha):
    x, labels, g = batch
    order = torch.randperm(len(labels), generator=g)
    loss = loss_fn(x, labels, alpha, metric)
    assert loss >= 0
    assert torch.allclose(loss, loss_fn(x[order], labels[order], alpha, metric), atol=1e-10)


@SETTINGS
@given(labelled_batches(), st.sampled_from(LOSSES), st.sampled_from(["squared_euclidean", "euclidean"]))
def test_invariant_to_rigid_motion(batch, loss_fn, metric):
    x, labels, g = batch
    moved = x @ random_rotation(x.shape[1], g) + 3 * torch.randn(x.shape[1], generator=g, dtype=torch.float64)
    assert torch.allclose(loss_fn(x, labels, 0.2, metric), loss_fn(moved, labels, 0.2, metric), atol=1e-9)


@SETTINGS
@given(labelled_batches(), st.sampled_from(LOSSES), st.floats(0.01, 100.0))
def test_cosine_invariant_to_positive_scaling(batch, loss_fn, scale):
    x, labels, _ = batch
    assert torch.allclose(loss_fn(x, labels, 0.2, "cosine"), loss_fn(scale * x, labels, 0.2, "cosine"), atol=1e-9)


@SETTINGS
@given(labelled_batches(), st.sampled_from(LOSSES), st.sampled_from(["squared_euclidean", "euclidean"]))
def test_zero_when_every_margin_is_met(batch, loss_fn, metric):
    """Tight, far-apart clusters: every d(A,N) exceeds every d(A,P) by far more than alpha."""
    x, labels, g = batch
    centres = 100 * torch.eye(x.shape[1], dtype=torch.float64)[labels % x.shape[1]] + 100 * labels[:, None]
    clustered = centres + 0.01 * x
    loss = loss_fn(clustered, labels, 0.5, metric)
    assert loss.item() == 0.0


@settings(max_examples=10, deadline=None)
@given(labelled_batches(), st.sampled_from(LOSSES), st.sampled_from(METRICS))
def test_gradcheck_away_from_ties(batch, loss_fn, metric):
    x, labels, _ = batch
    x = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels, 0.3, metric), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck_triplet_loss(metric):
    g = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, p, n: triplet_loss(a, p, n, 0.5, metric, "sum"), inputs)


def test_soft_margin_gradient_never_vanishes():
    """Softplus never reaches exactly 0, so even satisfied triplets give a (small) gradient."""
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    batch_hard_triplet_loss(x, labels, soft=True).backward()
    assert (x.grad.abs() > 0).all()
