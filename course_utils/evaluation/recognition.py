"""Recognition with a trained embedding: enrol, verify, identify, and choose the threshold.

After training, one picture of a new person is enough (F9): a ``Gallery`` keeps one
encoding per name. Verification ("is this the person it claims to be?") accepts when the
distance to the claimed person is at most a threshold; identification ("who is this?")
names the nearest enrolled people, or "unknown" beyond the threshold (open set).
Distances are the course's d(A, B) = ||f(A) - f(B)||^2, the scale of the margin alpha.

The threshold is chosen on held-out pairs: a pair is accepted when its distance is
<= threshold; accepted different-person pairs are false accepts, rejected same-person
pairs false rejects. The figures of these numbers are in ``course_utils.lessons.evaluation_plots``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.core._validate import check_embeddings, check_labels, check_tensor, check_whole_number
from course_utils.data.batches import keyed_generator
from course_utils.evaluation.retrieval import embed, rank_gallery

UNKNOWN = "unknown"


class Verification(NamedTuple):
    """distance: squared distance to the claimed person's encoding; accepted: distance <= threshold."""

    distance: float
    accepted: bool


class Match(NamedTuple):
    """One enrolled person and their distance to the query picture."""

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
        normalize: re-normalise each stored encoding to length 1. Use True for a network
            that normalises its output (``EmbeddingNet`` does by default): the mean of
            several unit encodings is shorter than 1. ``enrol`` follows the model's own
            ``normalize`` attribute when it has one.

    Example:
        gallery = Gallery()
        gallery.enrol(model, "ada", picture)          # picture: (C, H, W)
        gallery.verify(model, other_picture, "ada", threshold=0.8)
    """

    def __init__(self, normalize: bool = True):
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {type(normalize).__name__}.")
        self.normalize = normalize
        self.names: list[str] = []
        self._encodings: list[torch.Tensor] = []
        self.picture_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def encodings(self) -> torch.Tensor:
        """(people, D) float32 stored encodings, one row per name in enrolment order."""
        self._refuse_if_empty()
        return torch.stack(self._encodings)

    def enrol(self, model: nn.Module, name: str, pictures: torch.Tensor) -> None:
        """Encode one picture (or several) of a person and store one encoding under their name.

        Args:
            model: the embedding network, mapping (B, C, H, W) to (B, D).
            name: the person's name; must not be enrolled already.
            pictures: (C, H, W) one picture, or (K, C, H, W) several whose encodings are
                averaged (and re-normalised when the model normalises its output).
        """
        self._check_new_name(name)
        check_tensor(pictures, "pictures")
        if pictures.dim() == 3:
            pictures = pictures.unsqueeze(0)
        if pictures.dim() != 4 or pictures.shape[0] == 0:
            raise ValueError(
                f"pictures must be one picture (C, H, W) or a stack (K, C, H, W) with K >= 1, "
                f"got shape {tuple(pictures.shape)}."
            )
        self._check_picture_shape(pictures.shape[1:], "pictures")
        encodings = embed(model, pictures).cpu()
        self._store(name, encodings, normalize=bool(getattr(model, "normalize", self.normalize)))
        self.picture_shape = tuple(pictures.shape[1:])

    def enrol_embeddings(self, name: str, embeddings: torch.Tensor) -> None:
        """Store an encoding computed elsewhere (the mean of the rows when there are several).

        Args:
            name: the person's name; must not be enrolled already.
            embeddings: (D,) one encoding or (K, D) several, float.
        """
        self._check_new_name(name)
        embeddings = _check_encodings(embeddings, "embeddings")
        self._store(name, embeddings.detach().cpu(), normalize=self.normalize)

    def verify(self, model: nn.Module, picture: torch.Tensor, claimed_name: str, threshold: float) -> Verification:
        """Is this picture the person it claims to be? Accept when d <= threshold.

        Args:
            model: the network that encoded the gallery.
            picture: (C, H, W) one picture, the same shape as the enrolled pictures.
            claimed_name: an enrolled name.
            threshold: largest squared distance accepted as the same person.
        Returns:
            Verification(distance, accepted).
        """
        return self.verify_embedding(self._encode(model, picture), claimed_name, threshold)

    def verify_embedding(self, embedding: torch.Tensor, claimed_name: str, threshold: float) -> Verification:
        """``verify`` for an encoding (D,) that is already computed."""
        threshold = _check_threshold(threshold)
        self._refuse_if_empty()
        if claimed_name not in self.names:
            raise ValueError(
                f"{claimed_name!r} is not enrolled; enrolled names are {self._some_names()}. "
                "Enrol the person first with gallery.enrol(model, name, picture)."
            )
        distances = self._distances(embedding)
        distance = float(distances[self.names.index(claimed_name)])
        return Verification(distance, distance <= threshold)

    def identify(
        self, model: nn.Module, picture: torch.Tensor, top_k: int = 1, threshold: float | None = None
    ) -> Identification:
        """Who is this? The nearest enrolled people, or "unknown" beyond the threshold.

        Args:
            model: the network that encoded the gallery.
            picture: (C, H, W) one picture, the same shape as the enrolled pictures.
            top_k: how many nearest people to list (at most the gallery's size).
            threshold: None for closed-set identification (always name the nearest);
                a number for open-set: "unknown" when the nearest distance exceeds it.
        Returns:
            Identification(name, matches).
        """
        return self.identify_embedding(self._encode(model, picture), top_k, threshold)

    def identify_embedding(
        self, embedding: torch.Tensor, top_k: int = 1, threshold: float | None = None
    ) -> Identification:
        """``identify`` for an encoding (D,) that is already computed."""
        check_whole_number(top_k, "top_k")
        if threshold is not None:
            threshold = _check_threshold(threshold)
        self._refuse_if_empty()
        distances = self._distances(embedding)
        # Ties are broken by enrolment order (stable sort), the same on every machine.
        order = torch.sort(distances, stable=True).indices[: min(top_k, len(self))]
        matches = [Match(self.names[i], float(distances[i])) for i in order.tolist()]
        nearest = matches[0]
        beyond = threshold is not None and nearest.distance > threshold
        return Identification(UNKNOWN if beyond else nearest.name, matches)

    def _store(self, name: str, encodings: torch.Tensor, normalize: bool) -> None:
        if self._encodings and encodings.shape[1] != self._encodings[0].shape[0]:
            raise ValueError(
                f"encodings of {name!r} have length {encodings.shape[1]}, but the gallery holds length "
                f"{self._encodings[0].shape[0]}; enrol everyone with the same network."
            )
        mean = encodings.float().mean(dim=0)
        if normalize:
            # eps keeps an all-zero mean finite (it stays zero) instead of dividing by 0.
            mean = F.normalize(mean, dim=0, eps=torch.finfo(mean.dtype).eps)
        self.names.append(name)
        self._encodings.append(mean)

    def _encode(self, model: nn.Module, picture: torch.Tensor) -> torch.Tensor:
        check_tensor(picture, "picture")
        if picture.dim() != 3:
            raise ValueError(
                f"picture must be a single picture of shape {self._expected_shape()}, got shape "
                f"{tuple(picture.shape)}. For a stack of pictures call verify/identify once per picture "
                "(picture = pictures[i])."
            )
        self._check_picture_shape(picture.shape, "picture")
        return embed(model, picture.unsqueeze(0))[0].cpu()

    def _distances(self, embedding: torch.Tensor) -> torch.Tensor:
        """(people,) float64 squared distances from one encoding (D,) to every stored one."""
        check_tensor(embedding, "embedding")
        if embedding.dim() != 1:
            raise ValueError(f"embedding must be one encoding of shape (D,), got shape {tuple(embedding.shape)}.")
        _check_encodings(embedding, "embedding")
        stored = self.encodings
        if embedding.shape[0] != stored.shape[1]:
            raise ValueError(
                f"embedding has length {embedding.shape[0]} but the gallery holds encodings of length "
                f"{stored.shape[1]}; use the network that encoded the gallery."
            )
        # Difference first, then square, in float64: exact for the few rows of a gallery,
        # with none of the cancellation of the ||a||^2 + ||b||^2 - 2ab shortcut.
        return ((stored.double() - embedding.detach().cpu().double()) ** 2).sum(dim=1)

    def _check_new_name(self, name) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}.")
        if name == UNKNOWN:
            raise ValueError(f"{UNKNOWN!r} is reserved for open-set identification; choose another name.")
        if name in self.names:
            raise ValueError(
                f"{name!r} is already enrolled; each person has one encoding. Use another name, or "
                "enrol several pictures at once (a (K, C, H, W) stack) to average them."
            )

    def _check_picture_shape(self, shape, name: str) -> None:
        if self.picture_shape is not None and tuple(shape) != self.picture_shape:
            raise ValueError(
                f"{name}: each picture has shape {tuple(shape)}, but the gallery was enrolled with pictures "
                f"of shape {self.picture_shape}; give pictures of shape {self.picture_shape}."
            )

    def _expected_shape(self) -> str:
        return str(self.picture_shape) if self.picture_shape is not None else "(C, H, W)"

    def _refuse_if_empty(self) -> None:
        if not self.names:
            raise ValueError("the gallery is empty; enrol at least one person with gallery.enrol(model, name, picture).")

    def _some_names(self) -> str:
        shown = ", ".join(map(repr, self.names[:5]))
        return shown + (f" and {len(self.names) - 5} more" if len(self.names) > 5 else "")


def _check_encodings(encodings, name: str) -> torch.Tensor:
    """(D,) or (K, D) finite float encodings, K, D >= 1, returned as (K, D)."""
    check_tensor(encodings, name)
    if encodings.dim() not in (1, 2) or encodings.numel() == 0:
        raise ValueError(f"{name} must have shape (D,) or (K, D) with K, D >= 1, got {tuple(encodings.shape)}.")
    return check_embeddings(encodings.reshape(-1, encodings.shape[-1]), name)


def _check_threshold(threshold) -> float:
    if isinstance(threshold, torch.Tensor) and threshold.numel() == 1:
        threshold = threshold.item()
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number (a squared distance), got {type(threshold).__name__}.")
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite squared distance >= 0, got {threshold}.")
    return float(threshold) + 0.0  # + 0.0 turns -0.0 into 0.0, so "threshold -0.00" is never shown


def _check_distances(distances, name: str) -> torch.Tensor:
    """A non-empty 1-D tensor of finite float distances, returned sorted, on the CPU."""
    check_tensor(distances, name)
    if distances.dim() != 1 or distances.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D tensor of pair distances, got shape {tuple(distances.shape)}. "
            "same_and_different_distances(embeddings, labels) returns both lists."
        )
    if not distances.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {distances.dtype}. Use {name}.float().")
    if not bool(torch.isfinite(distances).all()):
        raise ValueError(f"{name} contains NaN or inf; compute distances from finite encodings.")
    return distances.detach().cpu().sort().values


def _accepted_fraction(sorted_distances: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Fraction of the distances that are <= each threshold (a binary search per threshold)."""
    return torch.searchsorted(sorted_distances, thresholds, right=True).double() / len(sorted_distances)


class RocCurve(NamedTuple):
    """Receiver operating characteristic of verification by a distance threshold.

    thresholds: (T,) increasing, in the distances' dtype; the first accepts nothing, then
        every distinct distance.
    false_accept_rate: (T,) float64 fraction of different-person pairs with distance <= threshold.
    true_accept_rate: (T,) float64 fraction of same-person pairs with distance <= threshold.
    """

    thresholds: torch.Tensor
    false_accept_rate: torch.Tensor
    true_accept_rate: torch.Tensor


def roc_curve(same_distances: torch.Tensor, different_distances: torch.Tensor) -> RocCurve:
    """False-accept and true-accept rates at every threshold where either changes.

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
    Returns:
        RocCurve(thresholds, false_accept_rate, true_accept_rate), tensors of equal
        length, from (0, 0) up to (1, 1).
    """
    same = _check_distances(same_distances, "same_distances")
    different = _check_distances(different_distances, "different_distances")
    dtype = torch.promote_types(same.dtype, different.dtype)
    same, different = same.to(dtype), different.to(dtype)
    distinct = torch.cat([same, different]).unique()
    # The largest float below the smallest distance: a threshold that accepts no pair, so
    # the curve starts at (0, 0) without a magic constant.
    accept_nothing = torch.nextafter(distinct[:1], torch.tensor([-float("inf")], dtype=distinct.dtype))
    thresholds = torch.cat([accept_nothing, distinct])
    return RocCurve(thresholds, _accepted_fraction(different, thresholds), _accepted_fraction(same, thresholds))


class EqualErrorRate(NamedTuple):
    """rate: the error rate where false accepts and false rejects balance; threshold: where."""

    rate: float
    threshold: float


def equal_error_rate(same_distances: torch.Tensor, different_distances: torch.Tensor) -> EqualErrorRate:
    """The threshold where the false-accept rate equals the false-reject rate (or comes closest).

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
    Returns:
        EqualErrorRate(rate, threshold): rate is the mean of the two error rates at the
        ROC threshold where they differ least (the smallest such threshold on ties).
    """
    curve = roc_curve(same_distances, different_distances)
    false_reject_rate = 1 - curve.true_accept_rate
    best = int((curve.false_accept_rate - false_reject_rate).abs().argmin())
    rate = (curve.false_accept_rate[best] + false_reject_rate[best]) / 2
    return EqualErrorRate(float(rate), float(curve.thresholds[best]))


class OperatingPoint(NamedTuple):
    """threshold, and the true-accept and false-accept rates it gives on the held-out pairs."""

    threshold: float
    true_accept_rate: float
    false_accept_rate: float


def threshold_at_far(
    same_distances: torch.Tensor, different_distances: torch.Tensor, far: float
) -> OperatingPoint:
    """The largest threshold whose false-accept rate is at most ``far``, and its true-accept rate.

    A larger threshold accepts more same-person pairs, so the largest one that keeps the
    false accepts within budget gives the best true-accept rate ("TAR at FAR").

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
        far: the false-accept rate allowed, in [0, 1] (for example 0.001 for 1 in 1,000).
    Returns:
        OperatingPoint(threshold, true_accept_rate, false_accept_rate).
    """
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 <= far <= 1:
        raise ValueError(f"far must be a false-accept rate between 0 and 1, got {far!r}.")
    curve = roc_curve(same_distances, different_distances)
    # The first threshold accepts nothing (rate 0), so at least one threshold qualifies.
    best = int((curve.false_accept_rate <= far).nonzero().max())
    return OperatingPoint(
        float(curve.thresholds[best]), float(curve.true_accept_rate[best]), float(curve.false_accept_rate[best])
    )


class ThresholdSummary(NamedTuple):
    """Errors of verification at one threshold on held-out pairs (what a threshold slider shows)."""

    threshold: float
    false_accepts: int
    false_rejects: int
    false_accept_rate: float
    false_reject_rate: float

    @property
    def text(self) -> str:
        """One stable line, for example 'threshold 0.80: 12 false accepts (1.2 %), 30 false rejects (3.0 %)'."""
        return (
            f"threshold {self.threshold:.2f}: {self.false_accepts} false accepts "
            f"({100 * self.false_accept_rate:.1f} %), {self.false_rejects} false rejects "
            f"({100 * self.false_reject_rate:.1f} %)"
        )


def threshold_summary(
    same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float
) -> ThresholdSummary:
    """Count false accepts (different pairs with d <= threshold) and false rejects (same pairs with d > threshold).

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
        threshold: squared distance at or below which a pair is accepted.
    Returns:
        ThresholdSummary(threshold, false_accepts, false_rejects, false_accept_rate,
        false_reject_rate); its ``text`` is one line for a label.
    """
    threshold = _check_threshold(threshold)
    same = _check_distances(same_distances, "same_distances")
    different = _check_distances(different_distances, "different_distances")
    # Compare in the distances' own dtype: a float32 distance printed as 0.8 is 0.800000012 in
    # float64 and would be rejected by the Python threshold 0.8; rounded to float32 they agree.
    false_accepts = int((different <= torch.tensor(threshold, dtype=different.dtype)).sum())
    false_rejects = int((same > torch.tensor(threshold, dtype=same.dtype)).sum())
    return ThresholdSummary(
        threshold, false_accepts, false_rejects, false_accepts / len(different), false_rejects / len(same)
    )


# ---------------------------------------------------------------------------
# Identification with many enrolled people.


class GallerySizeResult(NamedTuple):
    """Closed-set identification accuracy with ``size`` enrolled people."""

    size: int
    accuracy: float
    num_queries: int


def accuracy_vs_gallery_size(
    query_embeddings: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_embeddings: torch.Tensor,
    gallery_labels: torch.Tensor,
    sizes=(10, 100, 500, 1000),
    seed: int = 0,
) -> list[GallerySizeResult]:
    """Identification accuracy as more people are enrolled: each query against n enrolled people.

    For each n, the first n people of one seeded random order of the gallery's people are
    enrolled (nested galleries: 10 of the 100, 100 of the 500, ...), and every query of those
    people is named after its nearest enrolled row; more people means more look-alikes. Any
    features work: trained encodings, an untrained network's, raw pixels (``images.flatten(1)``).
    Gallery people without a query are distractors: enrolled and matchable, never asked for.
    A size whose people are all distractors has no accuracy and is refused, naming the
    smallest size with a query.

    Args:
        query_embeddings: (Q, D) features of the pictures to identify, Q >= 1.
        query_labels: (Q,) their identities; each must be in the gallery.
        gallery_embeddings: (G, D) enrolled features (one row per person for one-shot).
        gallery_labels: (G,) identities of the gallery rows.
        sizes: numbers of enrolled people, each from 1 to the gallery's people, and large
            enough that a queried person is among them.
        seed: non-negative int choosing which people are enrolled.
    Returns:
        one GallerySizeResult(size, accuracy, num_queries) per size, in the given order;
        num_queries >= 1 in each.
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
            f"Use sizes of at least {smallest}, or another seed."
        )
    results = []
    for n in sizes:
        enrolled = torch.isin(gallery_labels, order[:n])
        asked = torch.isin(query_labels, order[:n])
        nearest = rank_gallery(query_embeddings[asked], gallery_embeddings[enrolled]).indices[:, 0]
        correct = gallery_labels[enrolled][nearest] == query_labels[asked]
        results.append(GallerySizeResult(n, float(correct.double().mean()), int(asked.sum())))
    return results
