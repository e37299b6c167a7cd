"""Deutsch et al., "Generating neural networks with neural networks".

Noise z ~ U[-1, 1]^noise_dim -> extractor E -> one code per filter (plus one for
the whole last layer) -> per-layer filter generators W_l (shared by the filters
of a layer) -> all weights of the target network. Trained to minimise

    lambda * L_accuracy - H(S(G(z)))        (gauge="transform", eq. 11)
    lambda * L_accuracy - H(G(z)) + gamma * G(G(z))   (gauge="penalty", eq. 10)

with H the Kozachenko-Leonenko entropy estimate over the K networks of a step
(d = noise_dim, eq. 14) and S / G the gauge transform / penalty
(:mod:`hyperkeras.losses`).
"""

import math

import keras
import tensorflow as tf

from hyperkeras import losses
from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_weight
from hyperkeras.layers import Extractor
from hyperkeras.layers import FilterGenerator
from hyperkeras.losses._gauge import filter_penalty
from hyperkeras.losses._gauge import fix_filters
from hyperkeras.models._base import HyperModel
from hyperkeras.optimizers import adam_with_decay

GAUGES = ("transform", "penalty", "none")

# Table 2 of the paper: hidden sizes of W_1..W_4 for the 4-layer MNIST target.
TABLE2_GENERATOR_UNITS = ((40, 40), (100, 100), (100, 100), (60, 60))


def _normalise_generator_units(units, num_layers):
    if units is None and num_layers == len(TABLE2_GENERATOR_UNITS):
        return TABLE2_GENERATOR_UNITS
    if units is None:
        return ((100, 100),) * (num_layers - 1) + ((60, 60),)
    units = list(units)
    if units and all(isinstance(u, (int,)) and not isinstance(u, bool) for u in units):
        units = [tuple(units)] * num_layers  # one hidden-size tuple for every layer
    if len(units) != num_layers:
        raise ValueError(f"generator_units needs one hidden-size list per target "
                         f"layer ({num_layers}), got {len(units)}")
    return tuple(tuple(int(v) for v in u) for u in units)


@keras.saving.register_keras_serializable(package="hyperkeras")
class GaugeEntropyHyperNetwork(HyperModel):
    """Gauge-fixed entropy hypernetwork (Deutsch et al.).

    Args:
      target: target network (instance, preset name or config); default the
        paper's MNIST network ``"deutsch_mnist"`` (conv 32, conv 16, dense 8, 10).
      noise_dim: size of z ~ U[-1, 1]^noise_dim (paper: 300); also the d of the
        entropy estimator.
      code_dim: size of each filter's code (paper: 15).
      extractor_units: hidden sizes of E (paper: 300, 300).
      generator_units: hidden sizes of each W_l: None (Table 2 for a 4-layer
        target: [40,40], [100,100], [100,100], [60,60]; otherwise [100,100] and
        [60,60] for the last), one list for all layers, or one list per layer.
      alpha: leaky-ReLU slope of E and W_l (paper: 0.05).
      use_bias: biases in E and W_l (the paper has none; default True here, it
        makes the mean network easier to learn).
      init_gain: the generators' outputs are multiplied by ``init_gain /
        sqrt(fan_in)``. The MLP outputs start with std ~0.15-0.25, so 6 gives
        generated weights of roughly He scale ``sqrt(2 / fan_in)`` at start.
      gauge: "transform" (entropy of S(G(z)), eq. 11), "penalty" (entropy of
        G(z) plus ``gamma * G``, eq. 10) or "none" (entropy of raw weights).
      gamma: weight of the gauge penalty (only used with gauge="penalty").
        G is about 1e7 for He-scaled MNIST weights (each filter must reach a
        sum of squares equal to its size), so the default 1e-4 keeps gamma * G
        near the task loss; with gamma = 1 the penalty swamped the task and
        Fashion-MNIST accuracy stayed at chance over 300 steps, with 1e-4 it
        reached 77% (``examples/mnist_gauge_entropy.py --gauge penalty --steps 300``).
      lambda_: weight of the accuracy term (paper: 1e3); must be > 0.
      entropy_weight: weight of the entropy term (1.0 is the paper's loss; 0
        switches diversity off, leaving an ensemble-free maximum-likelihood fit).
      entropy_warmup: steps over which the entropy weight ramps linearly from 0
        to ``entropy_weight`` (0: none). At full weight from the first step the
        entropy can hold new networks at chance (``benchmarks/gauge_warmup.py``).
      seed: seed of the training noise.
      **kwargs: see :class:`~hyperkeras.models.HyperModel`; here
        ``networks_per_step`` defaults to 32 and ``batch_mode`` to "split"
        (each network sees its own images: a batch of 1024 gives 32 each).

    The optimised loss is divided by ``lambda_``: ``task_loss - (entropy_weight
    * H - gamma * G) / lambda_`` (the same minimiser, gradients of the size of
    a cross-entropy). Reported metrics: ``loss`` (that scaled objective),
    ``task_loss`` and ``accuracy`` (mean over the step's networks), ``entropy``
    (H in nats, unscaled), ``gauge_penalty`` (mean G of the raw generated
    networks, unscaled, whatever the gauge mode) and, with
    ``batch_mode="shared"``, ``disagreement`` (see :class:`HyperModel`).
    """

    noise_distribution = "uniform"
    objective_metric_names = ("loss", "entropy", "gauge_penalty")

    def __init__(self, target="deutsch_mnist", noise_dim=300, code_dim=15,
                 extractor_units=(300, 300), generator_units=None, alpha=0.05,
                 use_bias=True, init_gain=6.0, gauge="transform", gamma=1e-4, lambda_=1e3,
                 entropy_weight=1.0, entropy_warmup=200, seed=None, networks_per_step=32,
                 batch_mode="split", **kwargs):
        super().__init__(target, networks_per_step=networks_per_step,
                         batch_mode=batch_mode, seed=seed, **kwargs)
        self.noise_dim = check_positive_int("noise_dim", noise_dim)
        self.code_dim = check_positive_int("code_dim", code_dim)
        if gauge not in GAUGES:
            raise ValueError(f"gauge must be one of {GAUGES}, got {gauge!r}")
        self.gauge = gauge
        self.lambda_ = check_weight("lambda_", lambda_, strict=True)
        self.entropy_weight = check_weight("entropy_weight", entropy_weight)
        self.entropy_warmup = (check_positive_int("entropy_warmup", entropy_warmup)
                               if entropy_warmup != 0 else 0)
        self.gamma = check_weight("gamma", gamma)
        self.init_gain = check_weight("init_gain", init_gain, strict=True)
        layers = self.target.layers
        if sum(info.filters for info in layers) < 1:
            raise ValueError(f"target {self.target.name!r} has no filters to generate")
        self.extractor_units = tuple(int(u) for u in extractor_units)
        self.generator_units = _normalise_generator_units(generator_units, len(layers))
        self.alpha = float(alpha)
        self.use_bias = bool(use_bias)
        # One code per filter of layers 1..m-1, one for the whole last layer.
        self.codes_per_layer = [info.filters for info in layers[:-1]] + [1]
        self.extractor = Extractor(sum(self.codes_per_layer), self.code_dim,
                                   self.extractor_units, self.alpha, self.use_bias,
                                   name="extractor")
        self.filter_generators = [
            FilterGenerator(info.filter_size, info.filters if l == len(layers) - 1 else 1,
                            units, self.alpha, self.init_gain / math.sqrt(info.fan_in),
                            self.use_bias, name=f"generator_{info.name}")
            for l, (info, units) in enumerate(zip(layers, self.generator_units))]

    def codes(self, noise):
        """The extractor's ``[K, num_codes, code_dim]`` codes: one per filter of
        layers 1..m-1 (in layer order), then one for the whole last layer."""
        return self.extractor(noise)

    def filters_from_codes(self, codes):
        """Per-layer filter views ``[K, filters, filter_size]`` (weights then bias)."""
        per_layer = tf.split(codes, self.codes_per_layer, axis=1)
        return [gen(c) for gen, c in zip(self.filter_generators, per_layer)]

    def generate_from_codes(self, codes):
        return self.target.from_filters(self.filters_from_codes(codes))

    def gauge_fix(self, params):
        """S(params): the same networks in the gauge (see :func:`hyperkeras.losses.gauge_fix`)."""
        return losses.gauge_fix(self.target, params)

    def sample_gauge_fixed(self, n, seed=None):
        """``n`` sampled networks in the gauge; identical functions to :meth:`sample`."""
        return self.gauge_fix(self.sample(n, seed))

    def entropy(self, params, dim=None):
        """KL entropy estimate (d = noise_dim) of networks in this model's gauge."""
        if self.gauge == "transform":
            params = self.gauge_fix(params)
        return losses.kl_entropy(self.target.flatten(params),
                                 dim=self.noise_dim if dim is None else dim)

    def compile(self, optimizer=None, **kwargs):
        """Default optimizer: Adam 3e-4 decaying x0.99998 per step (the paper's)."""
        if optimizer is None:
            optimizer = adam_with_decay(3e-4, 0.99998)
        self.compile_own_objective(
            optimizer, kwargs, "lambda * task loss - entropy (+ gamma * gauge penalty)")
        self.build()
        self.optimizer.build(self.trainable_variables)

    def training_members(self):
        """The step's networks; the state is their filter views.

        The gauge terms and the entropy are computed on the filter views (the
        entropy only depends on distances, not on the order of coordinates),
        so the step converts layouts once, for the forward pass.
        """
        noise = self.training_noise()
        filters = self.filters_from_codes(self.codes(noise))
        if self.prior_scale:  # the entropy and the gauge see the prior too
            filters = self.target.to_filters(
                self.with_prior(self.target.from_filters(filters), noise))
        return self.target.from_filters(filters), filters

    def objective(self, task_loss, filters):
        penalty = tf.reduce_mean(filter_penalty(self.target, filters))
        if self.gauge == "transform":
            filters = fix_filters(self.target, filters)
        k = tf.shape(filters[0])[0]
        flat = tf.concat([tf.reshape(f, [k, -1]) for f in filters], 1)
        if self.entropy_weight == 0:
            flat = tf.stop_gradient(flat)
        entropy = losses.kl_entropy(flat, dim=self.noise_dim)
        total = task_loss - self.current_entropy_weight() * entropy / self.lambda_
        if self.gauge == "penalty":
            total += self.gamma * penalty / self.lambda_
        return total, {"loss": total, "entropy": entropy, "gauge_penalty": penalty}

    def current_entropy_weight(self):
        """The entropy weight of the next optimizer step (warm-up ramp applied)."""
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)
        return self.entropy_weight * tf.minimum(1.0, step / max(self.entropy_warmup, 1))

    def get_config(self):
        return {**super().get_config(), "noise_dim": self.noise_dim,
                "code_dim": self.code_dim,
                "extractor_units": list(self.extractor_units),
                "generator_units": [list(u) for u in self.generator_units],
                "alpha": self.alpha, "use_bias": self.use_bias,
                "init_gain": self.init_gain, "gauge": self.gauge,
                "gamma": self.gamma, "lambda_": self.lambda_,
                "entropy_weight": self.entropy_weight,
                "entropy_warmup": self.entropy_warmup}
