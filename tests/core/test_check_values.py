"""check_values=False: the losses make no host read (GPU-ready) and give the same results."""
import itertools
import warnings

import pytest
import torch

from batches import KINDS, make_batch
from host_reads import count_host_reads
from course_utils import _validate
from course_utils.core.losses import (
    ContrastiveLoss,
    ContrastiveStats,
    DegenerateBatchWarning,
    TripletLoss,
    TripletStats,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    contrastive_loss,
    triplet_loss,
)

METRICS = list(_validate.METRICS)  # every distance the course knows
FUNCTIONS = {
    "batch-all": batch_all_triplet_loss,
    "batch-hard": batch_hard_triplet_loss,
    "soft batch-hard": lambda *args, **kwargs: batch_hard_triplet_loss(*args, soft=True, **kwargs),
    "semi-hard": batch_semihard_triplet_loss,
    "contrastive": contrastive_loss,
}
MODULES = {
    "TripletLoss all": lambda **kw: TripletLoss(mining="all", **kw),
    "TripletLoss hard": lambda **kw: TripletLoss(mining="hard", **kw),
    "TripletLoss soft": lambda **kw: TripletLoss(mining="hard", soft=True, **kw),
    "TripletLoss semihard": lambda **kw: TripletLoss(mining="semihard", **kw),
    "ContrastiveLoss": lambda **kw: ContrastiveLoss(**kw),
}
def _batches():
    yield from (make_batch(seed, kind) for seed, kind in itertools.product(range(3), KINDS))
    for labels in ([3, 3, 3, 3], [0, 1, 2, 3], [5]):  # no triplet: no warning either
        yield torch.randn(len(labels), 3, dtype=torch.float64), torch.tensor(labels)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", list(FUNCTIONS) + list(MODULES))
def test_no_host_read_and_same_results_without_value_checks(name, metric):
    for x, labels in _batches():
        results = {}
        for check_values in (True, False):
            leaf = x.clone().requires_grad_()
            with warnings.catch_warnings(record=True) as caught, count_host_reads() as reads:
                warnings.simplefilter("always")
                if name in MODULES:
                    module = MODULES[name](metric=metric, check_values=check_values)
                    loss, stats = module(leaf, labels), module.last_stats
                else:
                    loss, stats = FUNCTIONS[name](leaf, labels, metric=metric, return_stats=True, check_values=check_values)
                loss.backward()
            results[check_values] = loss, stats, leaf.grad
            if not check_values:
                assert reads == [] and caught == [], (name, labels, reads, caught)
        (loss, stats, grad), (fast_loss, fast_stats, fast_grad) = results[True], results[False]
        assert torch.equal(loss, fast_loss) and torch.equal(grad, fast_grad)
        assert all(torch.equal(a, b) for a, b in zip(stats, fast_stats))


def test_the_counter_sees_the_reads_of_the_checked_path():
    """The positive control: the default path reads values (NaN check, degenerate batch)."""
    x, labels = make_batch(0, "gaussian")
    with count_host_reads() as reads:
        batch_all_triplet_loss(x, labels)
    assert reads == ["__bool__", "__int__"]  # the NaN check and the degenerate-batch count, each once
    with count_host_reads() as reads:
        x[labels.bool()].sum()
    assert reads == ["index"]  # seen only inside torch: a boolean mask sizes its result on the host
    with count_host_reads() as reads:
        torch.tensor(1.0).item()
    assert reads == ["item"]  # one read, counted once although .item() calls _local_scalar_dense


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_stats_are_int64_tensors_on_the_embeddings_device(name):
    x, labels = make_batch(1, "gaussian")
    for check_values in (True, False):
        _, stats = FUNCTIONS[name](x, labels, return_stats=True, check_values=check_values)
        assert isinstance(stats, ContrastiveStats if name == "contrastive" else TripletStats)
        for field in stats:
            assert isinstance(field, torch.Tensor) and field.dim() == 0
            assert field.dtype == torch.int64 and field.device == x.device
        assert 0 <= stats.active_fraction <= 1 and isinstance(stats.active_fraction, float)


def test_active_fraction_reads_ints_and_tensors_alike():
    assert TripletStats(4, 1).active_fraction == 0.25
    assert TripletStats(torch.tensor(4), torch.tensor(1)).active_fraction == 0.25
    assert ContrastiveStats(torch.tensor(0), torch.tensor(0)).active_fraction == 0.0


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_without_value_checks_shapes_are_still_checked_and_nan_passes_through(name):
    x, labels = make_batch(2, "gaussian")
    with pytest.raises(ValueError, match="2-D"):
        FUNCTIONS[name](x[None], labels, check_values=False)
    with pytest.raises(ValueError, match="one label per embedding"):
        FUNCTIONS[name](x, labels[:-1], check_values=False)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        FUNCTIONS[name](x, labels)
    assert torch.isnan(FUNCTIONS[name](x, labels, check_values=False))  # the training loop checks it


def test_triplet_loss_without_value_checks():
    g = torch.Generator().manual_seed(3)
    anchor, positive, negative = (torch.randn(6, 4, generator=g) for _ in range(3))
    with count_host_reads() as reads:
        fast = triplet_loss(anchor, positive, negative, metric="cosine", reduction="mean", check_values=False)
    assert reads == []
    assert torch.equal(fast, triplet_loss(anchor, positive, negative, metric="cosine", reduction="mean"))


def test_modules_show_the_setting():
    assert "check_values=False" in repr(TripletLoss(check_values=False))
    assert "check_values" not in repr(TripletLoss())
    assert "check_values=False" in repr(ContrastiveLoss(check_values=False))


def test_degenerate_batch_still_warns_by_default():
    with pytest.warns(DegenerateBatchWarning):
        batch_semihard_triplet_loss(torch.randn(4, 3), torch.tensor([1, 1, 1, 1]))
