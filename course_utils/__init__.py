"""Helper package for the hands-on triplet loss course.

One module per concept; this file only names the public functions and classes. They are
imported when first used (``course_utils.TripletLoss`` loads ``course_utils.losses``), so
``import course_utils`` loads neither plotting, progress bars, widgets nor the distributed
training code.
"""
from importlib import import_module

# Public name -> the module that defines it.
_WHERE = {
    "Diagnosis": "diagnosis", "diagnose": "diagnosis",
    "GlobalMiningTripletLoss": "distributed", "compare_local_and_global_mining": "distributed",
    "gather_with_grad": "distributed",
    "OneShotResult": "evaluation", "embed": "evaluation", "one_shot_identification": "evaluation",
    "retrieval_metrics": "evaluation",
    "cosine_distance": "distances", "euclidean": "distances", "pairwise_distances": "distances",
    "squared_euclidean": "distances",
    "ContrastiveLoss": "losses", "DegenerateBatchWarning": "losses", "TripletLoss": "losses",
    "TripletStats": "losses", "batch_all_triplet_loss": "losses", "batch_hard_triplet_loss": "losses",
    "batch_semihard_triplet_loss": "losses", "contrastive_loss": "losses", "triplet_loss": "losses",
    "EmbeddingNet": "models",
    "load_pretrained": "pretrained",
    "Gallery": "recognition", "accuracy_vs_gallery_size": "recognition", "rank_gallery": "recognition",
    "CheckpointError": "training", "CollapseWarning": "training", "Trainer": "training",
    "training_step": "training",
    "anchor_negative_mask": "mining", "anchor_positive_mask": "mining", "count_valid_triplets": "mining",
    "mine_triplets": "mining", "valid_triplet_mask": "mining",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'course_utils' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # the next look-up finds it directly
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
