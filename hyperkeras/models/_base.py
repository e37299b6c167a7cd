"""What every hyperkeras model shares: sampling, ensembles, persistence, export.

A hypernetwork model maps noise to all the weights of a target network
(:class:`hyperkeras.targets.TargetNetwork`). Subclasses define the noise
(``noise_dim``, ``noise_distribution``) and ``generate(noise, training)``;
this base class turns that into sampling with seeds, ensemble prediction,
``.keras`` round trips and a SavedModel that needs no hyperkeras to load.
"""

import math
import numbers
import random
import warnings

import keras
import numpy as np
import tensorflow as tf

from hyperkeras import ops
from hyperkeras import targets as targets_lib

TASKS = ("classification", "regression")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def stateless_noise(n, dim, seed, distribution="normal", low=-1.0, high=1.0):
    """``[n, dim]`` noise where row i depends only on ``(seed, i)``.

    So a network drawn with a seed does not depend on how many others were
    drawn with it.
    """
    seeds = tf.stack([tf.fill([n], tf.cast(seed, tf.int64)),
                      tf.range(n, dtype=tf.int64)], axis=1)

    def row(s):
        if distribution == "uniform":
            return tf.random.stateless_uniform([dim], seed=s, minval=low, maxval=high)
        return tf.random.stateless_normal([dim], seed=s)

    return tf.map_fn(row, seeds, fn_output_signature=tf.float32)


@keras.saving.register_keras_serializable(package="hyperkeras")
class NoiseSource(keras.layers.Layer):
    """The one seeded generator of a model's training noise.

    Its state, a non-trainable int64 weight ``[seed, counter]``, is one of the
    model's variables, so ``.keras`` files, ``save_weights`` (and with it
    ``keras.callbacks.BackupAndRestore``) and ``tf.train.Checkpoint`` save and
    restore it: training resumed from a checkpoint continues the noise
    sequence instead of replaying the first steps' noise. Every draw seeds a
    stateless op with the current state and then increments the counter.

    Under a distribution strategy all replicas draw the same noise (they train
    the same sampled networks on their shards of the batch) and the counter
    advances once per draw (``aggregation="only_first_replica"``).

    Args:
      seed: int seed; ``None`` draws one from Python's ``random`` (which
        ``keras.utils.set_random_seed`` seeds).
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is None:
            seed = random.randint(1, 2**31 - 1)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.seed = int(seed)
        initial = [self.seed, 0]
        self.state = self.add_weight(
            shape=(2,), dtype="int64", trainable=False, name="state",
            initializer=lambda shape, dtype=None: tf.constant(initial, tf.int64),
            aggregation="only_first_replica")
        self.built = True

    def next_seed(self):
        """The current ``[2]`` int64 state; advances the counter by one."""
        seed = tf.identity(self.state.value)
        self.state.assign_add(tf.constant([0, 1], tf.int64))
        return seed

    def normal(self, shape):
        return tf.random.stateless_normal(shape, seed=self.next_seed())

    def uniform(self, shape, minval=0.0, maxval=1.0):
        return tf.random.stateless_uniform(shape, seed=self.next_seed(), minval=minval,
                                           maxval=maxval)

    def call(self, inputs=None):
        raise NotImplementedError("NoiseSource is not called; use normal() or uniform()")

    def load_own_variables(self, store):
        if len(store.keys()) == 0:
            # a file written before the noise state was saved
            warnings.warn("the saved model holds no training-noise state; the "
                          f"noise restarts from the seed {self.seed}", stacklevel=2)
            return
        super().load_own_variables(store)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def reject_loss_and_metrics(model, kwargs, objective, reports=None):
    """``compile`` of a model with its own objective: no ``loss`` / metrics.

    Returns ``kwargs`` without those keys; raises a ``ValueError`` naming the
    model, the rejected arguments, its objective and what it reports.
    """
    given = [k for k in ("loss", "metrics", "weighted_metrics", "loss_weights")
             if kwargs.get(k) is not None]
    if given:
        reports = reports or ", ".join(m.name for m in model.metrics)
        raise ValueError(
            f"{type(model).__name__}.compile() does not accept "
            f"{', '.join(given)}: the model trains with its own objective "
            f"({objective}) and reports its own metrics ({reports}).")
    for k in ("loss", "metrics", "weighted_metrics", "loss_weights"):
        kwargs.pop(k, None)
    return kwargs


def _first_leaf_shape(x):
    """Static shape of the inputs in ``x`` (array, tensor, dataset), or None."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        while isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]
        return getattr(spec, "shape", None)
    if isinstance(x, (tuple, list)) or isinstance(x, dict):
        return None
    return getattr(x, "shape", None)


class InputCheckMixin:
    """Check the input shape before Keras traces ``predict``/``evaluate``/``fit``.

    Keras traces these with relaxed shapes after the first call, so inside
    ``call`` a wrongly shaped second input may have unknown dimensions (or
    rank) and fail deep in the graph; checking eagerly gives the target's
    clear shape message every time.
    """

    def _check_keras_input(self, x):
        shape = _first_leaf_shape(x)
        if shape is None:
            return
        if isinstance(shape, tf.TensorShape) and shape.rank is None:
            return
        self.target.check_batch_shape(shape)

    def predict(self, x, *args, **kwargs):
        self._check_keras_input(x)
        return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_keras_input(x)
        return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._check_keras_input(x)
        return super().fit(x, *args, **kwargs)


def _multi_worker():
    strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and bool(getattr(extended, "_in_multi_worker_mode", lambda: False)()))


def step_logs(metrics):
    """``{name: result}`` of a train/test step.

    With MultiWorkerMirroredStrategy over several workers Keras reduces step
    outputs with ``strategy.reduce("MEAN", v, axis=0)``, which fails on
    scalars; there the results are returned as ``[1]`` vectors (reduced to
    the mean over replicas, a scalar).
    """
    if _multi_worker():
        return {m.name: tf.reshape(m.result(), [1]) for m in metrics}
    return {m.name: m.result() for m in metrics}


def num_examples(x):
    """float32 number of examples of a batch ``[B, ...]`` (metric weight)."""
    return tf.cast(tf.shape(x)[0], tf.float32)


class HyperModel(InputCheckMixin, keras.Model):
    """Base class of hypernetworks that generate a whole target network.

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

    ``compile`` takes no ``loss`` or ``metrics`` (the models have their own
    objectives); ``evaluate`` reports the task loss and accuracy of the
    ``ensemble_size`` members averaged over examples.
    """

    noise_distribution = "normal"

    def __init__(self, target, task="classification", ensemble_size=10,
                 eval_seed=0, networks_per_step=32, batch_mode="shared", seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.target = targets_lib.get(target)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if batch_mode not in ("shared", "split"):
            raise ValueError(f"batch_mode must be 'shared' or 'split', got {batch_mode!r}")
        self.task = task
        self.ensemble_size = _check_positive_int("ensemble_size", ensemble_size)
        self.eval_seed = int(eval_seed)
        self.networks_per_step = _check_positive_int("networks_per_step", networks_per_step)
        self.batch_mode = batch_mode
        # The custom op is opaque to XLA.
        self.jit_compile = False
        self.noise_source = NoiseSource(seed, name="training_noise")
        self.seed = seed
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def task_metrics(self):
        if self.task == "classification":
            return [self.task_loss_tracker, self.accuracy_tracker]
        return [self.task_loss_tracker]

    @property
    def metrics(self):
        return self.task_metrics()

    def test_step(self, data):
        """Task loss and accuracy of the ``ensemble_size`` members on a batch."""
        x, y = data[0], data[1]
        outputs = self.member_logits(x)
        task_loss, acc = self.task_loss(outputs, y, shared=True)
        self.update_task_metrics(task_loss, acc, num_examples(x))
        return step_logs(self.task_metrics())

    def update_task_metrics(self, task_loss, acc, weight):
        """Batch means weighted by the batch's examples: a short last batch
        counts for its size, so epoch values are means over examples."""
        self.task_loss_tracker.update_state(task_loss, sample_weight=weight)
        if acc is not None:
            self.accuracy_tracker.update_state(acc, sample_weight=weight)

    # ------------------------------------------------------------- subclass API
    @property
    def noise_dim(self):
        raise NotImplementedError

    def generate(self, noise, training=False):
        """Map ``[K, noise_dim]`` noise to a list of ``(kernel, bias)`` pairs."""
        raise NotImplementedError

    def build_generators(self):
        """Create the weights of every sub-layer (called by ``build``)."""
        self.generate(tf.zeros([1, self.noise_dim]))

    def build(self, input_shape=None):
        if self.built:
            return
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
        if self.built and all(o is None or o.built for o in optimizers):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ----------------------------------------------------------------- sampling
    def sample_noise(self, n, seed=None):
        n = _check_positive_int("number of networks", n)
        if seed is None:
            seed = np.random.randint(0, 2**31 - 1)
        return stateless_noise(n, self.noise_dim, seed, self.noise_distribution)

    def sample(self, n, seed=None):
        """Draw ``n`` networks: a list of ``(kernel [n,...], bias [n,...])``.

        The same seed gives the same networks, and network i depends only on
        the seed and i, not on n.
        """
        return self.generate(self.sample_noise(n, seed), training=False)

    def sample_flat(self, n, seed=None):
        """``[n, num_params]`` weight vectors of ``n`` sampled networks."""
        return self.target.flatten(self.sample(n, seed))

    # ---------------------------------------------------------------- ensembles
    def member_logits(self, x, n=None, seed=None, params=None):
        """Outputs (logits) of each member: ``[n, B, outputs]``.

        ``params`` (from :meth:`sample`) fixes the members; otherwise ``n``
        networks are drawn with ``seed`` (default: ``ensemble_size`` networks
        with ``eval_seed``). Differentiable with respect to ``x``.
        """
        if params is None:
            n = self.ensemble_size if n is None else n
            seed = self.eval_seed if seed is None else seed
            params = self.sample(n, seed)
        return self.target.forward(params, x)

    def member_probabilities(self, x, n=None, seed=None, params=None):
        """Softmax probabilities of each member, ``[n, B, classes]``."""
        return tf.nn.softmax(self.member_logits(x, n, seed, params), axis=-1)

    def predict_members(self, x, n=None, seed=None, batch_size=500, probabilities=True):
        """Numpy ``[n, N, classes]`` member outputs over a large array, batched."""
        n = self.ensemble_size if n is None else n
        seed = self.eval_seed if seed is None else seed
        batch_size = _check_positive_int("batch_size", batch_size)
        params = self.sample(n, seed)
        fn = self.member_probabilities if probabilities and self.task == "classification" \
            else self.member_logits
        # no examples: one empty batch, so the result is [n, 0, outputs]
        outs = [fn(x[i:i + batch_size], params=params).numpy()
                for i in range(0, max(len(x), 1), batch_size)]
        return np.concatenate(outs, axis=1)

    def call(self, x, training=False):
        """Ensemble mean probabilities (classification) or mean output."""
        x = self.target.ensure_batch_input(x)
        out = self.member_logits(x)
        if self.task == "classification":
            out = tf.nn.softmax(out, axis=-1)
        return tf.reduce_mean(out, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.target.output_dim)

    # ------------------------------------------------------------- task losses
    def split_batch(self, x, y):
        """Per-network batches ``[K, b, ...]`` in "split" mode, else as is."""
        if self.batch_mode == "shared":
            return x, y
        k = self.networks_per_step
        b = tf.shape(x)[0] // k
        tf.debugging.assert_equal(
            tf.shape(x)[0] % k, 0,
            message=f"batch_mode='split' needs a batch size divisible by "
                    f"networks_per_step={k}")
        x = tf.reshape(x[:b * k], tf.concat([[k, b], tf.shape(x)[1:]], 0))
        y = tf.reshape(y[:b * k], tf.concat([[k, b], tf.shape(y)[1:]], 0))
        return x, y

    def task_loss(self, outputs, y, shared=None):
        """Mean task loss and accuracy (None for regression) of ``[K, B, ...]`` outputs.

        ``y`` is ``[B]`` (or ``[B, 1]``) in "shared" mode and ``[K, B]`` in "split".
        """
        shared = self.batch_mode == "shared" if shared is None else shared
        label_rank = 1 if shared else 2
        if y.shape.rank == label_rank + 1 and y.shape[-1] == 1:
            y = tf.squeeze(y, -1)
        if y.shape.rank != label_rank:
            raise ValueError(f"labels must have rank {label_rank} "
                             f"({'shared' if shared else 'per-network'} batches), "
                             f"got shape {y.shape}")
        if shared:
            y = tf.broadcast_to(y[None], tf.concat([tf.shape(outputs)[:1], tf.shape(y)], 0))
        if self.task == "classification":
            y = tf.cast(y, tf.int32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=outputs))
            pred = tf.argmax(outputs, -1, output_type=tf.int32)
            acc = tf.reduce_mean(tf.cast(tf.equal(pred, y), tf.float32))
            return loss, acc
        loss = tf.reduce_mean(tf.square(outputs - tf.cast(y, tf.float32)[..., None]))
        return loss, None

    # -------------------------------------------------------------- SavedModel
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
        n = self.ensemble_size if ensemble_size is None else _check_positive_int(
            "ensemble_size", ensemble_size)
        seed = self.eval_seed if seed is None else int(seed)
        if not self.built:
            self.build()
        model = self

        def serve(x):
            with ops.force_path("fallback"):
                out = model.member_logits(x, n, seed)
            if model.task == "classification":
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

    # ------------------------------------------------------------------ config
    def get_compile_config(self):
        """What ``compile`` was given, so ``.keras`` loading can compile again."""
        if not self.compiled:
            return None
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}

    def compile_from_config(self, config):
        kwargs = {k: keras.saving.deserialize_keras_object(v)
                  if isinstance(v, dict) and "class_name" in v else v
                  for k, v in config.items()}
        self.compile(**kwargs)

    def get_config(self):
        return {
            "target": self.target.get_config(),
            "task": self.task,
            "ensemble_size": self.ensemble_size,
            "eval_seed": self.eval_seed,
            "networks_per_step": self.networks_per_step,
            "batch_mode": self.batch_mode,
            "seed": self.seed,
            "name": self.name,
        }


def adam_with_decay(learning_rate, decay_rate=None):
    """Adam whose learning rate decays by ``decay_rate`` every step."""
    if decay_rate is not None and decay_rate != 1.0:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=1, decay_rate=decay_rate)
    return keras.optimizers.Adam(learning_rate)


def check_units(name, units):
    """Hidden-layer sizes as a tuple of positive ints, or a ValueError naming ``name``."""
    units = tuple(int(u) for u in units)
    if any(u < 1 for u in units):
        raise ValueError(f"{name} must be positive, got {units}")
    return units


def mlp(units, activation, alpha, name, use_bias=True, output_units=None,
        output_kernel_initializer="glorot_uniform"):
    """A small keras.Sequential MLP (hidden ``units``, optional linear output)."""
    layers = []
    for i, u in enumerate(units):
        layers.append(keras.layers.Dense(u, use_bias=use_bias, name=f"{name}_dense{i}"))
        if activation == "leaky_relu":
            layers.append(keras.layers.LeakyReLU(negative_slope=alpha, name=f"{name}_act{i}"))
        else:
            layers.append(keras.layers.Activation(activation, name=f"{name}_act{i}"))
    if output_units is not None:
        layers.append(keras.layers.Dense(output_units, use_bias=use_bias,
                                         kernel_initializer=output_kernel_initializer,
                                         name=f"{name}_out"))
    return keras.Sequential(layers, name=name)


def fan_in_scale(info):
    """He-style scale 1/sqrt(fan_in) for generated weights of a target layer."""
    return 1.0 / math.sqrt(info.fan_in)
