"""Helper package for the hands-on triplet loss course.

One module per concept; this file only names the public functions and classes. They are
imported when first used (``course_utils.TripletLoss`` loads ``course_utils.core.losses``), so
``import course_utils`` loads neither plotting, progress bars, widgets nor the distributed
training code.
"""
from importlib import import_module

# Public name -> the module that defines it.
_WHERE = {
    "Diagnosis": "lessons.diagnosis", "diagnose": "lessons.diagnosis",
    "GlobalMiningTripletLoss": "training.distributed", "compare_local_and_global_mining": "training.distributed",
    "gather_with_grad": "training.distributed",
    "OneShotResult": "evaluation.retrieval", "embed": "evaluation.retrieval",
    "one_shot_identification": "evaluation.retrieval", "rank_gallery": "evaluation.retrieval",
    "retrieval_metrics": "evaluation.retrieval",
    "cosine_distance": "core.distances", "euclidean": "core.distances", "pairwise_distances": "core.distances",
    "squared_euclidean": "core.distances",
    "ContrastiveLoss": "core.losses", "DegenerateBatchWarning": "core.losses", "TripletLoss": "core.losses",
    "TripletStats": "core.losses", "batch_all_triplet_loss": "core.losses", "batch_hard_triplet_loss": "core.losses",
    "batch_semihard_triplet_loss": "core.losses", "contrastive_loss": "core.losses", "triplet_loss": "core.losses",
    "EmbeddingNet": "training.models",
    "load_pretrained": "training.pretrained",
    "Gallery": "evaluation.recognition", "accuracy_vs_gallery_size": "evaluation.recognition",
    "CheckpointError": "training.checkpoints", "CollapseWarning": "training.trainer", "Trainer": "training.trainer",
    "training_step": "training.step",
    "anchor_negative_mask": "core.mining", "anchor_positive_mask": "core.mining", "mine_triplets": "core.mining",
    "valid_triplet_mask": "core.mining",
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
