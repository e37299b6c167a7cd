"""Deep ensemble ("random start"): independently initialised networks."""

import math

import keras
import numpy as np
import tensorflow as tf

from hyperkeras import targets as targets_lib
from hyperkeras.baselines._common import MemberPredictionMixin
from hyperkeras.baselines._common import check_positive_int
from hyperkeras.models._base import InputCheckMixin
from hyperkeras.models._base import num_examples
from hyperkeras.models._base import reject_loss_and_metrics
from hyperkeras.models._base import step_logs


@keras.saving.register_keras_serializable(package="hyperkeras")
class DeepEnsemble(MemberPredictionMixin, InputCheckMixin, keras.Model):
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
    """

    def __init__(self, target, n_members=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.target = targets_lib.get(target)
        self.n_members = check_positive_int("n_members", n_members)
        self.init_seed = seed
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc_tracker = keras.metrics.Mean(name="accuracy")
        rng = np.random.default_rng(seed)
        self.kernels, self.biases = [], []
        for info in self.target.layers:
            ks = info.kernel_shape
            receptive = math.prod(ks[:-2]) if len(ks) > 2 else 1
            limit = math.sqrt(6.0 / (receptive * ks[-2] + receptive * ks[-1]))
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
            raise ValueError(f"the ensemble has {self.n_members} members; cannot "
                             f"draw {n}")
        if seed is None:
            return np.arange(n)
        return np.random.default_rng(seed).permutation(self.n_members)[:n]

    def sample(self, n=None, seed=None):
        """Weights of ``n`` members, a list of ``(kernel [n,...], bias [n,...])``."""
        idx = self._indices(n, seed)
        if len(idx) == self.n_members and np.all(idx == np.arange(self.n_members)):
            return [(k, b) for k, b in zip(self.kernels, self.biases)]
        idx = tf.constant(idx)
        return [(tf.gather(k, idx), tf.gather(b, idx))
                for k, b in zip(self.kernels, self.biases)]

    def call(self, x, training=False):
        """Ensemble mean probabilities ``[B, classes]``."""
        x = self.target.ensure_batch_input(x)
        return tf.reduce_mean(tf.nn.softmax(self.member_logits(x), -1), 0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.target.output_dim)

    def compile(self, optimizer="adam", **kwargs):
        """Only the optimizer (and Keras options): no ``loss`` or ``metrics``."""
        kwargs = reject_loss_and_metrics(
            self, kwargs, "the sum of the members' softmax cross-entropies")
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return [self.loss_tracker, self.acc_tracker]

    def _member_losses(self, x, y):
        logits = self.member_logits(x)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        yk = tf.broadcast_to(y[None], tf.shape(logits)[:2])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yk, logits=logits)
        loss = tf.reduce_sum(tf.reduce_mean(ce, 1))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                              yk), tf.float32))
        return loss, acc

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            loss, acc = self._member_losses(x, y)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self._update_metrics(loss, acc, num_examples(x))
        return step_logs(self.metrics)

    def test_step(self, data):
        loss, acc = self._member_losses(data[0], data[1])
        self._update_metrics(loss, acc, num_examples(data[0]))
        return step_logs(self.metrics)

    def _update_metrics(self, loss, acc, weight):
        # weighted by the batch's examples: epoch values are means over examples
        self.loss_tracker.update_state(loss / self.n_members, sample_weight=weight)
        self.acc_tracker.update_state(acc, sample_weight=weight)

    def member_model(self, index):
        """An ordinary ``keras.Sequential`` holding member ``index``."""
        return self.target.keras_model(self.sample(), index)

    def get_config(self):
        return {"target": self.target.get_config(), "n_members": self.n_members,
                "seed": self.init_seed, "name": self.name}
