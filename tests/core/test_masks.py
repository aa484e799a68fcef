"""The vectorised masks of course_utils.core.mining equal the loops of course_utils.core.reference."""
import itertools

import pytest
import torch
from batches import KINDS, make_batch

from course_utils.core import mining, reference

SPECIAL_LABELS = {
    "one person": torch.zeros(5, dtype=torch.long),
    "everyone alone": torch.arange(5),
    "one picture": torch.tensor([7]),
    "a pair and strangers": torch.tensor([3, 3, 1, 2]),
    "negative labels": torch.tensor([-1, -1, 4, 4, 0]),
}


def _all_labels():
    cases = [(name, labels) for name, labels in SPECIAL_LABELS.items()]
    cases += [(f"{kind} {seed}", make_batch(seed, kind)[1]) for seed, kind in itertools.product(range(5), KINDS)]
    return cases


@pytest.mark.parametrize("name, labels", _all_labels(), ids=[name for name, _ in _all_labels()])
def test_masks_equal_the_loops(name, labels):
    assert torch.equal(mining.anchor_positive_mask(labels), reference.anchor_positive_mask(labels))
    assert torch.equal(mining.anchor_negative_mask(labels), reference.anchor_negative_mask(labels))
    valid = mining.valid_triplet_mask(labels)
    assert torch.equal(valid, reference.valid_triplet_mask(labels))
    assert valid.dtype == torch.bool and valid.shape == (len(labels),) * 3
    assert int(valid.sum()) == len(reference.all_triplets(labels))


def test_batches_without_triplets_have_empty_masks():
    for labels in (SPECIAL_LABELS["one person"], SPECIAL_LABELS["everyone alone"], SPECIAL_LABELS["one picture"]):
        assert not mining.valid_triplet_mask(labels).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_rows_equals_sorting_each_row_in_python(dtype, descending):
    """One flat key sort (float32) or two stable row sorts (float64) order each row like Python's
    sorted() on (value, tie), with ties, duplicates and a negative zero in the rows."""
    g = torch.Generator().manual_seed(0)
    for rows, n in [(3, 5), (7, 7), (200, 200)]:  # 200 x 200 = 40,000 keys: torch radix-sorts them
        values = torch.randint(0, 4, (rows, n), generator=g).to(dtype) / 2
        values[0, 0] = -0.0
        first_at_ties = torch.rand(rows, n, generator=g) < 0.5
        order = mining.sort_rows(values, first_at_ties, descending)
        sign = -1 if descending else 1
        for a in range(rows):
            expected = sorted(range(n), key=lambda j: (sign * values[a, j].item(), not first_at_ties[a, j]))
            got = order[a].tolist()
            assert sorted(got) == list(range(n))  # a permutation of the columns
            assert [(values[a, j].item(), bool(first_at_ties[a, j])) for j in got] == \
                [(values[a, j].item(), bool(first_at_ties[a, j])) for j in expected]
