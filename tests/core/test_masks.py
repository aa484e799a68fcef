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
