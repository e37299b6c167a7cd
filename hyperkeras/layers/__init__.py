"""Keras layers of the hypernetworks."""

from hyperkeras.layers._hypergan import LatentDiscriminator
from hyperkeras.layers._hypergan import LayerGenerator
from hyperkeras.layers._hypergan import Mixer

__all__ = ["Mixer", "LayerGenerator", "LatentDiscriminator"]
