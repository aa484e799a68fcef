"""Every loss and miner against the slow reference, on many random and awkward batches."""
import itertools
import math
import warnings

import pytest
import torch

from batches import KINDS, make_batch
from course_utils import _validate
from course_utils.core import distances
from course_utils.core import losses
from course_utils.core import mining
from course_utils.core import reference
from course_utils.core.distances import pairwise_distances
from course_utils.core.losses import (
    ContrastiveLoss,
    DegenerateBatchWarning,
    TripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    contrastive_loss,
    triplet_loss,
)
from course_utils.core.mining import mine_triplets

METRICS = list(_validate.METRICS)  # every distance the course knows
ALPHAS = [0.0, 0.2, 1.0]
CASES = list(itertools.product(range(6), KINDS))


pytestmark = pytest.mark.usefixtures("quiet_degenerate_batches")


@pytest.mark.parametrize("seed,kind", CASES)
@pytest.mark.parametrize("metric", METRICS)
def test_batch_all_matches_reference(seed, kind, metric):
    x, labels = make_batch(seed, kind)
    for alpha in ALPHAS:
        loss, stats = batch_all_triplet_loss(x, labels, alpha, metric, return_stats=True)
        expected, valid, active = reference.batch_all_triplet_loss(x, labels, alpha, metric)
        assert stats.num_terms == valid
        # A hinge that is exactly 0 in exact arithmetic may round to +-1e-16 either way
        # (cosine ties: the normalisation rounds); only those may be counted differently.
        dist = reference.pairwise_distances(x, metric=metric)
        ambiguous = sum(abs(dist[a, p] - dist[a, n] + alpha) < 1e-9 for a, p, n in reference.all_triplets(labels))
        assert abs(stats.num_active - active) <= ambiguous
        assert torch.allclose(loss * stats.num_active, expected * active, atol=1e-9), (alpha, loss, expected)
        if ambiguous == 0:
            assert stats.num_active == active and torch.allclose(loss, expected, atol=1e-12)


@pytest.mark.parametrize("seed,kind", CASES)
@pytest.mark.parametrize("metric", METRICS)
def test_batch_hard_matches_reference(seed, kind, metric):
    x, labels = make_batch(seed, kind)
    for alpha, soft in [(a, False) for a in ALPHAS] + [(0.2, True)]:
        loss = batch_hard_triplet_loss(x, labels, alpha, metric, soft=soft)
        expected = reference.batch_hard_triplet_loss(x, labels, alpha, metric, soft=soft)
        assert torch.allclose(loss, expected, atol=1e-9), (alpha, soft, loss, expected)


@pytest.mark.parametrize("seed,kind", CASES)
@pytest.mark.parametrize("metric", METRICS)
def test_batch_semihard_matches_reference(seed, kind, metric):
    x, labels = make_batch(seed, kind)
    for alpha in ALPHAS:
        loss = batch_semihard_triplet_loss(x, labels, alpha, metric)
        expected = reference.batch_semihard_triplet_loss(x, labels, alpha, metric)
        assert torch.allclose(loss, expected, atol=1e-9), (alpha, loss, expected)


def _as_set(triplets):
    return set(zip(*(t.tolist() for t in triplets)))


@pytest.mark.parametrize("seed,kind", CASES)
def test_miners_match_reference(seed, kind):
    x, labels = make_batch(seed, kind)
    dist = reference.pairwise_distances(x)
    assert _as_set(mine_triplets(x, labels, "all")) == set(reference.all_triplets(labels))
    # With ties several indices are equally right, so compare the distances they select.
    for strategy, slow in [("hard", reference.hard_triplets), ("semihard", reference.semihard_triplets)]:
        fast = sorted((a, p, dist[a, p].item(), dist[a, n].item()) for a, p, n in _as_set(mine_triplets(x, labels, strategy)))
        expected = sorted((a, p, dist[a, p].item(), dist[a, n].item()) for a, p, n in slow(x, labels))
        assert len(fast) == len(expected)
        for got, want in zip(fast, expected):
            assert got[:2] == want[:2] and math.isclose(got[2], want[2], abs_tol=1e-9) and math.isclose(got[3], want[3], abs_tol=1e-9)


@pytest.mark.parametrize("seed,kind", CASES)
def test_random_miner_draws_only_valid_triplets(seed, kind):
    x, labels = make_batch(seed, kind)
    valid = set(reference.all_triplets(labels))
    drawn = mine_triplets(x, labels, "random", num_triplets=50, generator=torch.Generator().manual_seed(seed))
    assert len(drawn[0]) == (50 if valid else 0)
    assert _as_set(drawn) <= valid
    again = mine_triplets(x, labels, "random", num_triplets=50, generator=torch.Generator().manual_seed(seed))
    assert all(torch.equal(a, b) for a, b in zip(drawn, again))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", METRICS)
def test_mined_route_equals_fused_route(seed, metric):
    """Mining indices and then calling triplet_loss gives the fused losses' values."""
    x, labels = make_batch(seed, "gaussian", dtype=torch.float32, max_size=24)
    alpha = 0.2

    def gathered(strategy):
        a, p, n = mine_triplets(x, labels, strategy, metric=metric)
        return triplet_loss(x[a], x[p], x[n], alpha=alpha, metric=metric)

    losses = gathered("all")
    expected_all = losses[losses > 0].mean() if (losses > 0).any() else torch.tensor(0.0)
    assert torch.allclose(batch_all_triplet_loss(x, labels, alpha, metric), expected_all, atol=1e-5)
    assert torch.allclose(batch_hard_triplet_loss(x, labels, alpha, metric), gathered("hard").mean(), atol=1e-5)
    assert torch.allclose(batch_semihard_triplet_loss(x, labels, alpha, metric), gathered("semihard").mean(), atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_float32_path_with_ties_matches_reference(seed):
    """Training runs in float32, where batch-all and semi-hard sort one flat int64 key per entry
    (float64 uses row sorts): on a grid of tied and zero distances it must give the reference's
    triplets and values, and on a large tied batch the float64 path's."""
    x, labels = make_batch(seed, "ties", dtype=torch.float32, max_size=24)
    for alpha in ALPHAS:  # integer distances: ties are exact in float32 too
        loss, stats = batch_all_triplet_loss(x, labels, alpha, return_stats=True)
        expected, valid, active = reference.batch_all_triplet_loss(x.double(), labels, alpha)
        assert (int(stats.num_terms), int(stats.num_active)) == (valid, active)
        assert math.isclose(loss.item(), float(expected), abs_tol=1e-6)
        expected = reference.batch_semihard_triplet_loss(x.double(), labels, alpha)
        assert math.isclose(batch_semihard_triplet_loss(x, labels, alpha).item(), float(expected), abs_tol=1e-6)
    big = torch.randint(-1, 2, (256, 3), generator=torch.Generator().manual_seed(seed)).float()
    big_labels = torch.arange(256) % 16
    for loss_fn in (batch_all_triplet_loss, batch_semihard_triplet_loss):
        assert math.isclose(loss_fn(big, big_labels).item(), loss_fn(big.double(), big_labels).item(), abs_tol=1e-6)


@pytest.mark.parametrize("loss_fn", [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss])
@pytest.mark.parametrize("seed", range(3))
def test_gradients_match_reference(loss_fn, seed):
    x, labels = make_batch(seed, "gaussian")
    x.requires_grad_()
    slow = getattr(reference, loss_fn.__name__)
    loss_fn(x, labels, 0.5).backward()
    fast_grad = x.grad.clone()
    x.grad = None
    expected = slow(x, labels, 0.5)
    (expected[0] if isinstance(expected, tuple) else expected).backward()
    assert torch.allclose(fast_grad, x.grad, atol=1e-9)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_triplet_loss_matches_reference(metric, reduction):
    g = torch.Generator().manual_seed(7)
    anchor, positive, negative = (torch.randn(11, 5, dtype=torch.float64, generator=g) for _ in range(3))
    for alpha in ALPHAS:
        got = triplet_loss(anchor, positive, negative, alpha, metric, reduction)
        assert torch.allclose(got, reference.triplet_loss(anchor, positive, negative, alpha, metric, reduction))


def test_triplet_loss_matches_torch_triplet_margin_loss():
    """torch's loss uses the plain (not squared) distance of a - b + eps, eps = 1e-6."""
    g = torch.Generator().manual_seed(8)
    anchor, positive, negative = (torch.randn(64, 16, generator=g) for _ in range(3))
    for alpha in [0.2, 1.0]:  # torch refuses margin 0
        torch_loss = torch.nn.TripletMarginLoss(margin=alpha, p=2, reduction="none")(anchor, positive, negative)
        ours = triplet_loss(anchor, positive, negative, alpha=alpha, metric="euclidean")
        assert torch.allclose(ours, torch_loss, atol=1e-4)
        exact = torch.nn.TripletMarginLoss(margin=alpha, p=2, eps=0.0, reduction="mean")(anchor, positive, negative)
        assert torch.allclose(triplet_loss(anchor, positive, negative, alpha, "euclidean", "mean"), exact, atol=1e-6)


def test_worked_example_from_the_course_outline():
    """F4: alpha = 0.2, d(A,P) = 0.5; d(A,N) = 0.51 gives 0.19, d(A,N) = 0.7 meets the margin."""
    anchor = torch.zeros(2, 1, dtype=torch.float64)
    positive = torch.full((2, 1), math.sqrt(0.5), dtype=torch.float64)
    negative = torch.tensor([[math.sqrt(0.51)], [math.sqrt(0.7)]], dtype=torch.float64)
    losses = triplet_loss(anchor, positive, negative, alpha=0.2)
    assert math.isclose(losses[0].item(), 0.19, abs_tol=1e-12)
    assert math.isclose(losses[1].item(), 0.0, abs_tol=1e-12)
    residue = 0.5 - 0.7 + 0.2
    assert residue != 0.0 and abs(residue) < 1e-15  # the honest floating-point residue


@pytest.mark.parametrize(
    "labels,reason",
    [
        (torch.tensor([3, 3, 3, 3]), "same label"),
        (torch.tensor([0, 1, 2, 3]), "No two pictures"),
        (torch.tensor([5]), "1 picture"),
    ],
)
@pytest.mark.parametrize("loss_fn", [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss])
def test_degenerate_batches_give_attached_zero_and_one_warning(labels, reason, loss_fn):
    x = torch.randn(len(labels), 4, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = loss_fn(x, labels)
    assert [w.category for w in caught] == [DegenerateBatchWarning]
    assert reason in str(caught[0].message)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


EVERY_BATCH_LOSS = [
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    contrastive_loss,
    TripletLoss(mining="all"),
    TripletLoss(mining="hard"),
    TripletLoss(mining="hard", soft=True),
    TripletLoss(mining="semihard"),
    ContrastiveLoss(),
]


def loss_name(loss_fn) -> str:
    return getattr(loss_fn, "__name__", repr(loss_fn))


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3], [5]])
@pytest.mark.parametrize("loss_fn", EVERY_BATCH_LOSS, ids=loss_name)
def test_degenerate_batches_print_zero_not_minus_zero(labels, loss_fn):
    """Negative coordinates make the embeddings' sum negative, and that sum times 0 is -0.0."""
    labels = torch.tensor(labels)
    # Same label: the same point; different labels: 10 apart, beyond the contrastive margin.
    x = (-1.0 - 10.0 * labels).float().unsqueeze(1).repeat(1, 4).requires_grad_()
    loss = loss_fn(x, labels)
    assert f"{loss.item()}" == "0.0" and str(loss).startswith("tensor(0.,"), str(loss)
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_reference_zeros_are_not_minus_zero():
    assert f"{reference.mean_over_active(torch.tensor([-0.3, -0.1])).item()}" == "0.0"
    # Cosine distances of a point with itself round to about -1e-16, so their sum can be negative.
    x = torch.tensor([[0.3, -1.7, 0.9]]).repeat(4, 1)
    for labels in (torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3])):
        assert f"{reference.batch_all_triplet_loss(x, labels, metric='cosine')[0].item()}" == "0.0"
        for loss_fn in (reference.batch_hard_triplet_loss, reference.batch_semihard_triplet_loss):
            assert f"{loss_fn(x, labels, metric='cosine').item()}" == "0.0"


@pytest.mark.parametrize("loss_fn", EVERY_BATCH_LOSS, ids=loss_name)
def test_batch_losses_validate_the_embeddings_once(loss_fn, monkeypatch):
    """Each validation costs a host synchronisation on a GPU (torch.isfinite(...).all())."""
    calls = []

    def counting_check(x, name="embeddings", check_values=True):
        calls.append(name)
        return _validate.check_embeddings(x, name, check_values)

    for module in (losses, distances, mining):
        monkeypatch.setattr(module, "check_embeddings", counting_check)
    x, labels = make_batch(1, "gaussian", dtype=torch.float32, max_size=20)
    loss_fn(x, labels)
    assert calls == ["embeddings"]


def test_batch_without_active_triplet_is_zero_without_warning():
    """Every margin met: loss 0, no warning (that is success, not a degenerate batch)."""
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss_fn in (batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss):
            loss = loss_fn(x, labels)
            loss.backward()
            assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_module_matches_functions_and_records_stats(mining):
    x, labels = make_batch(2, "gaussian", dtype=torch.float32, max_size=20)
    module = TripletLoss(alpha=0.3, mining=mining)
    functions = {"all": batch_all_triplet_loss, "hard": batch_hard_triplet_loss, "semihard": batch_semihard_triplet_loss}
    expected, stats = functions[mining](x, labels, 0.3, return_stats=True)
    assert torch.equal(module(x, labels), expected)
    assert module.last_stats == stats and 0 <= stats.active_fraction <= 1
    assert "mining='%s'" % mining in repr(module)


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_bf16_autocast_loss_is_float32_and_close(mining):
    g = torch.Generator().manual_seed(9)
    embeddings = torch.nn.functional.normalize(torch.randn(48, 32, generator=g), dim=1)
    labels = torch.arange(12).repeat_interleave(4)
    module = TripletLoss(alpha=0.2, mining=mining)
    plain = module(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = module(embeddings, labels)
        from_bf16 = module(embeddings.bfloat16(), labels)  # a bf16 network output
    assert mixed.dtype == torch.float32 and from_bf16.dtype == torch.float32
    assert abs(mixed.item() - plain.item()) <= 1e-3
    # bf16 input is upcast before any arithmetic: same as computing on the upcast values.
    assert torch.allclose(from_bf16, module(embeddings.bfloat16().float(), labels), atol=1e-6)


def test_batch_all_exact_at_1024_without_cubic_tensor():
    g = torch.Generator().manual_seed(10)
    x, labels = torch.randn(1024, 16, generator=g), torch.randint(0, 32, (1024,), generator=g)
    loss, stats = batch_all_triplet_loss(x.double(), labels, 0.2, return_stats=True)
    # Check against an explicit anchor-by-anchor computation (B^2 memory per anchor).
    dist = pairwise_distances(x.double())
    total, active = 0.0, 0
    for a in range(0, 1024, 64):
        rows = slice(a, a + 64)
        same = labels[rows, None] == labels[None, :]
        not_self = torch.arange(a, min(a + 64, 1024))[:, None] != torch.arange(1024)[None, :]
        valid = (same & not_self)[:, :, None] & ~same[:, None, :]
        hinge = (dist[rows, :, None] - dist[rows, None, :] + 0.2) * valid
        total += hinge.clamp_min(0).sum().item()
        active += (hinge > 0).sum().item()
    assert stats.num_active == active
    assert math.isclose(loss.item(), total / active, rel_tol=1e-10)
