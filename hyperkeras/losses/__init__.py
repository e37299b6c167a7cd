"""Losses and regularisers of the hypernetworks."""

from hyperkeras.losses._diversity import members_mean_entropy
from hyperkeras.losses._diversity import members_mutual_information
from hyperkeras.losses._diversity import nontrue_class_diversity
from hyperkeras.losses._entropy import kl_entropy
from hyperkeras.losses._gauge import gauge_fix
from hyperkeras.losses._gauge import gauge_penalty

__all__ = ["kl_entropy", "gauge_fix", "gauge_penalty", "members_mean_entropy",
           "members_mutual_information",
           "nontrue_class_diversity"]
