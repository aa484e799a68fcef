"""The course's losses against pytorch-metric-learning (PML) where the semantics line up,
and the documented differences tested as such."""
import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils

from batches import make_batch
from course_utils.core.losses import batch_all_triplet_loss, batch_hard_triplet_loss, batch_semihard_triplet_loss
from course_utils.core.mining import mine_triplets

# PML's distance objects for our metric names. Cosine: PML uses the similarity; the
# difference d(A,P) - d(A,N) with d = 1 - cos equals cos(A,N) - cos(A,P), so the losses agree.
PML_DISTANCE = {
    "squared_euclidean": lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=2),
    "euclidean": lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=1),
    "cosine": lambda: distances.CosineSimilarity(),
}
METRICS = list(PML_DISTANCE)


def batch(seed, size=32, classes=4, dim=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(size, dim, generator=g, dtype=torch.float64), torch.randint(0, classes, (size,), generator=g)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("alpha", [0.05, 0.2, 1.0])
def test_batch_all_equals_pml_without_miner(seed, metric, alpha):
    """Both average the loss over the triplets whose loss is non-zero."""
    x, labels = batch(seed)
    pml = losses.TripletMarginLoss(margin=alpha, distance=PML_DISTANCE[metric]())(x, labels)
    assert torch.allclose(batch_all_triplet_loss(x, labels, alpha, metric), pml, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("metric", METRICS)
def test_batch_hard_equals_pml_batch_hard_miner_with_mean_reducer(seed, metric):
    """PML averages only non-zero losses by default; with MeanReducer it averages over anchors like ours."""
    x, labels = batch(seed)
    distance = PML_DISTANCE[metric]()
    triplets = miners.BatchHardMiner(distance=distance)(x, labels)
    loss = losses.TripletMarginLoss(margin=0.2, distance=distance, reducer=reducers.MeanReducer())
    assert torch.allclose(batch_hard_triplet_loss(x, labels, 0.2, metric), loss(x, labels, triplets), atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_all_triplets_equal_pml_enumeration(seed):
    x, labels = make_batch(seed, "lonely_anchors")
    ours = set(zip(*(t.tolist() for t in mine_triplets(x, labels, "all"))))
    theirs = set(zip(*(t.tolist() for t in loss_and_miner_utils.get_all_triplets_indices(labels))))
    assert ours == theirs


@pytest.mark.parametrize("seed", range(5))
def test_semihard_selection_differs_from_pml_as_documented(seed):
    """Ours: one triplet per positive pair (closest negative farther than the positive, else the
    farthest negative). PML's "semihard" miner: every triplet with 0 < d(a,n) - d(a,p) <= alpha."""
    x, labels = batch(seed, size=24)
    alpha = 0.5
    dist = torch.cdist(x, x) ** 2
    pml = set(zip(*(t.tolist() for t in miners.TripletMarginMiner(
        margin=alpha, type_of_triplets="semihard", distance=PML_DISTANCE["squared_euclidean"]())(x, labels))))
    band = {(a, p, n) for a, p, n in zip(*(t.tolist() for t in mine_triplets(x, labels, "all")))
            if 0 < dist[a, n] - dist[a, p] <= alpha}
    assert pml == band
    ours = list(zip(*(t.tolist() for t in mine_triplets(x, labels, "semihard"))))
    positive_pairs = {(a, p) for a, p, _ in band} | {(a, p) for a, p, _ in ours}
    assert len(ours) == len({(a, p) for a, p, _ in ours}) == len(positive_pairs)
    # Where a pair has band negatives, ours picks the closest of them; PML keeps them all.
    for a, p, n in ours:
        in_band = [m for (a2, p2, m) in band if (a2, p2) == (a, p)]
        if in_band:
            assert dist[a, n] == min(dist[a, m] for m in in_band)


def test_semihard_loss_values_differ_on_a_worked_example():
    """1-D points 0, 0.3, 0.5, 0.6, 2.0 with labels [0, 0, 1, 1, 1], alpha = 0.2, squared distances.

    Ours takes one negative for each of the 8 positive pairs; PML keeps only the triplets
    inside the margin band and averages their non-zero losses, so the values differ.
    """
    x = torch.tensor([[0.0], [0.3], [0.5], [0.6], [2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])
    ours = batch_semihard_triplet_loss(x, labels, 0.2)
    distance = PML_DISTANCE["squared_euclidean"]()
    triplets = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=distance)(x, labels)
    theirs = losses.TripletMarginLoss(margin=0.2, distance=distance)(x, labels, triplets)
    # (anchor, positive): d(a,p) -> chosen negative's d(a,n) -> loss
    # (0,1): 0.09 -> 0.25 (closest farther)       -> 0.04
    # (1,0): 0.09 -> 2.89 (0.09 is a tie, not farther) -> 0
    # (2,3): 0.01 -> 0.04 -> 0.17        (3,2): 0.01 -> 0.09 -> 0.12
    # (2,4): 2.25 -> none farther, farthest 0.25 -> 2.2
    # (3,4): 1.96 -> none farther, farthest 0.36 -> 1.8
    # (4,2): 2.25 -> 2.89 -> 0           (4,3): 1.96 -> 2.89 -> 0
    by_hand = (0.04 + 0 + 0.17 + 0.12 + 2.2 + 0 + 1.8 + 0) / 8
    assert torch.allclose(ours, torch.tensor(by_hand, dtype=torch.float64), atol=1e-12)
    assert not torch.allclose(ours, theirs)
