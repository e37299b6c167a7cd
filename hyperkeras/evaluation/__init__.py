"""Evaluation of network ensembles: accuracy, calibration, uncertainty,
out-of-distribution and adversarial detection, diversity.

Every function works on member predictions ``[K, N, classes]`` (probabilities,
or logits with ``logits=True``) or on a model exposing ``predict_members``
(hyperkeras hypernetworks and :mod:`hyperkeras.baselines`) plus inputs ``x``,
which are then evaluated in batches.
"""

from hyperkeras.evaluation._adversarial import (
    adversarial_evaluation, attack, attack_function, evaluate_members, fgsm, pgd)
from hyperkeras.evaluation._diversity import (
    disagreement, diversity, function_diversity, layer_norms, pairwise_distances,
    pairwise_kl)
from hyperkeras.evaluation._metrics import (
    accuracy_majority_vote, accuracy_mean_probability, accuracy_summed_logits,
    calibration_bins, ensemble_probabilities, ensemble_scores, expected_calibration_error,
    expected_entropy, majority_vote, mutual_information, negative_log_likelihood,
    predictive_entropy)
from hyperkeras.evaluation._ood import (
    aupr, auroc, detection_metrics, empirical_cdf, fpr_at_tpr, ood_detection,
    uncertainty_scores)

__all__ = [
    "accuracy_majority_vote", "accuracy_mean_probability", "accuracy_summed_logits",
    "adversarial_evaluation", "attack", "attack_function", "aupr", "auroc",
    "calibration_bins", "detection_metrics", "disagreement", "diversity",
    "empirical_cdf", "function_diversity", "pairwise_kl",
    "ensemble_probabilities", "ensemble_scores", "evaluate_members",
    "expected_calibration_error", "expected_entropy", "fgsm", "fpr_at_tpr",
    "layer_norms", "majority_vote", "mutual_information", "negative_log_likelihood",
    "ood_detection", "pairwise_distances", "pgd", "predictive_entropy",
    "uncertainty_scores",
]
