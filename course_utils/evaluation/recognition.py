"""Recognition with a trained embedding: enrol, verify, identify, and choose the threshold.

After training, one picture of a new person is enough (F9): encode it once and keep the
encoding in a ``Gallery`` under the person's name. Then

* verification answers "is this picture the person it claims to be?": accept when the
  distance to the claimed person's encoding is at most a threshold;
* identification answers "who is this?": the nearest enrolled people, and "unknown"
  when even the nearest is beyond the threshold (open-set identification).

Distances are the course's d(A, B) = ||f(A) - f(B)||^2 (squared Euclidean), so the
threshold lives on the same scale as the training margin alpha.

The threshold is chosen on held-out pairs: distances of same-person pairs and of
different-person pairs. A pair is accepted when its distance is <= threshold; accepted
different-person pairs are false accepts, rejected same-person pairs false rejects.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.core._validate import check_embeddings, check_labels, check_tensor, check_whole_number
from course_utils.data.batches import keyed_generator
from course_utils.core.distances import pairwise_distances
from course_utils.evaluation.retrieval import _new_axes, embed

UNKNOWN = "unknown"


class Verification(NamedTuple):
    """Outcome of verifying one picture against a claimed name.

    distance: squared Euclidean distance to the claimed person's encoding.
    accepted: True when distance <= threshold.
    """

    distance: float
    accepted: bool


class Match(NamedTuple):
    """One enrolled person and their distance to the query picture."""

    name: str
    distance: float


class Identification(NamedTuple):
    """Outcome of identifying one picture.

    name: the nearest enrolled person, or "unknown" when a threshold was given and even
        the nearest is beyond it.
    matches: the top_k nearest enrolled people, nearest first (always filled, so a
        rejected query still shows how close it came).
    """

    name: str
    matches: list[Match]


class Gallery:
    """One encoding per enrolled person, looked up by name.

    Args:
        normalize: re-normalise each stored encoding to length 1. Use True for a network
            that normalises its output (``EmbeddingNet`` does by default): the mean of
            several unit encodings is shorter than 1 and would otherwise sit off the sphere.
            ``enrol`` with a model uses the model's own ``normalize`` attribute instead.

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
        check_tensor(embeddings, "embeddings")
        if embeddings.dim() == 1:
            embeddings = embeddings.unsqueeze(0)
        self._check_encodings(embeddings, "embeddings")
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
        check_tensor(embedding, "embedding")
        if embedding.dim() != 1:
            raise ValueError(f"embedding must be one encoding of shape (D,), got shape {tuple(embedding.shape)}.")
        self._check_encodings(embedding.unsqueeze(0), "embedding")
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

    @staticmethod
    def _check_encodings(encodings: torch.Tensor, name: str) -> None:
        if encodings.dim() != 2 or encodings.shape[0] == 0 or encodings.shape[1] == 0:
            raise ValueError(f"{name} must have shape (D,) or (K, D) with K, D >= 1, got {tuple(encodings.shape)}.")
        if not encodings.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {encodings.dtype}. Use {name}.float().")
        if not bool(torch.isfinite(encodings).all()):
            raise ValueError(f"{name} contains NaN or inf; the network produced invalid numbers.")

    def _refuse_if_empty(self) -> None:
        if not self.names:
            raise ValueError("the gallery is empty; enrol at least one person with gallery.enrol(model, name, picture).")

    def _some_names(self) -> str:
        shown = ", ".join(map(repr, self.names[:5]))
        return shown + (f" and {len(self.names) - 5} more" if len(self.names) > 5 else "")


def _check_threshold(threshold) -> float:
    if isinstance(threshold, torch.Tensor) and threshold.numel() == 1:
        threshold = threshold.item()
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number (a squared distance), got {type(threshold).__name__}.")
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite squared distance >= 0, got {threshold}.")
    return float(threshold)


def _check_distances(distances, name: str) -> torch.Tensor:
    """A non-empty 1-D tensor of finite distances, returned sorted in float64 on the CPU."""
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


def plot_roc(
    same_distances: torch.Tensor, different_distances: torch.Tensor, far: float | None = None, ax=None,
    log_far: bool = True,
):
    """The ROC curve (true-accept rate against false-accept rate), optionally marking TAR at FAR.

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
        far: if given, mark the operating point of ``threshold_at_far`` at this rate.
        ax: matplotlib Axes; None makes a new figure.
        log_far: a logarithmic false-accept axis, from one pair in N (the smallest rate above 0)
            to 100 %, so the low rates that applications choose (1 %, 0.1 %, ...) are not squeezed
            against the left edge. The thresholds that accept no different-person pair (rate 0)
            cannot be drawn on it; they sit on the left edge.
    Returns:
        the matplotlib Figure.
    """
    from matplotlib.ticker import FuncFormatter

    curve = roc_curve(same_distances, different_distances)
    eer = equal_error_rate(same_distances, different_distances)
    smallest = 1 / len(different_distances)
    ax = _new_axes() if ax is None else ax
    rates = curve.false_accept_rate.clamp_min(smallest) if log_far else curve.false_accept_rate
    ax.plot(rates.numpy(), curve.true_accept_rate.numpy(), label="verification by distance")
    chance = np.logspace(np.log10(smallest), 0, 200) if log_far else np.array([0.0, 1.0])
    ax.plot(chance, chance, color="grey", linestyle=":", label="chance (accept at random)")
    ax.plot([eer.rate], [1 - eer.rate], "o", label=f"equal error rate {100 * eer.rate:.1f} %")
    if far is not None:
        point = threshold_at_far(same_distances, different_distances, far)
        ax.plot([max(point.false_accept_rate, smallest) if log_far else point.false_accept_rate],
                [point.true_accept_rate], "s",
                label=f"TAR {100 * point.true_accept_rate:.1f} % at FAR <= {100 * far:g} %")  # fmt: skip
    percent = FuncFormatter(lambda value, _: f"{100 * value:g} %")
    if log_far:
        ax.set_xscale("log")
        ax.set_xlim(smallest, 1)
        ax.set_xlabel("false-accept rate (different-person pairs accepted, log scale)")
    else:
        ax.set_xlim(0, 1)
        ax.set_xlabel("false-accept rate (different-person pairs accepted)")
    ax.xaxis.set_major_formatter(percent)
    ax.yaxis.set_major_formatter(percent)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("true-accept rate (same-person pairs accepted)")
    ax.set_title("ROC of verification on held-out pairs")
    ax.grid(True, which="major", alpha=0.3)
    # On the log axis the curve hugs the top and the chance line the bottom: the middle right is free.
    ax.legend(fontsize="small", loc="center right" if log_far else "lower right")
    return ax.figure


def plot_threshold(
    same_distances: torch.Tensor, different_distances: torch.Tensor, threshold: float, bins: int = 50, ax=None
):
    """The two distance histograms with the threshold as a vertical line and its errors in the title.

    Args:
        same_distances: (S,) distances of same-person pairs.
        different_distances: (N,) distances of different-person pairs.
        threshold: squared distance at or below which a pair is accepted.
        bins: histogram bins.
        ax: matplotlib Axes; None makes a new figure.
    Returns:
        the matplotlib Figure.
    """
    check_whole_number(bins, "bins")
    summary = threshold_summary(same_distances, different_distances, threshold)
    same, different = same_distances.detach().cpu().double(), different_distances.detach().cpu().double()
    upper = max(float(torch.cat([same, different]).max()), summary.threshold, torch.finfo(torch.float32).eps)
    edges = np.linspace(0.0, upper, bins + 1)
    ax = _new_axes() if ax is None else ax
    for name, distances in (("same person", same), ("different people", different)):
        ax.hist(distances.numpy(), bins=edges, density=True, alpha=0.6, label=f"{name} ({len(distances)} pairs)")
    ax.axvline(summary.threshold, color="black", linestyle="--", label=f"threshold {summary.threshold:.2f}")
    ax.set_xlabel("squared Euclidean distance d between encodings")
    ax.set_ylabel("density (fraction of pairs per unit distance)")
    ax.set_title(summary.text, fontsize="small")
    ax.legend(fontsize="small")
    return ax.figure


# ---------------------------------------------------------------------------
# Identification with many enrolled people, and pictures of the outcome.


QUERY_CHUNK = 256


class Ranking(NamedTuple):
    """The nearest gallery rows of each query, nearest first.

    distances: (Q, k) float64 squared Euclidean distances.
    indices: (Q, k) long row numbers into the gallery.
    """

    distances: torch.Tensor
    indices: torch.Tensor


def rank_gallery(query_embeddings: torch.Tensor, gallery_embeddings: torch.Tensor, top_k: int = 1) -> Ranking:
    """The top_k nearest gallery rows of every query (squared Euclidean distance).

    Args:
        query_embeddings: (Q, D) encodings (or flattened pictures) to look up.
        gallery_embeddings: (G, D) enrolled encodings, in the same space.
        top_k: how many neighbours per query, 1 <= top_k <= G.
    Returns:
        Ranking(distances (Q, top_k), indices (Q, top_k)); ties go to the lower row number.
    """
    check_embeddings(query_embeddings, "query_embeddings")
    check_embeddings(gallery_embeddings, "gallery_embeddings")
    if query_embeddings.shape[1] != gallery_embeddings.shape[1]:
        raise ValueError(
            f"query_embeddings have {query_embeddings.shape[1]} columns but gallery_embeddings "
            f"{gallery_embeddings.shape[1]}; encode both with the same network."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(gallery_embeddings):
        raise ValueError(f"top_k must be a whole number from 1 to {len(gallery_embeddings)}, got {top_k!r}.")
    query = query_embeddings.detach().cpu().double()
    gallery = gallery_embeddings.detach().cpu().double()
    parts_distances, parts_indices = [], []
    # float64, so that near-ties are ranked the same on every machine; QUERY_CHUNK queries at a
    # time keep memory at QUERY_CHUNK x G distances.
    for start in range(0, len(query), QUERY_CHUNK):
        distances = pairwise_distances(query[start : start + QUERY_CHUNK], gallery)
        order = torch.sort(distances, dim=1, stable=True).indices[:, :top_k]
        parts_distances.append(distances.gather(1, order))
        parts_indices.append(order)
    return Ranking(torch.cat(parts_distances), torch.cat(parts_indices))


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
    enrolled (so the galleries are nested: 10 of the 100, 100 of the 500, ...), and every
    query of those people is named after its nearest enrolled row. More people means more
    look-alikes, so accuracy falls as n grows. Works for any features: trained encodings,
    an untrained network's, or raw pixels (``images.flatten(1)``).

    Gallery people without a query are distractors: they count among the n enrolled and
    can be matched by mistake, but nobody asks for them. When the first people of the order
    are all distractors, the smallest sizes hold no query and have no accuracy: such a size
    raises a ValueError that names the smallest size with a query.

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
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}.")
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


def plot_accuracy_vs_gallery_size(results: dict, ax=None):
    """Accuracy against the number of enrolled people, one line per kind of features.

    Args:
        results: {name: list of GallerySizeResult}, for example {"trained network": ...,
            "raw pixels": ...}, each from ``accuracy_vs_gallery_size``.
        ax: matplotlib Axes; None makes a new figure.
    Returns:
        the matplotlib Figure.
    """
    if not isinstance(results, dict) or not results:
        raise TypeError("results must be a non-empty dict {name: accuracy_vs_gallery_size(...)}.")
    ax = _new_axes() if ax is None else ax
    for name, rows in results.items():
        if not rows or not all(isinstance(row, GallerySizeResult) for row in rows):
            raise TypeError(f"results[{name!r}] must be the list returned by accuracy_vs_gallery_size.")
        ax.plot([row.size for row in rows], [100 * row.accuracy for row in rows], "o-", label=name)
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("people enrolled, one picture each (log scale)")
    ax.set_ylabel("identification accuracy (%)")
    ax.set_title("one-shot identification as the gallery grows")
    ax.legend(fontsize="small")
    return ax.figure


def _show_picture(ax, picture: torch.Tensor) -> None:
    """One (C, H, W) picture in [0, 1], C = 1 (grey) or 3, without axis ticks."""
    picture = picture.detach().cpu().float().clamp(0, 1)
    if picture.shape[0] == 1:
        ax.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(picture.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _check_pictures(pictures, name: str, count: int | None = None) -> torch.Tensor:
    check_tensor(pictures, name)
    if pictures.dim() != 4 or pictures.shape[1] not in (1, 3) or not pictures.is_floating_point():
        raise ValueError(f"{name} must be float pictures of shape (N, C, H, W) with C = 1 or 3, "
                         f"got {pictures.dtype} {tuple(pictures.shape)}.")  # fmt: skip
    if count is not None and len(pictures) != count:
        raise ValueError(f"{name} has {len(pictures)} pictures; {count} are needed (one per query).")
    return pictures


def _mark(good: bool, yes: str, no: str) -> str:
    """A tick and ``yes`` when good, else a cross and ``no``."""
    return f"\u2713 {yes}" if good else f"\u2717 {no}"


def plot_hits_and_misses(
    query_pictures: torch.Tensor, matched_pictures: torch.Tensor, distances: torch.Tensor, hits: torch.Tensor
):
    """Each query picture above the enrolled picture it was matched to, with the distance and a tick or cross.

    Args:
        query_pictures: (Q, C, H, W) pictures identified, in [0, 1].
        matched_pictures: (Q, C, H, W) the nearest enrolled picture of each.
        distances: (Q,) squared distance between each query and its match.
        hits: (Q,) bool, True when the match is the query's own person.
    Returns:
        the matplotlib Figure: one column per query.
    """
    from matplotlib.figure import Figure

    _check_pictures(query_pictures, "query_pictures")
    count = len(query_pictures)
    _check_pictures(matched_pictures, "matched_pictures", count)
    check_tensor(distances, "distances")
    check_tensor(hits, "hits")
    if distances.shape != (count,) or hits.shape != (count,) or hits.dtype != torch.bool:
        raise ValueError(f"distances must be a float tensor and hits a bool tensor, each of shape ({count},).")
    figure = Figure(figsize=(1.3 * count, 3.2), layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    for column in range(count):
        _show_picture(axes[0][column], query_pictures[column])
        _show_picture(axes[1][column], matched_pictures[column])
        hit = bool(hits[column])
        axes[1][column].set_xlabel(f"d = {float(distances[column]):.2f}\n{_mark(hit, 'right', 'wrong')}",
                                   color="tab:green" if hit else "tab:red")  # fmt: skip
    axes[0][0].set_ylabel("query")
    axes[1][0].set_ylabel("nearest\nenrolled")
    figure.suptitle("identification: each query and the enrolled picture it matched")
    return figure


def plot_retrieval(
    query_picture: torch.Tensor, retrieved_pictures: torch.Tensor, distances: torch.Tensor, relevant: torch.Tensor
):
    """A query picture, then the pictures a search returned for it, nearest first.

    Args:
        query_picture: (C, H, W) the query, in [0, 1].
        retrieved_pictures: (k, C, H, W) the returned pictures, nearest first.
        distances: (k,) their squared distances to the query.
        relevant: (k,) bool, True for pictures of the query's own person.
    Returns:
        the matplotlib Figure: the query and k results in one row.
    """
    from matplotlib.figure import Figure

    check_tensor(query_picture, "query_picture")
    _check_pictures(query_picture.unsqueeze(0), "query_picture")
    count = len(_check_pictures(retrieved_pictures, "retrieved_pictures"))
    check_tensor(distances, "distances")
    check_tensor(relevant, "relevant")
    if distances.shape != (count,) or relevant.shape != (count,) or relevant.dtype != torch.bool:
        raise ValueError(f"distances must be a float tensor and relevant a bool tensor, each of shape ({count},).")
    figure = Figure(figsize=(1.4 * (count + 1), 2.0), layout="constrained")
    axes = figure.subplots(1, count + 1, squeeze=False)[0]
    _show_picture(axes[0], query_picture)
    axes[0].set_xlabel("query")
    for rank in range(count):
        _show_picture(axes[rank + 1], retrieved_pictures[rank])
        same = bool(relevant[rank])
        axes[rank + 1].set_title(f"#{rank + 1}", fontsize="small")
        axes[rank + 1].set_xlabel(f"d = {float(distances[rank]):.2f}\n{_mark(same, 'same person', 'other person')}",
                                  color="tab:green" if same else "tab:red")  # fmt: skip
    figure.suptitle("retrieval: the nearest pictures of the gallery, nearest first")
    return figure
