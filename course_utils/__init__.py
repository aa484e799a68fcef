"""Helper package for the hands-on triplet loss course.

One module per concept; this file only re-exports the public names.
"""
from .diagnosis import Diagnosis, diagnose
from .distributed import GlobalMiningTripletLoss, compare_local_and_global_mining, gather_with_grad
from .evaluation import OneShotResult, embed, one_shot_identification, retrieval_metrics
from .distances import cosine_distance, euclidean, pairwise_distances, squared_euclidean
from .losses import (
    ContrastiveLoss,
    DegenerateBatchWarning,
    TripletLoss,
    TripletStats,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semihard_triplet_loss,
    contrastive_loss,
    triplet_loss,
)
from .models import EmbeddingNet
from .pretrained import load_pretrained
from .recognition import Gallery, accuracy_vs_gallery_size, rank_gallery
from .training import CheckpointError, CollapseWarning, Trainer, training_step
from .mining import (
    anchor_negative_mask,
    anchor_positive_mask,
    count_valid_triplets,
    mine_triplets,
    valid_triplet_mask,
)

__all__ = [
    "CheckpointError",
    "ContrastiveLoss",
    "accuracy_vs_gallery_size",
    "contrastive_loss",
    "rank_gallery",
    "CollapseWarning",
    "Diagnosis",
    "EmbeddingNet",
    "Gallery",
    "GlobalMiningTripletLoss",
    "OneShotResult",
    "Trainer",
    "embed",
    "load_pretrained",
    "one_shot_identification",
    "retrieval_metrics",
    "training_step",
    "DegenerateBatchWarning",
    "TripletLoss",
    "TripletStats",
    "anchor_negative_mask",
    "anchor_positive_mask",
    "batch_all_triplet_loss",
    "batch_hard_triplet_loss",
    "batch_semihard_triplet_loss",
    "compare_local_and_global_mining",
    "cosine_distance",
    "count_valid_triplets",
    "diagnose",
    "euclidean",
    "gather_with_grad",
    "mine_triplets",
    "pairwise_distances",
    "squared_euclidean",
    "triplet_loss",
    "valid_triplet_mask",
]
