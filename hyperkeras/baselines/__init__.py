"""Baselines with the HyperModel prediction interface (``member_logits``,
``member_probabilities``, ``predict_members``, ``sample``): a deep ensemble of
independently initialised networks and MC dropout, on any target architecture.
"""

from hyperkeras.baselines._deep_ensemble import DeepEnsemble
from hyperkeras.baselines._mc_dropout import MCDropout

__all__ = ["DeepEnsemble", "MCDropout"]
