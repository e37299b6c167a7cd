"""Keras layers of the hypernetworks."""

from hyperkeras.layers._gauge_entropy import Extractor
from hyperkeras.layers._gauge_entropy import FilterGenerator
from hyperkeras.layers._hypergan import LatentDiscriminator
from hyperkeras.layers._hypergan import LayerGenerator
from hyperkeras.layers._hypergan import Mixer
from hyperkeras.layers._noise import NoiseSource

__all__ = ["Mixer", "LayerGenerator", "LatentDiscriminator", "Extractor",
           "FilterGenerator", "NoiseSource"]
