"""Deep ensemble ("random start"): independently initialised networks."""

import math

import keras
import numpy as np
import tensorflow as tf

from hyperkeras import targets as targets_lib
from hyperkeras._members import OwnObjectiveModel
from hyperkeras._members import check_outlier_kind
from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_weight
from hyperkeras.layers import NoiseSource


@keras.saving.register_keras_serializable(package="hyperkeras")
class DeepEnsemble(OwnObjectiveModel):
    """``n_members`` networks of the target architecture trained side by side.

    One Keras model holds every member's weights stacked along a leading
    member axis and evaluates them with the target's batched forward pass;
    ``fit`` minimises the *sum* of the members' cross-entropies. Adam's
    updates are per parameter, so each member trains exactly as if alone; the
    members differ by their (Glorot-uniform, Keras default) initialisation and
    all see the same mini-batches (the paper's "random start" ensemble).

    ``member_logits(x, n=None, seed=None)``: without a seed the first ``n``
    members (default all); with a seed a seeded random choice of ``n``
    distinct members. A finite ensemble cannot draw new members.

    Reports ``loss`` (the members' mean cross-entropy), ``accuracy`` and
    ``disagreement`` (with two members or more; see
    :class:`~hyperkeras._members.OwnObjectiveModel`).

    Args:
      target: a :class:`~hyperkeras.targets.TargetNetwork`, preset name or config.
      n_members: number of networks.
      seed: seed of the initialisation (and of the pseudo-outliers' draws).
      outlier_entropy_weight: weight (>= 0; 0: off) of outlier exposure, as
        the hypernetworks have it: each member's predictive entropy on
        pseudo-outliers made from the batch
        (:meth:`~hyperkeras._members.OwnObjectiveModel.pseudo_outliers`) is
        rewarded with this weight in that member's loss, so a deep ensemble
        can be compared with a hypernetwork trained with the same term.
      outlier_kind: "blend" or "rotate" (square images), as for
        :class:`~hyperkeras.models.HyperModel`.
    """

    task_loss_name = "loss"

    def __init__(self, target, n_members=10, seed=None, outlier_entropy_weight=0.0,
                 outlier_kind="blend", **kwargs):
        super().__init__(**kwargs)
        self.target = targets_lib.get(target)
        self.n_members = check_positive_int("n_members", n_members)
        self.init_seed = seed
        self.outlier_entropy_weight = check_weight("outlier_entropy_weight",
                                                   outlier_entropy_weight)
        self.outlier_kind = check_outlier_kind(outlier_kind, self.target.input_shape)
        # only where the term is on, so plain ensembles keep their variables
        self.noise_source = (NoiseSource(seed, name="training_noise")
                             if self.outlier_entropy_weight else None)
        rng = np.random.default_rng(seed)
        self.kernels, self.biases = [], []
        for info in self.target.layers:
            ks = info.kernel_shape
            # Glorot uniform: sqrt(6 / (fan_in + fan_out))
            limit = math.sqrt(6.0 / (math.prod(ks[:-2]) * (ks[-2] + ks[-1])))
            init = rng.uniform(-limit, limit, (self.n_members, *ks)).astype(np.float32)
            self.kernels.append(self.add_weight(
                shape=init.shape, initializer=keras.initializers.Constant(init),
                name=f"{info.name}_kernel"))
            self.biases.append(self.add_weight(
                shape=(self.n_members, *info.bias_shape), initializer="zeros",
                name=f"{info.name}_bias"))
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def _indices(self, n, seed):
        n = self.n_members if n is None else check_positive_int("n", n)
        if n > self.n_members:
            raise ValueError(f"the ensemble has {self.n_members} members; cannot draw {n}")
        if seed is None:
            return np.arange(n)
        return np.random.default_rng(seed).permutation(self.n_members)[:n]

    def sample(self, n=None, seed=None):
        """Weights of ``n`` members, a list of ``(kernel [n,...], bias [n,...])``."""
        idx = self._indices(n, seed)
        if len(idx) == self.n_members and np.all(idx == np.arange(self.n_members)):
            return list(zip(self.kernels, self.biases))
        idx = tf.constant(idx)
        return [(tf.gather(k, idx), tf.gather(b, idx)) for k, b in zip(self.kernels, self.biases)]

    @property
    def networks_per_step(self):
        return self.n_members

    def compile(self, optimizer="adam", **kwargs):
        """Only the optimizer (and Keras options): no ``loss`` or ``metrics``."""
        self.compile_own_objective(optimizer, kwargs,
                                   "the sum of the members' softmax cross-entropies")

    def training_members(self):
        return self.sample(), None

    @property
    def loss_scale(self):
        # the sum of the members' losses (cross-entropy, outlier term), each
        # member trained as if alone
        return float(self.n_members)

    def member_model(self, index):
        """An ordinary ``keras.Sequential`` holding member ``index``."""
        return self.target.keras_model(self.sample(), index)

    def get_config(self):
        return {"target": self.target.get_config(), "n_members": self.n_members,
                "seed": self.init_seed, "outlier_entropy_weight": self.outlier_entropy_weight,
                "outlier_kind": self.outlier_kind, "name": self.name}
