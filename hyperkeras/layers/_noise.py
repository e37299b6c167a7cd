"""The seeded source of a model's training noise, saved with its weights."""

import numbers
import random
import warnings

import keras
import tensorflow as tf


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
