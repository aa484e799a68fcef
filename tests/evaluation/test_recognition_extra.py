"""Ranking a gallery and identification accuracy as the gallery grows."""
import pytest
import torch

from course_utils.core import reference
from course_utils.data.batches import keyed_generator
from course_utils.evaluation.recognition import GallerySizeResult, accuracy_vs_gallery_size
from course_utils.evaluation.retrieval import rank_gallery


def _points(seed, n, d=5):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_rank_gallery_matches_sorting_the_reference_distances():
    query, gallery = _points(0, 7), _points(1, 12)
    distances, indices = rank_gallery(query, gallery, top_k=4)
    dist = reference.pairwise_distances(query, gallery)
    for row in range(7):
        expected = sorted(range(12), key=lambda j: dist[row, j].item())[:4]
        assert indices[row].tolist() == expected
        assert torch.allclose(distances[row], dist[row, expected], atol=1e-12)
    assert rank_gallery(query, gallery, top_k=20)[1].shape == (7, 12), "top_k is capped at the gallery size"


def test_rank_gallery_breaks_ties_by_row_number():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    distances, indices = rank_gallery(torch.zeros(1, 2), gallery, top_k=4)
    assert indices.tolist() == [[0, 1, 2, 3]]
    assert torch.equal(distances, torch.ones(1, 4, dtype=torch.float64))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"top_k": 0}, ValueError, "top_k"), ({"top_k": 2.0}, TypeError, "top_k"),
    ({"gallery_embeddings": _points(1, 12, 4)}, ValueError, "columns"),
    ({"query_embeddings": _points(0, 3).int()}, TypeError, "floating"),
])
def test_rank_gallery_refuses_bad_input(kwargs, error, match):
    arguments = {"query_embeddings": _points(0, 3), "gallery_embeddings": _points(1, 12), "top_k": 1} | kwargs
    with pytest.raises(error, match=match):
        rank_gallery(**arguments)


def _by_loops(query, query_labels, gallery, gallery_labels, enrolled_people):
    """Accuracy of nearest-row identification restricted to the enrolled people, one query at a time."""
    rows = [j for j in range(len(gallery)) if gallery_labels[j].item() in enrolled_people]
    correct = total = 0
    for q in range(len(query)):
        if query_labels[q].item() not in enrolled_people:
            continue
        nearest = min(rows, key=lambda j: (reference.distance(query[q], gallery[j]).item(), j))
        correct += int(gallery_labels[nearest] == query_labels[q])
        total += 1
    return correct / total, total


def test_accuracy_vs_gallery_size_matches_loops_and_galleries_are_nested():
    g = torch.Generator().manual_seed(3)
    people = 30
    centres = torch.randn(people, 4, generator=g)
    gallery_labels = torch.arange(people)
    gallery = centres + 0.3 * torch.randn(people, 4, generator=g)
    query_labels = torch.arange(people).repeat(3)
    query = centres[query_labels] + 0.3 * torch.randn(len(query_labels), 4, generator=g)
    results = accuracy_vs_gallery_size(query, query_labels, gallery, gallery_labels, sizes=(3, 10, 30), seed=5)
    assert [r.size for r in results] == [3, 10, 30]
    assert results[-1].num_queries == 90
    order = gallery_labels.unique()[torch.randperm(people, generator=keyed_generator(5))]
    for result in results:
        accuracy, count = _by_loops(query, query_labels, gallery, gallery_labels, set(order[: result.size].tolist()))
        assert result == GallerySizeResult(result.size, pytest.approx(accuracy), count)


def test_accuracy_vs_gallery_size_is_deterministic_and_perfect_on_copies():
    features = _points(4, 20)
    labels = torch.arange(20)
    first = accuracy_vs_gallery_size(features, labels, features, labels, sizes=(5, 20), seed=1)
    assert first == accuracy_vs_gallery_size(features, labels, features, labels, sizes=(5, 20), seed=1)
    assert [r.accuracy for r in first] == [1.0, 1.0]


def test_accuracy_vs_gallery_size_with_distractors_names_the_smallest_size_with_a_query():
    """Gallery people without a query still count as enrolled; a size holding no query is refused."""
    gallery, gallery_labels = _points(6, 20), torch.arange(20)
    order = gallery_labels[torch.randperm(20, generator=keyed_generator(0))]
    query_labels = order[4:]  # the first 4 people of the seeded order are distractors
    query = gallery[query_labels] + 0.01
    results = accuracy_vs_gallery_size(query, query_labels, gallery, gallery_labels, sizes=(5, 20), seed=0)
    for result in results:
        accuracy, count = _by_loops(query, query_labels, gallery, gallery_labels, set(order[: result.size].tolist()))
        assert result == GallerySizeResult(result.size, pytest.approx(accuracy), count)
    assert [r.num_queries for r in results] == [1, 16]
    with pytest.raises(ValueError, match="the first 4 people enrolled have no query.*use sizes above 4"):
        accuracy_vs_gallery_size(query, query_labels, gallery, gallery_labels, sizes=(4, 20), seed=0)
    with pytest.raises(ValueError, match="more than 0 queries"):
        accuracy_vs_gallery_size(query[:0], query_labels[:0], gallery, gallery_labels, sizes=(5,), seed=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": (0,)}, "sizes"), ({"sizes": (21,)}, "sizes"), ({"sizes": ()}, "sizes"),
    ({"seed": -1}, "seed"), ({"query_labels": torch.arange(20) + 100}, "no row in the gallery"),
])
def test_accuracy_vs_gallery_size_refuses_bad_input(kwargs, match):
    features = _points(4, 20)
    arguments = {"query_embeddings": features, "query_labels": torch.arange(20), "gallery_embeddings": features,
                 "gallery_labels": torch.arange(20), "sizes": (5,), "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        accuracy_vs_gallery_size(**arguments)
