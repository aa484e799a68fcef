"""Retrieval metrics against pytorch-metric-learning and a slow loop; one-shot identification."""
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from torch import nn

from course_utils.data import one_shot_split, pixel_one_shot_accuracy
from course_utils.evaluation import retrieval
from course_utils.evaluation.retrieval import (
    embed,
    one_shot_identification,
    retrieval_metrics,
    same_and_different_distances,
)


def clustered(seed, n=120, classes=15, dim=6, spread=1.0):
    """Continuous points (no distance ties) around one centre per class; some classes have 1 picture."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    labels[:3] = torch.tensor([100, 101, 102])  # identities with a single picture: not queries
    centres = torch.randn(200, dim, generator=g) * 2
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def pml_metrics(embeddings, labels, distance):
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        device=torch.device("cpu"),
        knn_func=CustomKNN(distance),
    )
    result = calculator.get_accuracy(embeddings, labels)
    return {
        "precision_at_1": result["precision_at_1"],
        "r_precision": result["r_precision"],
        "map_at_r": result["mean_average_precision_at_r"],
    }


def slow_metrics(embeddings, labels):
    """Musgrave et al.'s definitions, one query at a time, in float64."""
    x = embeddings.double()
    scores = {"precision_at_1": [], "r_precision": [], "map_at_r": []}
    for q in range(len(x)):
        others = [i for i in range(len(x)) if i != q]
        r = sum(int(labels[i] == labels[q]) for i in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda i: float(((x[i] - x[q]) ** 2).sum()))[:r]
        relevant = [int(labels[i] == labels[q]) for i in ranked]
        precisions = [sum(relevant[: i + 1]) / (i + 1) for i in range(r)]
        scores["precision_at_1"].append(relevant[0])
        scores["r_precision"].append(sum(relevant) / r)
        scores["map_at_r"].append(sum(p * rel for p, rel in zip(precisions, relevant)) / r)
    return {name: sum(values) / len(values) for name, values in scores.items()}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spread", [0.3, 1.0, 3.0])
def test_metrics_match_pytorch_metric_learning(seed, spread, monkeypatch):
    monkeypatch.setattr(retrieval, "METRICS_CHUNK", 17)  # several chunks of queries
    embeddings, labels = clustered(seed, spread=spread)
    ours = retrieval_metrics(embeddings, labels)
    theirs = pml_metrics(embeddings, labels, LpDistance(normalize_embeddings=False))
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_cosine_metric_matches_pytorch_metric_learning():
    embeddings, labels = clustered(7)
    ours = retrieval_metrics(embeddings, labels, metric="cosine")
    theirs = pml_metrics(embeddings, labels, CosineSimilarity())
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_slow_loop(seed):
    embeddings, labels = clustered(seed, n=40, classes=6)
    assert retrieval_metrics(embeddings, labels) == pytest.approx(slow_metrics(embeddings, labels), abs=1e-12)


def test_perfect_and_hand_computed_rankings():
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    assert retrieval_metrics(separated, labels) == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0}
    # Pictures of the same person are far apart: each query's nearest neighbour is wrong.
    interleaved = torch.tensor([[0.0], [2.0], [1.0], [3.1]])
    metrics = retrieval_metrics(interleaved, labels)
    assert metrics == {"precision_at_1": 0.0, "r_precision": 0.0, "map_at_r": 0.0}


def test_map_at_r_rewards_the_order_within_the_first_r():
    # Identity 0 at 0.0, 1.2 and 3.5 (R = 2 for each), a lone identity 1 at 2.0 (not a query).
    labels = torch.tensor([0, 0, 0, 1])
    points = torch.tensor([[0.0], [1.2], [3.5], [2.0]])
    # Query 0 ranks (same, other): P@1 = 1, R-Precision 1/2, MAP@R = (1/1) / 2.
    # Query 1 ranks (other, same): P@1 = 0, R-Precision 1/2, MAP@R = (1/2) / 2.
    # Query 2 ranks (other, same): the same as query 1.
    metrics = retrieval_metrics(points, labels)
    assert metrics == pytest.approx({"precision_at_1": 1 / 3, "r_precision": 1 / 2, "map_at_r": 1 / 3}, abs=1e-12)


def test_metrics_refuse_sets_without_repeated_identities():
    with pytest.raises(ValueError, match="no identity has two or more pictures"):
        retrieval_metrics(torch.randn(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match="one label per embedding"):
        retrieval_metrics(torch.randn(4, 2), torch.zeros(3, dtype=torch.long))


def test_embed_matches_a_single_forward_and_restores_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.BatchNorm1d(5))
    images = torch.rand(11, 3, 2, 2)
    model.train()
    encodings = embed(model, images, batch_size=4)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(encodings, expected)
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, images, batch_size=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) with N >= 1"):
        embed(model, images.flatten(1))
    with pytest.raises(ValueError, match="N >= 1"):
        embed(model, images[:0])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        embed(lambda x: x, images)


def test_one_shot_matches_a_loop_and_the_pixel_baseline():
    embeddings, labels = clustered(3, n=60, classes=8, spread=1.5)
    result = one_shot_identification(embeddings, labels, seed=5)
    identities = labels.unique()
    assert result.num_identities == len(identities)
    assert result.num_queries == len(labels) - len(identities)
    enrolled, queries = one_shot_split(labels, seed=5)
    correct = 0
    for i in queries.tolist():
        nearest = min(enrolled.tolist(), key=lambda j: float(((embeddings[i] - embeddings[j]) ** 2).sum()))
        correct += int(labels[nearest] == labels[i])
    assert result.accuracy == pytest.approx(correct / result.num_queries)
    pictures = embeddings.reshape(60, 1, 2, 3)
    assert result.accuracy == pixel_one_shot_accuracy(pictures, labels, seed=5)


def test_one_shot_is_perfect_on_separated_points_and_refuses_singletons():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    points = labels.double().unsqueeze(1) * 10 + torch.tensor([0.0, 0.1] * 3).unsqueeze(1)
    assert one_shot_identification(points, labels).accuracy == 1.0
    with pytest.raises(ValueError, match="an identity with 2 or more pictures"):
        one_shot_identification(torch.randn(3, 2), torch.arange(3))


def test_same_and_different_distances_count_each_pair_once():
    embeddings, labels = clustered(1, n=30, classes=5)
    same, different = same_and_different_distances(embeddings, labels)
    counts = torch.bincount(labels)
    assert len(same) == int((counts * (counts - 1) // 2).sum())
    assert len(same) + len(different) == 30 * 29 // 2
    i, j = 0, next(j for j in range(1, 30) if labels[j] != labels[0])
    assert torch.isclose(different, ((embeddings[i] - embeddings[j]) ** 2).sum()).any()
