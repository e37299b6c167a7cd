"""Keras layers of the hypernetworks."""

from hyperkeras.layers._hypergan import LatentDiscriminator
from hyperkeras.layers._hypergan import LayerGenerator
from hyperkeras.layers._hypergan import Mixer

__all__ = ["Mixer", "LayerGenerator", "LatentDiscriminator"]

from hyperkeras.layers._gauge_entropy import Extractor  # noqa: E402
from hyperkeras.layers._gauge_entropy import FilterGenerator  # noqa: E402

__all__ += ["Extractor", "FilterGenerator"]

from hyperkeras.models._base import NoiseSource  # noqa: E402

__all__ += ["NoiseSource"]
