"""Hypernetwork models, and ``adam_with_decay`` (the gauge model's optimizer)."""

from hyperkeras.layers import NoiseSource
from hyperkeras.models._base import HyperModel
from hyperkeras.models._gauge_entropy import GaugeEntropyHyperNetwork
from hyperkeras.models._hypergan import HyperGAN
from hyperkeras.optimizers import adam_with_decay

__all__ = ["HyperModel", "HyperGAN", "GaugeEntropyHyperNetwork", "NoiseSource",
           "adam_with_decay"]
