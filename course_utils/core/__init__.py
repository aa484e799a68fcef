"""The triplet loss itself, what a learner reads: read the modules in this order.

1. ``distances``: the pairwise distance matrix.
2. ``mining``: which (anchor, positive, negative) triplets a batch holds, as boolean masks, and
   the strategies that choose among them.
3. ``losses``: the triplet loss over the chosen triplets (and the contrastive loss).
4. ``reference``: the same definitions as slow, obvious loops; the tests compare the two.
"""
