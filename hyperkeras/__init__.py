"""hyperkeras: Keras hypernetworks that learn distributions of neural networks.

Public surface: the models (:class:`HyperGAN`, :class:`GaugeEntropyHyperNetwork`,
their base :class:`HyperModel`), target-network specs (:mod:`targets`), layers,
losses, the batched convolution op (:mod:`ops`), a fused Adam
(:mod:`optimizers`), datasets, evaluation and baselines. ``hyperkeras.plots`` (matplotlib) is imported on demand.
"""

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "hyperkeras needs the TensorFlow Keras backend (its models, custom op "
        f"and tf.data pipelines are TensorFlow), but Keras uses "
        f"{_keras.backend.backend()!r}: set the environment variable "
        "KERAS_BACKEND=tensorflow before keras is first imported.")

from hyperkeras import baselines  # noqa: E402
from hyperkeras import datasets  # noqa: E402
from hyperkeras import evaluation  # noqa: E402
from hyperkeras import layers  # noqa: E402
from hyperkeras import losses  # noqa: E402
from hyperkeras import ops  # noqa: E402
from hyperkeras import optimizers  # noqa: E402
from hyperkeras import targets  # noqa: E402
from hyperkeras.models import GaugeEntropyHyperNetwork  # noqa: E402
from hyperkeras.models import HyperGAN  # noqa: E402
from hyperkeras.models import HyperModel  # noqa: E402
from hyperkeras.targets import Conv  # noqa: E402
from hyperkeras.targets import Dense  # noqa: E402
from hyperkeras.targets import TargetNetwork  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "HyperGAN", "GaugeEntropyHyperNetwork", "HyperModel", "TargetNetwork", "Conv",
    "Dense", "baselines", "datasets", "evaluation", "layers", "losses", "ops",
    "optimizers", "targets",
]
