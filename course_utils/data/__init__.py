"""Course data: the generated face set, real data sets, and P x K batches and triplets (re-exported here)."""
from course_utils.data.batches import (
    PKBatchSampler,
    TripletCount,
    count_triplets,
    keyed_generator,
    make_random_triplets,
    one_shot_split,
    split_by_identity,
)
from course_utils.data.faces import make_synthetic_faces, pixel_one_shot_accuracy, show_gallery
from course_utils.data.real import (
    DEFAULT_CACHE_DIR,
    DatasetCheckError,
    DatasetUnavailableError,
    load_digits_dataset,
    load_fashion_mnist,
    load_lfw_people,
    load_mnist,
    load_olivetti_faces,
)

__all__ = [
    "DEFAULT_CACHE_DIR", "DatasetCheckError", "DatasetUnavailableError", "PKBatchSampler", "TripletCount",
    "count_triplets", "keyed_generator", "load_digits_dataset", "load_fashion_mnist", "load_lfw_people",
    "load_mnist", "load_olivetti_faces", "make_random_triplets", "make_synthetic_faces", "one_shot_split",
    "pixel_one_shot_accuracy", "show_gallery", "split_by_identity",
]
