"""Hypernetwork models."""

from hyperkeras.models._base import HyperModel
from hyperkeras.models._hypergan import HyperGAN

__all__ = ["HyperModel", "HyperGAN"]
