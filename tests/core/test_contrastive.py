"""The contrastive loss (Hadsell, Chopra, LeCun 2006) against the slow reference and against PML."""
import itertools
import warnings

import pytest
import torch
from pytorch_metric_learning import distances, losses, reducers

from batches import KINDS, make_batch
from course_utils.core import reference
from course_utils.core.losses import ContrastiveLoss, ContrastiveStats, DegenerateBatchWarning, contrastive_loss
from course_utils.training.models import EmbeddingNet
from course_utils.training.trainer import Trainer

METRICS = ["euclidean", "squared_euclidean", "cosine"]
MARGINS = [0.0, 0.5, 1.0, 2.0]


pytestmark = pytest.mark.usefixtures("quiet_degenerate_batches")


@pytest.mark.parametrize("seed,kind", list(itertools.product(range(6), KINDS)))
@pytest.mark.parametrize("metric", METRICS)
def test_matches_reference_and_gradients_are_finite(seed, kind, metric):
    x, labels = make_batch(seed, kind)
    for margin in MARGINS:
        fast_x = x.clone().requires_grad_(True)
        loss, stats = contrastive_loss(fast_x, labels, margin, metric, return_stats=True)
        slow_x = x.clone().requires_grad_(True)
        expected, pairs, active = reference.contrastive_loss(slow_x, labels, margin, metric)
        assert torch.allclose(loss, expected, atol=1e-9), (margin, loss, expected)
        assert stats.num_terms == pairs == len(labels) * (len(labels) - 1) // 2
        # A pair at D = 0 (pull) or D = margin (push) has loss exactly 0 in exact arithmetic but may
        # round to 1e-17 either way (cosine of copies); only those may be counted differently.
        dist = reference.pairwise_distances(x, metric=metric)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        boundary = torch.where(same, dist, (dist - margin).abs()).triu(diagonal=1)
        ambiguous = int(((boundary < 1e-7) & torch.ones_like(same).triu(diagonal=1)).sum())
        assert abs(stats.num_active - active) <= ambiguous
        if ambiguous == 0:
            assert stats.num_active == active
        (fast_grad,) = torch.autograd.grad(loss, fast_x, allow_unused=True, materialize_grads=True)
        (slow_grad,) = torch.autograd.grad(expected, slow_x, allow_unused=True, materialize_grads=True)
        assert torch.isfinite(fast_grad).all()
        # The reference takes differences first; the fast code expands ||a||^2 - 2ab + ||b||^2.
        assert torch.allclose(fast_grad, slow_grad, atol=1e-6), (margin, fast_grad, slow_grad)


def test_duplicate_points_of_different_people_get_a_finite_push():
    x = torch.tensor([[0.3, 0.4], [0.3, 0.4], [1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    loss = contrastive_loss(x, labels, margin=1.0)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # Two different-person pairs sit at D = 0 and pay (1 - 0)^2 / 2 each; mean with the other two.
    assert loss.item() == pytest.approx(reference.contrastive_loss(x.detach(), labels, 1.0)[0].item(), abs=1e-6)


def test_hand_computed_example():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.6]])
    labels = torch.tensor([7, 7, 2])
    # same pair (0, 1): D = 5, pays 12.5; different pairs: D = 0.6 pays (1 - 0.6)^2 / 2 = 0.08,
    # D = sqrt(9 + 11.56) > 1 pays 0. Mean of same (12.5) + mean of different (0.04).
    loss, stats = contrastive_loss(x, labels, margin=1.0, return_stats=True)
    assert loss.item() == pytest.approx(12.54, abs=1e-5)
    assert stats == ContrastiveStats(3, 2) and stats.active_fraction == pytest.approx(2 / 3)


class _SquaredContrastive(losses.ContrastiveLoss):
    """PML's ContrastiveLoss uses relu(D - pos_margin) and relu(neg_margin - D), without squares.
    Squaring and halving both per-pair terms here gives Hadsell's definition; everything else
    (pair enumeration, masks, reducer) is PML's own."""

    def pos_calc(self, pos_pair_dist, margin):
        return super().pos_calc(pos_pair_dist, margin) ** 2 / 2

    def neg_calc(self, neg_pair_dist, margin):
        return super().neg_calc(neg_pair_dist, margin) ** 2 / 2


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("margin", [0.5, 1.0, 3.0])
def test_equals_pml_with_squared_terms_and_mean_reducer(seed, margin):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (24,), generator=g)
    pml = _SquaredContrastive(pos_margin=0, neg_margin=margin, reducer=reducers.MeanReducer(),
                              distance=distances.LpDistance(normalize_embeddings=False, p=2, power=1))
    # PML averages over ordered pairs (i, j) and (j, i): the same mean as over unordered pairs.
    assert torch.allclose(contrastive_loss(x, labels, margin), pml(x, labels), atol=1e-10)


def test_pml_default_differs_without_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(4)
    pml = losses.ContrastiveLoss(pos_margin=0, neg_margin=1.0, reducer=reducers.MeanReducer(),
                                 distance=distances.LpDistance(normalize_embeddings=False, p=2, power=1))
    assert not torch.allclose(contrastive_loss(x, labels, 1.0), pml(x, labels))


@pytest.mark.parametrize("labels,kind", [
    (torch.tensor([0, 1, 2, 3]), "same-person"),
    (torch.tensor([5, 5, 5]), "different-person"),
])
def test_batch_missing_a_kind_of_pair_warns_and_counts_zero(labels, kind):
    x = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match=f"no {kind} pair"):
        loss = contrastive_loss(x, labels, margin=10.0)
    expected, _, _ = reference.contrastive_loss(x.detach(), labels, 10.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_single_picture_gives_zero_with_a_warning():
    x = torch.randn(1, 3, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="1 picture"):
        loss = contrastive_loss(x, torch.tensor([0]))
    loss.backward()
    assert loss.item() == 0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("embeddings,labels,kwargs,error,match", [
    (torch.randn(4), torch.tensor([0, 0, 1, 1]), {}, ValueError, "2-D"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1]), {}, ValueError, "one label per embedding"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.tensor([0, 1]), {}, ValueError, "NaN"),
    (torch.randn(4, 3), torch.tensor([0.0, 0.0, 1.0, 1.0]), {}, TypeError, "integer"),
    (torch.randn(4, 3), torch.tensor([[0], [0], [1], [1]]), {}, ValueError, "column"),
    (torch.randint(0, 3, (4, 3)), torch.tensor([0, 0, 1, 1]), {}, TypeError, "floating"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), {"margin": -0.1}, ValueError, "margin must be >= 0"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), {"margin": float("inf")}, ValueError, "finite"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), {"margin": "1"}, TypeError, "margin must be a number"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), {"metric": "manhattan"}, ValueError, "unknown metric"),
])
def test_bad_input_is_refused_clearly(embeddings, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        contrastive_loss(embeddings, labels, **kwargs)


def test_module_keeps_stats_and_refuses_bad_settings():
    module = ContrastiveLoss(margin=0.8)
    x, labels = make_batch(3, "gaussian", dtype=torch.float32)
    assert torch.equal(module(x, labels), contrastive_loss(x, labels, 0.8))
    assert module.last_stats == contrastive_loss(x, labels, 0.8, return_stats=True)[1]
    assert repr(module) == "ContrastiveLoss(margin=0.8, metric='euclidean')"
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(margin=-1)
    with pytest.raises(ValueError, match="unknown metric"):
        ContrastiveLoss(metric="l1")


def test_trainer_trains_with_it_like_with_the_triplet_loss():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(48, 1, 16, 16, generator=g)
    labels = torch.arange(12).repeat_interleave(4)
    torch.manual_seed(0)
    trainer = Trainer(EmbeddingNet(in_channels=1, embedding_dim=8, width=4), images, labels,
                      ContrastiveLoss(margin=1.0), p=4, k=4, device="cpu", progress=False, verbose=False)
    history = trainer.fit(2)
    assert trainer.config["loss"] == "ContrastiveLoss(margin=1.0, metric='euclidean')"
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    # The active fraction is over pairs here: a batch of 16 pictures has 120 of them.
    stats = trainer.loss.last_stats
    assert isinstance(stats, ContrastiveStats) and stats.num_terms == 16 * 15 // 2
    assert all(0 < row["active_fraction"] <= 1 for row in history)
