"""Evaluation of network ensembles: accuracy, calibration, uncertainty,
out-of-distribution and adversarial detection, diversity.

Every function works on member predictions ``[K, N, classes]`` (probabilities,
or logits with ``logits=True``) or on a model exposing ``predict_members``
(hyperkeras hypernetworks and :mod:`hyperkeras.baselines`) plus inputs ``x``,
which are then evaluated in batches.
"""

from hyperkeras.evaluation.adversarial import adversarial_evaluation
from hyperkeras.evaluation.adversarial import attack
from hyperkeras.evaluation.adversarial import attack_function
from hyperkeras.evaluation.adversarial import evaluate_members
from hyperkeras.evaluation.adversarial import fgsm
from hyperkeras.evaluation.adversarial import pgd
from hyperkeras.evaluation.diversity import diversity
from hyperkeras.evaluation.diversity import layer_norms
from hyperkeras.evaluation.diversity import pairwise_distances
from hyperkeras.evaluation.metrics import accuracy_majority_vote
from hyperkeras.evaluation.metrics import accuracy_mean_probability
from hyperkeras.evaluation.metrics import accuracy_summed_logits
from hyperkeras.evaluation.metrics import calibration_bins
from hyperkeras.evaluation.metrics import ensemble_probabilities
from hyperkeras.evaluation.metrics import ensemble_scores
from hyperkeras.evaluation.metrics import expected_calibration_error
from hyperkeras.evaluation.metrics import expected_entropy
from hyperkeras.evaluation.metrics import majority_vote
from hyperkeras.evaluation.metrics import mutual_information
from hyperkeras.evaluation.metrics import negative_log_likelihood
from hyperkeras.evaluation.metrics import predictive_entropy
from hyperkeras.evaluation.ood import aupr
from hyperkeras.evaluation.ood import auroc
from hyperkeras.evaluation.ood import detection_metrics
from hyperkeras.evaluation.ood import empirical_cdf
from hyperkeras.evaluation.ood import fpr_at_tpr
from hyperkeras.evaluation.ood import ood_detection
from hyperkeras.evaluation.ood import uncertainty_scores

__all__ = [
    "accuracy_majority_vote", "accuracy_mean_probability", "accuracy_summed_logits",
    "adversarial_evaluation", "attack", "attack_function", "aupr", "auroc",
    "calibration_bins", "detection_metrics", "diversity", "empirical_cdf",
    "ensemble_probabilities", "ensemble_scores", "evaluate_members",
    "expected_calibration_error", "expected_entropy", "fgsm", "fpr_at_tpr",
    "layer_norms", "majority_vote", "mutual_information", "negative_log_likelihood",
    "ood_detection", "pairwise_distances", "pgd", "predictive_entropy",
    "uncertainty_scores",
]
