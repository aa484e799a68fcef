"""Recognition with a trained embedding: enrol, verify, identify, and choose the threshold.

Distances are the course's squared d(A, B) = ||f(A) - f(B)||^2, the scale of the margin alpha. A pair
is accepted when its distance is <= threshold: accepted different-person pairs are false accepts,
rejected same-person pairs false rejects.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from course_utils._validate import (check_distances, check_embeddings, check_labels, check_nonnegative, check_tensor,
                                         check_whole_number)
from course_utils.data.batches import keyed_generator
from course_utils.evaluation.retrieval import rank_gallery

UNKNOWN = "unknown"


class Verification(NamedTuple):
    """distance: squared distance to the claimed person's encoding; accepted: distance <= threshold."""

    distance: float
    accepted: bool


class Match(NamedTuple):
    name: str
    distance: float


class Identification(NamedTuple):
    """name: the nearest enrolled person, or "unknown" beyond a given threshold; matches: the
    top_k nearest, nearest first (also for "unknown", to show how close it came)."""

    name: str
    matches: list[Match]


class Gallery:
    """One encoding per enrolled person, looked up by name.

    Args:
        normalize: re-normalise each stored encoding to length 1 (right for a network that normalises
            its output: the mean of several unit encodings is shorter than 1).
    """

    def __init__(self, normalize: bool = True):
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {type(normalize).__name__}.")
        self.normalize = normalize
        self.names: list[str] = []
        self._encodings: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.names)

    @property
    def encodings(self) -> torch.Tensor:
        """(people, D) float32 stored encodings, one row per name in enrolment order."""
        self._refuse_if_empty()
        return torch.stack(self._encodings)

    def enrol_embeddings(self, name: str, embeddings: torch.Tensor) -> None:
        """Store one encoding under a new name: embeddings is (D,), or (K, D) whose rows are averaged."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}.")
        if name == UNKNOWN:
            raise ValueError(f"{UNKNOWN!r} is reserved for open-set identification; choose another name.")
        if name in self.names:
            raise ValueError(f"{name!r} is already enrolled; each person has one encoding. Use another name, or "
                             "enrol several encodings at once (a (K, D) stack) to average them.")
        embeddings = _check_encodings(embeddings, "embeddings").detach().cpu()
        if self._encodings and embeddings.shape[1] != self._encodings[0].shape[0]:
            raise ValueError(f"encodings of {name!r} have length {embeddings.shape[1]}, but the gallery holds "
                             f"length {self._encodings[0].shape[0]}; enrol everyone with the same network.")
        mean = embeddings.float().mean(dim=0)
        if self.normalize:
            # eps keeps an all-zero mean finite (it stays zero) instead of dividing by 0.
            mean = F.normalize(mean, dim=0, eps=torch.finfo(mean.dtype).eps)
        self.names.append(name)
        self._encodings.append(mean)

    def verify_embedding(self, embedding: torch.Tensor, claimed_name: str, threshold: float) -> Verification:
        """Is this encoding (D,) the person it claims to be? Accept when d <= threshold."""
        threshold = _check_threshold(threshold)
        self._refuse_if_empty()
        if claimed_name not in self.names:
            shown = ", ".join(map(repr, self.names[:5])) + (f" and {len(self) - 5} more" if len(self) > 5 else "")
            raise ValueError(f"{claimed_name!r} is not enrolled; enrolled names are {shown}. "
                             "Enrol the person first with gallery.enrol_embeddings(name, encoding).")
        distance = float(self._distances(embedding)[self.names.index(claimed_name)])
        return Verification(distance, distance <= threshold)

    def identify_embedding(self, embedding: torch.Tensor, top_k: int = 1,
                           threshold: float | None = None) -> Identification:
        """Who is this encoding (D,)? The top_k nearest people (at most the gallery's size); with a
        threshold (open set) the name is "unknown" when the nearest distance exceeds it."""
        check_whole_number(top_k, "top_k")
        if threshold is not None:
            threshold = _check_threshold(threshold)
        self._refuse_if_empty()
        distances = self._distances(embedding)
        # Ties are broken by enrolment order (stable sort), the same on every machine.
        order = torch.sort(distances, stable=True).indices[:top_k]
        matches = [Match(self.names[i], float(distances[i])) for i in order.tolist()]
        beyond = threshold is not None and matches[0].distance > threshold
        return Identification(UNKNOWN if beyond else matches[0].name, matches)

    def _distances(self, embedding: torch.Tensor) -> torch.Tensor:
        """(people,) float64 squared distances from one encoding (D,) to every stored one."""
        check_tensor(embedding, "embedding")
        if embedding.dim() != 1:
            raise ValueError(f"embedding must be one encoding of shape (D,), got shape {tuple(embedding.shape)}.")
        _check_encodings(embedding, "embedding")
        stored = self.encodings
        if embedding.shape[0] != stored.shape[1]:
            raise ValueError(f"embedding has length {embedding.shape[0]} but the gallery holds encodings of length "
                             f"{stored.shape[1]}; use the network that encoded the gallery.")
        # Difference first, then square, in float64: exact for the few rows of a gallery,
        # with none of the cancellation of the ||a||^2 + ||b||^2 - 2ab shortcut.
        return ((stored.double() - embedding.detach().cpu().double()) ** 2).sum(dim=1)

    def _refuse_if_empty(self) -> None:
        if not self.names:
            raise ValueError("the gallery is empty; enrol at least one person with "
                             "gallery.enrol_embeddings(name, encoding).")


def _check_encodings(encodings, name: str) -> torch.Tensor:
    """(D,) or (K, D) finite float encodings, K, D >= 1, returned as (K, D)."""
    check_tensor(encodings, name)
    if encodings.dim() not in (1, 2) or encodings.numel() == 0:
        raise ValueError(f"{name} must have shape (D,) or (K, D) with K, D >= 1, got {tuple(encodings.shape)}.")
    return check_embeddings(encodings.reshape(-1, encodings.shape[-1]), name)


def _check_threshold(threshold) -> float:
    why = "It is a squared distance: a pair is accepted when its distance is at most the threshold."
    return check_nonnegative(threshold, "threshold", why) + 0.0  # + 0.0 shows -0.0 as 0.0


def _check_distances(distances, name: str) -> torch.Tensor:
    """The distances, checked, sorted and on the CPU."""
    hint = " same_and_different_distances(embeddings, labels) returns both."
    return check_distances(distances, name, hint=hint).detach().cpu().sort().values


class RocCurve(NamedTuple):
    """Verification by a distance threshold, at every threshold where a rate changes.

    thresholds: (T,) increasing, in the distances' dtype; the first accepts nothing, then every
        distinct distance. false_accept_rate, true_accept_rate: (T,) float64 fractions of the
        different-person and same-person pairs with distance <= threshold.
    """

    thresholds: torch.Tensor
    false_accept_rate: torch.Tensor
    true_accept_rate: torch.Tensor


def roc_curve(same_distances: torch.Tensor, different_distances: torch.Tensor) -> RocCurve:
    """The ROC curve, from (0, 0) to (1, 1), of same-person (S,) and different-person (N,) pair distances."""
    same = _check_distances(same_distances, "same_distances")
    different = _check_distances(different_distances, "different_distances")
    dtype = torch.promote_types(same.dtype, different.dtype)
    same, different = same.to(dtype), different.to(dtype)
    distinct = torch.cat([same, different]).unique()
    # The largest float below the smallest distance accepts no pair: the curve starts at (0, 0).
    accept_nothing = torch.nextafter(distinct[:1], torch.tensor([-float("inf")], dtype=dtype))
    thresholds = torch.cat([accept_nothing, distinct])

    def accepted(sorted_distances):  # fraction <= each threshold, by binary search
        return torch.searchsorted(sorted_distances, thresholds, right=True).double() / len(sorted_distances)

    return RocCurve(thresholds, accepted(different), accepted(same))


class EqualErrorRate(NamedTuple):
    rate: float
    threshold: float


def equal_error_rate(same_distances: torch.Tensor, different_distances: torch.Tensor) -> EqualErrorRate:
    """The mean of the false-accept and false-reject rates at the ROC threshold where they differ
    least (the smallest such threshold on ties), and that threshold."""
    curve = roc_curve(same_distances, different_distances)
    false_reject_rate = 1 - curve.true_accept_rate
    best = int((curve.false_accept_rate - false_reject_rate).abs().argmin())
    rate = (curve.false_accept_rate[best] + false_reject_rate[best]) / 2
    return EqualErrorRate(float(rate), float(curve.thresholds[best]))


class OperatingPoint(NamedTuple):
    threshold: float
    true_accept_rate: float
    false_accept_rate: float


def threshold_at_far(same_distances: torch.Tensor, different_distances: torch.Tensor, far: float) -> OperatingPoint:
    """The largest threshold whose false-accept rate is at most ``far`` (in [0, 1]): the best
    true-accept rate within that budget ("TAR at FAR")."""
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 <= far <= 1:
        raise ValueError(f"far must be a false-accept rate between 0 and 1, got {far!r}.")
    curve = roc_curve(same_distances, different_distances)
    # The first threshold accepts nothing (rate 0), so at least one threshold qualifies.
    best = int((curve.false_accept_rate <= far).nonzero().max())
    return OperatingPoint(float(curve.thresholds[best]), float(curve.true_accept_rate[best]),
                          float(curve.false_accept_rate[best]))


class ThresholdSummary(NamedTuple):
    """Errors of verification at one threshold on held-out pairs."""

    threshold: float
    false_accepts: int
    false_rejects: int
    false_accept_rate: float
    false_reject_rate: float

    @property
    def text(self) -> str:
        """One line, for example 'threshold 0.80: 12 false accepts (1.2 %), 30 false rejects (3.0 %)'."""
        return (f"threshold {self.threshold:.2f}: {self.false_accepts} false accepts "
                f"({100 * self.false_accept_rate:.1f} %), {self.false_rejects} false rejects "
                f"({100 * self.false_reject_rate:.1f} %)")


def threshold_summary(same_distances: torch.Tensor, different_distances: torch.Tensor,
                      threshold: float) -> ThresholdSummary:
    """Count false accepts (different pairs with d <= threshold) and false rejects (same pairs with d > threshold)."""
    threshold = _check_threshold(threshold)
    same = _check_distances(same_distances, "same_distances")
    different = _check_distances(different_distances, "different_distances")
    # Compare in the distances' own dtype: a float32 distance printed as 0.8 is 0.800000012 in
    # float64 and would be rejected by the Python threshold 0.8; rounded to float32 they agree.
    false_accepts = int((different <= torch.tensor(threshold, dtype=different.dtype)).sum())
    false_rejects = int((same > torch.tensor(threshold, dtype=same.dtype)).sum())
    return ThresholdSummary(threshold, false_accepts, false_rejects, false_accepts / len(different),
                            false_rejects / len(same))


class GallerySizeResult(NamedTuple):
    size: int
    accuracy: float
    num_queries: int


def accuracy_vs_gallery_size(query_embeddings: torch.Tensor, query_labels: torch.Tensor,
                             gallery_embeddings: torch.Tensor, gallery_labels: torch.Tensor,
                             sizes=(10, 100, 500, 1000), seed: int = 0) -> list[GallerySizeResult]:
    """Closed-set identification accuracy with n enrolled people, for each n in sizes.

    The first n people of one seeded random order of the gallery's people are enrolled (nested
    galleries), and each (Q, D) query of those people is named after its nearest (G, D) gallery row.
    Gallery people without a query are distractors: enrolled, never asked for. Each size must be
    large enough that a queried person is enrolled.
    """
    check_embeddings(query_embeddings, "query_embeddings")
    check_embeddings(gallery_embeddings, "gallery_embeddings")
    query_labels = check_labels(query_labels, query_embeddings.shape[0]).cpu()
    gallery_labels = check_labels(gallery_labels, gallery_embeddings.shape[0]).cpu()
    people = gallery_labels.unique()
    if not bool(torch.isin(query_labels, people).all()):
        raise ValueError("some query_labels have no row in the gallery; enrol every queried person first.")
    sizes = tuple(sizes)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(people) for n in sizes):
        raise ValueError(f"sizes must be whole numbers from 1 to {len(people)} (the gallery's people), got {sizes}.")
    check_whole_number(seed, "seed", minimum=0)
    order = people[torch.randperm(len(people), generator=keyed_generator(seed))]
    queried = torch.isin(order, query_labels).nonzero().flatten()
    if len(queried) == 0:
        raise ValueError("query_embeddings is empty; give at least one picture to identify.")
    smallest = int(queried[0]) + 1
    if min(sizes) < smallest:
        raise ValueError(
            f"with seed {seed} the first {smallest - 1} people enrolled have no query (distractors), so a "
            f"gallery of fewer than {smallest} people asks nothing and has no accuracy; got sizes {sizes}. "
            f"Use sizes of at least {smallest}, or another seed.")
    results = []
    for n in sizes:
        enrolled = torch.isin(gallery_labels, order[:n])
        asked = torch.isin(query_labels, order[:n])
        nearest = rank_gallery(query_embeddings[asked], gallery_embeddings[enrolled]).indices[:, 0]
        correct = gallery_labels[enrolled][nearest] == query_labels[asked]
        results.append(GallerySizeResult(n, float(correct.double().mean()), int(asked.sum())))
    return results
