"""Course data: the generated face set, real data sets, splits, P x K batches and triplets."""
from course_utils.data.batches import (PKBatchSampler, TripletCount, count_triplets, keyed_generator,
                                       make_random_triplets, one_shot_split, split_by_identity)
from course_utils.data.faces import make_synthetic_faces, pixel_one_shot_accuracy, show_gallery
from course_utils.data.real import (DEFAULT_CACHE_DIR, DatasetUnavailableError, load_digits_dataset,
                                    load_lfw_people, load_mnist, load_olivetti_faces)
