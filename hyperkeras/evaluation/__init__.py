"""Evaluation of network ensembles: accuracy, calibration, uncertainty,
out-of-distribution and adversarial detection, diversity.

Every function works on member predictions ``[K, N, classes]`` (probabilities,
or logits with ``logits=True``) or on a model exposing ``predict_members``
(hyperkeras hypernetworks and :mod:`hyperkeras.baselines`) plus inputs ``x``,
which are then evaluated in batches.
"""

from hyperkeras.evaluation._adversarial import adversarial_evaluation
from hyperkeras.evaluation._adversarial import attack
from hyperkeras.evaluation._adversarial import attack_function
from hyperkeras.evaluation._adversarial import evaluate_members
from hyperkeras.evaluation._adversarial import fgsm
from hyperkeras.evaluation._adversarial import pgd
from hyperkeras.evaluation._diversity import disagreement
from hyperkeras.evaluation._diversity import diversity
from hyperkeras.evaluation._diversity import function_diversity
from hyperkeras.evaluation._diversity import layer_norms
from hyperkeras.evaluation._diversity import pairwise_distances
from hyperkeras.evaluation._diversity import pairwise_kl
from hyperkeras.evaluation._metrics import accuracy_majority_vote
from hyperkeras.evaluation._metrics import accuracy_mean_probability
from hyperkeras.evaluation._metrics import accuracy_summed_logits
from hyperkeras.evaluation._metrics import calibration_bins
from hyperkeras.evaluation._metrics import ensemble_probabilities
from hyperkeras.evaluation._metrics import ensemble_scores
from hyperkeras.evaluation._metrics import expected_calibration_error
from hyperkeras.evaluation._metrics import expected_entropy
from hyperkeras.evaluation._metrics import majority_vote
from hyperkeras.evaluation._metrics import mutual_information
from hyperkeras.evaluation._metrics import negative_log_likelihood
from hyperkeras.evaluation._metrics import predictive_entropy
from hyperkeras.evaluation._ood import aupr
from hyperkeras.evaluation._ood import auroc
from hyperkeras.evaluation._ood import detection_metrics
from hyperkeras.evaluation._ood import empirical_cdf
from hyperkeras.evaluation._ood import fpr_at_tpr
from hyperkeras.evaluation._ood import ood_detection
from hyperkeras.evaluation._ood import uncertainty_scores

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
