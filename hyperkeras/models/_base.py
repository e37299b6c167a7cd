"""What every hyperkeras hypernetwork shares (:class:`HyperModel`): sampling
with seeds, ensemble prediction, training from the model's
:class:`~hyperkeras.layers.NoiseSource`, ``.keras`` round trips and a
SavedModel that needs no hyperkeras to load.
"""

import keras
import numpy as np
import tensorflow as tf

from hyperkeras import ops
from hyperkeras import targets as targets_lib
from hyperkeras._members import TASKS
from hyperkeras._members import OwnObjectiveModel
from hyperkeras._members import check_outlier_kind
from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_weight
from hyperkeras._utils import check_weight_or_schedule
from hyperkeras._utils import stateless_noise
from hyperkeras._utils import weight_config
from hyperkeras.layers import NoiseSource


class HyperModel(OwnObjectiveModel):
    """Base class of hypernetworks: noise -> all weights of a target network.

    Args:
      target: a :class:`~hyperkeras.targets.TargetNetwork`, preset name or config.
      task: "classification" (softmax cross-entropy) or "regression" (MSE).
      ensemble_size: networks averaged by ``call``/``predict``/export.
      eval_seed: seed of the networks ``call`` uses, so predictions repeat.
      networks_per_step: networks sampled in every training step.
      batch_mode: "shared" (every network sees the whole batch) or "split"
        (the batch is split into ``networks_per_step`` per-network batches).
      seed: seed of the training noise (one :class:`NoiseSource`, saved and
        restored with the weights); ``None``: drawn from Python's ``random``.
      diversity_weight: weight (>= 0; 0: off) of a function-space diversity
        reward, :func:`~hyperkeras.losses.nontrue_class_diversity` of the
        step's networks on the batch (classification, at least two networks
        per step). With ``batch_mode="split"`` it is measured on a diversity
        slice: every network is also shown the first ``diversity_examples``
        images of the first network's batch (no task loss on them). Also a
        ``keras.optimizers.schedules.LearningRateSchedule``, evaluated at the
        optimizer's step count (e.g. ``CosineDecay`` to fade the term out
        with the learning rate).
      diversity_examples: size of that slice (positive; at most the
        per-network batch is used); only read with split batches and
        ``diversity_weight > 0``.
      outlier_diversity_weight: weight (>= 0; 0: off) of the networks'
        disagreement on pseudo-outliers made from each batch
        (:meth:`pseudo_outliers`), measured by
        :func:`~hyperkeras.losses.members_mutual_information` over all
        classes (classification, at least two networks per step; with
        ``batch_mode="split"`` every network sees the outliers made from
        the first network's batch).
      outlier_entropy_weight: weight (>= 0; 0: off) of outlier exposure on
        the same pseudo-outliers: the networks' mean predictive entropy
        there (:func:`~hyperkeras.losses.members_mean_entropy`, each network
        pushed towards "unsure"; classification, any ``networks_per_step``).
      outlier_kind: how :meth:`pseudo_outliers` makes them from a batch:
        "blend" (each image blended with the next) or "rotate" (each image
        turned a quarter, left or right: a negative augmentation, for square
        images whose classes have an upright orientation).
      prior_scale: scale (>= 0; 0: off) of a fixed random prior in weight
        space (a randomised prior, Osband et al. 2018, or the random starts
        of a deep ensemble): every generated kernel gets ``prior_scale`` times
        a fixed, untrained linear function of the network's noise, drawn so
        that the prior kernels are He-distributed (``N(0, 2 / fan_in)``)
        over the noise. Training cannot shrink it, only compensate where the
        data needs it, so networks keep differing in the directions the
        data leaves free. Saved with the weights.

    Subclasses set ``noise_dim`` (and ``noise_distribution``) and define
    ``codes(noise)``, one tensor ``[K, num_codes, code_dim]`` (the mixer's or
    extractor's output), ``generate_from_codes(codes)``, a list of ``(kernel,
    bias)`` pairs, and the training hooks ``objective`` and ``after_update``
    (:class:`~hyperkeras._members.OwnObjectiveModel`). Loss weights are
    constructor arguments (saved in ``get_config``).

    ``compile`` takes no ``loss`` or ``metrics`` (the models have their own
    objectives). ``fit`` reports ``task_loss``, ``accuracy``, the model's own
    metrics and ``disagreement``, ``evaluate`` the task loss and accuracy of
    the ``ensemble_size`` members (:class:`~hyperkeras._members.OwnObjectiveModel`).
    """

    noise_distribution = "normal"

    def __init__(self, target, task="classification", ensemble_size=10,
                 eval_seed=0, networks_per_step=32, batch_mode="shared", seed=None,
                 diversity_weight=0.0, outlier_diversity_weight=0.0,
                 outlier_entropy_weight=0.0, diversity_examples=16, prior_scale=0.0,
                 outlier_kind="blend", **kwargs):
        super().__init__(**kwargs)
        self.target = targets_lib.get(target)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if batch_mode not in ("shared", "split"):
            raise ValueError(f"batch_mode must be 'shared' or 'split', got {batch_mode!r}")
        self.task = task
        self.ensemble_size = check_positive_int("ensemble_size", ensemble_size)
        self.eval_seed = int(eval_seed)
        self.networks_per_step = check_positive_int("networks_per_step", networks_per_step)
        self.batch_mode = batch_mode
        # The custom op is opaque to XLA.
        self.jit_compile = False
        self.noise_source = NoiseSource(seed, name="training_noise")
        self.seed = seed
        self.diversity_weight = check_weight_or_schedule("diversity_weight", diversity_weight)
        self.diversity_examples = check_positive_int("diversity_examples", diversity_examples)
        self.outlier_diversity_weight = check_weight("outlier_diversity_weight",
                                                     outlier_diversity_weight)
        self.outlier_entropy_weight = check_weight("outlier_entropy_weight",
                                                   outlier_entropy_weight)
        if self.diversity_weight and not self.supports_diversity:
            raise ValueError("diversity_weight > 0 needs task='classification' "
                             "and networks_per_step >= 2, got "
                             f"{task!r}, {self.networks_per_step}")
        if self.outlier_diversity_weight and not self.supports_diversity:
            raise ValueError("outlier_diversity_weight > 0 needs task='classification' "
                             f"and networks_per_step >= 2, got {task!r}, "
                             f"{self.networks_per_step}")
        if self.outlier_entropy_weight and task != "classification":
            raise ValueError(f"outlier_entropy_weight > 0 needs task='classification', got {task!r}")
        self.outlier_kind = check_outlier_kind(outlier_kind, self.target.input_shape)
        self.prior_scale = check_weight("prior_scale", prior_scale)
        self.prior_bases = None

    def generate(self, noise, training=False):
        """Map ``[K, noise_dim]`` noise to a list of ``(kernel, bias)`` pairs."""
        return self.with_prior(self.generate_from_codes(self.codes(noise)), noise)

    def build_prior(self):
        """The prior's fixed bases, one ``[noise_dim, kernel size]`` per layer."""
        if self.prior_bases is not None or not self.prior_scale:
            return
        noise_var = 1.0 / 3.0 if self.noise_distribution == "uniform" else 1.0
        bases = []
        for i, info in enumerate(self.target.layers):
            std = float(np.sqrt(2.0 / info.fan_in / (self.noise_dim * noise_var)))
            seed = None if self.seed is None else int(self.seed) * 1009 + i
            bases.append(self.add_weight(
                shape=(self.noise_dim, int(np.prod(info.kernel_shape))),
                initializer=keras.initializers.RandomNormal(stddev=std, seed=seed),
                trainable=False, name=f"prior_basis_{info.name}"))
        self.prior_bases = bases

    def with_prior(self, params, noise):
        """``params`` plus ``prior_scale`` times the noise's prior kernels."""
        if not self.prior_scale:
            return params
        self.build_prior()
        noise = tf.convert_to_tensor(noise, tf.float32)
        out = []
        for (kernel, bias), basis in zip(params, self.prior_bases):
            prior = tf.reshape(tf.matmul(noise, basis), tf.shape(kernel))
            out.append((kernel + self.prior_scale * prior, bias))
        return out

    def build_generators(self):
        """Create the weights of every sub-layer (called by ``build``)."""
        self.generate(tf.zeros([1, self.noise_dim]))

    def build(self, input_shape=None):
        if not self.built:
            self.build_prior()
            self.build_generators()
            self.built = True

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (TF backend, under a distribution strategy) reduces the first
        # distributed batch as one nested structure to build the model
        # symbolically; with MultiWorkerMirroredStrategy and more than one
        # worker TF cannot reduce a structure ("Attempt to convert a value
        # (PerReplica ...) to a Tensor"). compile() builds these models and
        # their optimizers completely, so there is nothing left to build.
        optimizers = [getattr(self, "optimizer", None), getattr(self, "d_optimizer", None)]
        if not (self.built and all(o is None or o.built for o in optimizers)):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def training_noise(self):
        """``[networks_per_step, noise_dim]`` noise from the model's NoiseSource."""
        shape = [self.networks_per_step, self.noise_dim]
        if self.noise_distribution == "uniform":
            return self.noise_source.uniform(shape, -1.0, 1.0)
        return self.noise_source.normal(shape)

    def training_members(self):
        """The step's networks from fresh training noise; the state is their codes."""
        noise = self.training_noise()
        codes = self.codes(noise)
        return self.with_prior(self.generate_from_codes(codes), noise), codes

    def sample_noise(self, n, seed=None):
        n = check_positive_int("number of networks", n)
        if seed is None:
            seed = np.random.randint(0, 2**31 - 1)
        return stateless_noise(n, self.noise_dim, seed, self.noise_distribution)

    def sample(self, n, seed=None):
        """Draw ``n`` networks: a list of ``(kernel [n,...], bias [n,...])``.

        The same seed gives the same networks, and network i depends only on
        the seed and i, not on n.
        """
        return self.generate(self.sample_noise(n, seed), training=False)

    def member_params(self, n=None, seed=None):
        """``n`` networks drawn with ``seed``; defaults ``ensemble_size``, ``eval_seed``."""
        return self.sample(self.ensemble_size if n is None else n,
                           self.eval_seed if seed is None else seed)

    def export(self, filepath, format="tf_saved_model", ensemble_size=None, seed=None,
               verbose=True, **kwargs):
        """Write a SavedModel of the sampler that loads without hyperkeras.

        Its serving signature ``serve`` maps images ``[B, *input_shape]`` to
        ``probabilities`` (ensemble mean) and ``entropy`` (predictive entropy
        of the mean, nats) for classification, or ``mean`` and ``std`` for
        regression, using ``ensemble_size`` networks drawn with ``seed``
        (defaults: the model's ``ensemble_size`` and ``eval_seed``). The graph
        uses the pure-TF path, so no custom-op library is needed to load it.
        """
        if format != "tf_saved_model":
            raise ValueError(f"only format='tf_saved_model' is supported, got {format!r}")
        n = self.ensemble_size if ensemble_size is None else check_positive_int(
            "ensemble_size", ensemble_size)
        seed = self.eval_seed if seed is None else int(seed)
        self.build()

        def serve(x):
            with ops.force_path("fallback"):
                out = self.member_logits(x, n, seed)
            if self.task == "classification":
                probs = tf.reduce_mean(tf.nn.softmax(out, -1), 0)
                entropy = -tf.reduce_sum(probs * tf.math.log(tf.maximum(probs, 1e-12)), -1)
                return {"probabilities": probs, "entropy": entropy}
            return {"mean": tf.reduce_mean(out, 0), "std": tf.math.reduce_std(out, 0)}

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(
            "serve", serve,
            input_signature=[tf.TensorSpec([None, *self.target.input_shape], tf.float32)])
        archive.write_out(filepath, verbose=verbose)
        return filepath

    def get_config(self):
        return {"target": self.target.get_config(), "task": self.task,
                "ensemble_size": self.ensemble_size, "eval_seed": self.eval_seed,
                "networks_per_step": self.networks_per_step,
                "batch_mode": self.batch_mode, "seed": self.seed,
                "diversity_weight": weight_config(self.diversity_weight),
                "diversity_examples": self.diversity_examples,
                "outlier_diversity_weight": self.outlier_diversity_weight,
                "outlier_entropy_weight": self.outlier_entropy_weight,
                "prior_scale": self.prior_scale, "outlier_kind": self.outlier_kind,
                "name": self.name}
