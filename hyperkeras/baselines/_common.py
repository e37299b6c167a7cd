"""The HyperModel-like prediction interface shared by the baselines."""

import keras
import numpy as np
import tensorflow as tf


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class MemberPredictionMixin:
    """``member_probabilities`` and ``predict_members`` on top of
    ``member_logits(x, n, seed, params)`` and ``sample(n, seed)``."""

    task = "classification"

    def default_members(self):
        raise NotImplementedError

    def member_logits(self, x, n=None, seed=None, params=None):
        """Logits of each member, ``[n, B, classes]``, differentiable w.r.t. ``x``."""
        if params is None:
            params = self.sample(n, seed)
        return self.target.forward(params, x)

    def member_probabilities(self, x, n=None, seed=None, params=None):
        """Softmax probabilities of each member, ``[n, B, classes]``."""
        return tf.nn.softmax(self.member_logits(x, n, seed, params), axis=-1)

    def sample_flat(self, n=None, seed=None):
        return self.target.flatten(self.sample(n, seed))

    def predict_members(self, x, n=None, seed=None, batch_size=500, probabilities=True):
        """Numpy ``[n, N, classes]`` member outputs over a large array, batched.

        No examples (N = 0) give an empty ``[n, 0, classes]`` array.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        params = self.sample(n, seed)
        fn = self.member_probabilities if probabilities else self.member_logits
        outs = [keras.ops.convert_to_numpy(fn(x[i:i + batch_size], params=params))
                for i in range(0, max(len(x), 1), batch_size)]
        return np.concatenate(outs, axis=1)

    # .keras files: compile again with the saved optimizer (compile is custom)
    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(optimizer=keras.saving.deserialize_keras_object(config["optimizer"]))
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
