"""Exercise checks: each ``check_*`` runs a learner's function on fixed cases and names the mistake if it is wrong."""
from course_utils.checks.basics import check_distance_matrix, check_mean_over_active, check_triplet_loss
from course_utils.checks.diagnosis import check_name_the_failure
from course_utils.checks.masks import check_semihard_mask, check_valid_triplet_mask
from course_utils.checks.recognition import check_error_rates, check_verify
from course_utils.checks.training import check_training_step

__all__ = ["check_distance_matrix", "check_error_rates", "check_mean_over_active", "check_name_the_failure",
           "check_semihard_mask", "check_training_step", "check_triplet_loss", "check_valid_triplet_mask",
           "check_verify"]
