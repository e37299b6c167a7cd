"""Hypernetwork models."""

from hyperkeras.models._base import HyperModel
from hyperkeras.models._base import NoiseSource
from hyperkeras.models._hypergan import HyperGAN

__all__ = ["HyperModel", "HyperGAN", "NoiseSource"]

from hyperkeras.models._gauge_entropy import GaugeEntropyHyperNetwork  # noqa: E402

__all__ += ["GaugeEntropyHyperNetwork"]
