"""hyperkeras: Keras hypernetworks that learn distributions of neural networks.

Public surface: the models (:class:`HyperGAN`, :class:`GaugeEntropyHyperNetwork`,
their base :class:`HyperModel`), target-network specs (:mod:`targets`), layers,
losses, the batched convolution op (:mod:`ops`), datasets, evaluation and
baselines. ``hyperkeras.plots`` (matplotlib) is imported on demand.
"""

from hyperkeras import baselines
from hyperkeras import datasets
from hyperkeras import evaluation
from hyperkeras import layers
from hyperkeras import losses
from hyperkeras import ops
from hyperkeras import targets
from hyperkeras.models import GaugeEntropyHyperNetwork
from hyperkeras.models import HyperGAN
from hyperkeras.models import HyperModel
from hyperkeras.targets import Conv
from hyperkeras.targets import Dense
from hyperkeras.targets import TargetNetwork

__version__ = "0.1.0"

__all__ = [
    "HyperGAN", "GaugeEntropyHyperNetwork", "HyperModel", "TargetNetwork", "Conv",
    "Dense", "baselines", "datasets", "evaluation", "layers", "losses", "ops",
    "targets",
]
