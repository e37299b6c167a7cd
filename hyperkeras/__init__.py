"""hyperkeras: Keras hypernetworks that learn distributions of neural networks."""

from hyperkeras import ops
from hyperkeras import targets
from hyperkeras.models import GaugeEntropyHyperNetwork
from hyperkeras.models import HyperGAN
from hyperkeras.models import HyperModel
from hyperkeras.targets import Conv
from hyperkeras.targets import Dense
from hyperkeras.targets import TargetNetwork

__version__ = "0.1.0"

__all__ = ["HyperGAN", "HyperModel", "TargetNetwork", "Conv", "Dense", "ops",
           "targets"]
__all__ += ["GaugeEntropyHyperNetwork"]
