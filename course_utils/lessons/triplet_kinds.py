"""Which triplets a batch holds: none at all (random batches, notebook 04), or easy, semi-hard and hard ones (05)."""
from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import NamedTuple

import torch

from course_utils._validate import check_alpha, check_distances, check_labels, check_tensor, check_whole_number

EASY, SEMIHARD, HARD = 0, 1, 2
KIND_NAMES = ("easy", "semi-hard", "hard")


class BatchOdds(NamedTuple):
    """A random batch: the chance of no same-person pair, and the expected ordered (A, P) pairs (A != P),
    pictures with a positive in the batch, and valid ordered triplets (A, P, N)."""

    no_positive_probability: float
    anchor_positive_pairs: float
    anchors: float
    triplets: float


def random_batch_odds(n_identities: int, images_per_identity: int, batch_size: int) -> BatchOdds:
    """Exact odds for 2 <= B <= N pictures drawn without replacement from N = n_identities x m pictures."""
    check_whole_number(n_identities, "n_identities", 2)
    m = check_whole_number(images_per_identity, "images_per_identity", 1)
    n = n_identities * m
    b = check_whole_number(batch_size, "batch_size", 2)
    if b > n:
        raise ValueError(f"batch_size={b} is larger than the set ({n} pictures); choose batch_size <= {n}.")
    # Exact fractions (C(10000, 64) has 180 digits). No pair: B distinct persons, one of m pictures each.
    no_positive = Fraction(comb(n_identities, b) * m**b, comb(n, b))
    same_person = Fraction(m - 1, n - 1)  # two pictures of the batch show the same person
    pairs = b * (b - 1) * same_person  # ordered (A, P), A != P
    # A picture is no anchor when its B - 1 batch-mates, drawn from the N - 1 others, are all other persons'.
    anchors = b * (1 - Fraction(comb(n - m, b - 1), comb(n - 1, b - 1)))
    # Three distinct pictures: P shares A's person, then N is one of the N - m others among N - 2 left.
    triplets = b * (b - 1) * (b - 2) * same_person * Fraction(n - m, n - 2)
    return BatchOdds(float(no_positive), float(pairs), float(anchors), float(triplets))


def simulate_random_batches(labels: torch.Tensor, batch_size: int, trials: int, seed: int = 0) -> BatchOdds:
    """`random_batch_odds`' four numbers measured on `trials` batches drawn at random from (N,) labels."""
    labels = check_labels(check_tensor(labels, "labels"), labels.shape[0] if labels.dim() else 0).cpu()
    for value, name, low in ((batch_size, "batch_size", 2), (trials, "trials", 1), (seed, "seed", 0)):
        check_whole_number(value, name, low)
    b = batch_size
    if b > len(labels):
        raise ValueError(f"batch_size={b} is larger than labels ({len(labels)} pictures).")
    generator = torch.Generator().manual_seed(seed)
    # The first B of a random permutation is a uniform draw without replacement.
    batches = torch.rand(trials, len(labels), generator=generator).argsort(dim=1)[:, :b]
    _, identity = torch.unique(labels, return_inverse=True)
    per_person = torch.zeros(trials, int(identity.max()) + 1, dtype=torch.long)
    per_person.scatter_add_(1, identity[batches], torch.ones_like(batches))
    pairs = (per_person * (per_person - 1)).sum(dim=1)  # ordered (A, P), A != P
    anchors = (per_person * (per_person >= 2)).sum(dim=1)
    triplets = (per_person * (per_person - 1) * (b - per_person)).sum(dim=1)
    return BatchOdds(float((pairs == 0).double().mean()), float(pairs.double().mean()),
                     float(anchors.double().mean()), float(triplets.double().mean()))


class KindCounts(NamedTuple):
    """How many triplets of each kind at one margin alpha."""

    alpha: float
    easy: int
    semihard: int
    hard: int

    @property
    def total(self) -> int:
        return self.easy + self.semihard + self.hard

    @property
    def text(self) -> str:
        """For example "easy: 123, semi-hard: 45, hard: 67"."""
        return f"easy: {self.easy}, semi-hard: {self.semihard}, hard: {self.hard}"


def classify_triplets(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> torch.Tensor:
    """The (T,) kinds (KIND_NAMES[kind]) of triplets from their (T,) distances.

    Easy: d(A,P) + alpha <= d(A,N), loss 0. Semi-hard: d(A,P) < d(A,N) < d(A,P) + alpha. Hard: d(A,N) <= d(A,P).
    """
    d_ap, d_an = check_distances(d_ap, "d_ap", allow_empty=True), check_distances(d_an, "d_an", allow_empty=True)
    if d_ap.shape != d_an.shape:
        raise ValueError(f"d_ap and d_an need one entry per triplet each, got {tuple(d_ap.shape)} and "
                         f"{tuple(d_an.shape)}.")
    alpha = check_alpha(alpha)
    kinds = torch.full(d_ap.shape, SEMIHARD, dtype=torch.long, device=d_ap.device)
    kinds[d_an <= d_ap] = HARD
    # Easy last: with alpha = 0 a tie d(A,N) = d(A,P) has loss 0, so it is easy, not hard.
    kinds[d_an >= d_ap + alpha] = EASY
    return kinds


def triplet_kind_counts(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> KindCounts:
    """Count easy, semi-hard and hard triplets of (T,) distances d_ap, d_an at margin alpha."""
    kinds = classify_triplets(d_ap, d_an, alpha)
    easy, semihard, hard = torch.bincount(kinds, minlength=3).tolist()
    return KindCounts(float(alpha), easy, semihard, hard)
