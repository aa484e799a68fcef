"""Recognition with a trained embedding: enrol, verify, identify, choose the threshold. A pair is accepted when its
squared distance d <= threshold; false accepts are accepted pairs of two people, false rejects rejected pairs of one."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from course_utils._validate import (check_distances, check_embeddings, check_labels, check_nonnegative, check_tensor,
                                    check_whole_number)
from course_utils.data.batches import keyed_generator
from course_utils.evaluation.retrieval import rank_gallery

UNKNOWN = "unknown"


class Gallery:
    """Enrolled names and their unit-length encodings (all-zero stays 0), (people, D) float32, one row per name."""

    def __init__(self):
        self.names: list[str] = []
        self.encodings = torch.zeros(0, 0)

    def __len__(self) -> int:
        return len(self.names)

    def enrol_embeddings(self, name: str, embedding: torch.Tensor) -> None:
        """Store a person's (D,) encoding, normalised to length 1, under a new name."""
        if not isinstance(name, str) or not name or name == UNKNOWN or name in self.names:
            raise ValueError(f"cannot enrol {name!r}: a name is a non-empty string, not {UNKNOWN!r}, not enrolled yet.")
        encoding = F.normalize(self._check(embedding).float(), dim=0, eps=torch.finfo(torch.float32).eps)  # 0 stays 0
        self.encodings = torch.cat([self.encodings, encoding[None]]) if self.names else encoding[None]
        self.names.append(name)

    def verify_embedding(self, embedding: torch.Tensor, claimed_name: str, threshold: float) -> tuple[float, bool]:
        """(distance, accepted): is this (D,) encoding the person it claims to be? Accepted when d <= threshold."""
        threshold = _check_threshold(threshold)
        distances = self._distances(embedding)
        if claimed_name not in self.names:
            raise ValueError(f"{claimed_name!r} is not enrolled (enrolled: {', '.join(self.names[:5])}"
                             f"{' ...' if len(self) > 5 else ''}); enrol them first with gallery.enrol_embeddings.")
        distance = float(distances[self.names.index(claimed_name)])
        return distance, distance <= threshold

    def identify_embedding(self, embedding: torch.Tensor, top_k: int = 1, threshold: float | None = None):
        """(name, matches) of this (D,) encoding: matches are the (name, distance) of the top_k nearest people,
        nearest first, and name the nearest's, or "unknown" when it lies beyond a given threshold (open set)."""
        check_whole_number(top_k, "top_k")
        threshold = None if threshold is None else _check_threshold(threshold)
        distances = self._distances(embedding)
        order = torch.sort(distances, stable=True).indices[:top_k]  # ties: enrolment order
        matches = [(self.names[i], float(distances[i])) for i in order.tolist()]
        beyond = threshold is not None and matches[0][1] > threshold
        return (UNKNOWN if beyond else matches[0][0]), matches

    def _distances(self, embedding: torch.Tensor) -> torch.Tensor:
        """(people,) float64 squared distances from one (D,) encoding to every stored one."""
        if not self.names:
            raise ValueError("the gallery is empty; enrol someone first with gallery.enrol_embeddings(name, encoding).")
        # Difference first, then square, in float64: no cancellation as in ||a||^2 + ||b||^2 - 2ab.
        return ((self.encodings.double() - self._check(embedding).double()) ** 2).sum(dim=1)

    def _check(self, embedding) -> torch.Tensor:
        """One finite (D,) float encoding of the gallery's length, detached, on the CPU."""
        if check_tensor(embedding, "embedding").dim() != 1:
            raise ValueError(f"embedding must be one encoding of shape (D,), got shape {tuple(embedding.shape)}.")
        check_embeddings(embedding[None], "embedding")
        if self.names and len(embedding) != self.encodings.shape[1]:
            raise ValueError(f"embedding has length {len(embedding)} but the gallery holds encodings of length "
                             f"{self.encodings.shape[1]}; encode everyone with the same network.")
        return embedding.detach().cpu()


def _check_threshold(threshold) -> float:  # + 0.0 shows -0.0 as 0.0
    return check_nonnegative(threshold, "threshold", "It is a squared distance: accepted when d <= threshold.") + 0.0


def _sorted(distances, name: str) -> torch.Tensor:
    hint = " same_and_different_distances(embeddings, labels) returns both."
    return check_distances(distances, name, hint=hint).detach().cpu().sort().values


class RocCurve(NamedTuple):
    """(T,) increasing thresholds (the first accepts nothing, then each distinct distance), and (T,) float64
    fractions of the different-person and same-person pairs with d <= threshold."""

    thresholds: torch.Tensor
    false_accept_rate: torch.Tensor
    true_accept_rate: torch.Tensor


def roc_curve(same_distances: torch.Tensor, different_distances: torch.Tensor) -> RocCurve:
    """The ROC curve, from (0, 0) to (1, 1), of same-person (S,) and different-person (N,) pair distances."""
    same, different = _sorted(same_distances, "same_distances"), _sorted(different_distances, "different_distances")
    dtype = torch.promote_types(same.dtype, different.dtype)
    same, different = same.to(dtype), different.to(dtype)
    distinct = torch.cat([same, different]).unique()
    # The largest float below the smallest distance accepts no pair: the curve starts at (0, 0).
    thresholds = torch.cat([torch.nextafter(distinct[:1], torch.tensor([-float("inf")], dtype=dtype)), distinct])
    far, tar = (torch.searchsorted(d, thresholds, right=True).double() / len(d) for d in (different, same))
    return RocCurve(thresholds, far, tar)


class EqualErrorRate(NamedTuple):
    rate: float
    threshold: float


def equal_error_rate(same_distances: torch.Tensor, different_distances: torch.Tensor) -> EqualErrorRate:
    """The mean of the false-accept and false-reject rates at the ROC threshold where they differ least (the
    smallest such threshold on ties), and that threshold."""
    curve = roc_curve(same_distances, different_distances)
    false_reject_rate = 1 - curve.true_accept_rate
    best = int((curve.false_accept_rate - false_reject_rate).abs().argmin())
    return EqualErrorRate(float((curve.false_accept_rate[best] + false_reject_rate[best]) / 2),
                          float(curve.thresholds[best]))


class OperatingPoint(NamedTuple):
    threshold: float
    true_accept_rate: float
    false_accept_rate: float


def threshold_at_far(same_distances: torch.Tensor, different_distances: torch.Tensor, far: float) -> OperatingPoint:
    """The largest threshold whose false-accept rate is at most far (in [0, 1]): the best TAR at that FAR."""
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 <= far <= 1:
        raise ValueError(f"far must be a false-accept rate between 0 and 1, got {far!r}.")
    curve = roc_curve(same_distances, different_distances)
    best = int((curve.false_accept_rate <= far).nonzero().max())  # the first threshold (rate 0) always qualifies
    return OperatingPoint(*(float(x[best]) for x in (curve.thresholds, curve.true_accept_rate,
                                                     curve.false_accept_rate)))


class ThresholdSummary(NamedTuple):
    threshold: float
    false_accepts: int
    false_rejects: int
    false_accept_rate: float
    false_reject_rate: float

    @property
    def text(self) -> str:
        return (f"threshold {self.threshold:.2f}: {self.false_accepts} false accepts "
                f"({100 * self.false_accept_rate:.1f} %), {self.false_rejects} false rejects "
                f"({100 * self.false_reject_rate:.1f} %)")


def threshold_summary(same_distances: torch.Tensor, different_distances: torch.Tensor,
                      threshold: float) -> ThresholdSummary:
    """Count false accepts (different pairs with d <= threshold) and false rejects (same pairs with d > threshold)."""
    threshold = _check_threshold(threshold)
    same, different = _sorted(same_distances, "same_distances"), _sorted(different_distances, "different_distances")
    # Compare in the distances' dtype: a float32 distance shown as 0.8 is 0.800000012, above the float64 0.8.
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
    """Closed-set identification accuracy with the first n people of one seeded order enrolled, for n in sizes: each
    (Q, D) query of theirs is named after its nearest (G, D) gallery row; people without a query are distractors."""
    query_labels = check_labels(query_labels, len(check_embeddings(query_embeddings, "query_embeddings"))).cpu()
    gallery_labels = check_labels(gallery_labels, len(check_embeddings(gallery_embeddings, "gallery_embeddings"))).cpu()
    people = gallery_labels.unique()
    if not bool(torch.isin(query_labels, people).all()):
        raise ValueError("some query_labels have no row in the gallery; enrol every queried person first.")
    sizes = tuple(sizes)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(people) for n in sizes):
        raise ValueError(f"sizes must be whole numbers from 1 to {len(people)} (the gallery's people), got {sizes}.")
    order = people[torch.randperm(len(people), generator=keyed_generator(seed))]
    queried = torch.isin(order, query_labels).nonzero().flatten()
    first = int(queried[0]) if len(queried) else len(people)  # people enrolled before the first with a query
    if min(sizes) <= first:  # such a gallery asks nothing
        raise ValueError(f"with seed {seed} the first {first} people enrolled have no query (distractors); use sizes "
                         f"above {first} (got {sizes}), another seed, or more than {len(query_labels)} queries.")
    results = []
    for n in sizes:
        enrolled, asked = torch.isin(gallery_labels, order[:n]), torch.isin(query_labels, order[:n])
        nearest = rank_gallery(query_embeddings[asked], gallery_embeddings[enrolled])[1][:, 0]
        correct = gallery_labels[enrolled][nearest] == query_labels[asked]
        results.append(GallerySizeResult(n, float(correct.double().mean()), int(asked.sum())))
    return results
