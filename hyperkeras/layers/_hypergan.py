"""HyperGAN's layers: mixer Q, per-layer generators, latent discriminator."""

import math

import keras
import tensorflow as tf

from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_units
from hyperkeras._utils import mlp


@keras.saving.register_keras_serializable(package="hyperkeras")
class Mixer(keras.layers.Layer):
    """Q: noise ``s ~ N(0, I)`` to ``num_codes`` latent codes of size ``code_dim``.

    Output ``[K, num_codes, code_dim]``: one code per target layer, mixed so the
    layers of one network are generated coherently.
    """

    def __init__(self, num_codes, code_dim, hidden_units=(512,), activation="relu",
                 **kwargs):
        super().__init__(**kwargs)
        self.num_codes = check_positive_int("num_codes", num_codes)
        self.code_dim = check_positive_int("code_dim", code_dim)
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.activation = activation
        self.net = mlp(self.hidden_units, activation, 0.2, name="mixer_mlp",
                       output_units=self.num_codes * self.code_dim)

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, s):
        q = self.net(s)
        return tf.reshape(q, [-1, self.num_codes, self.code_dim])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_codes, self.code_dim)

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes,
                "code_dim": self.code_dim, "hidden_units": list(self.hidden_units),
                "activation": self.activation}


@keras.saving.register_keras_serializable(package="hyperkeras")
class LayerGenerator(keras.layers.Layer):
    """One target layer's generator: a code to that layer's kernel and bias.

    The MLP's outputs are scaled by ``1/sqrt(fan_in)`` (He-style), so an
    output of order one is a well-scaled weight for the target layer.
    """

    def __init__(self, kernel_shape, bias_shape, hidden_units=(512, 512),
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.bias_shape = tuple(int(d) for d in bias_shape)
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.activation = activation
        self.kernel_size = math.prod(self.kernel_shape)
        self.bias_size = self.bias_shape[0]
        fan_in = self.kernel_size // self.kernel_shape[-1]
        self.scale = fan_in ** -0.5
        self.net = mlp(self.hidden_units, activation, 0.2, name=f"{self.name}_mlp",
                       output_units=self.kernel_size + self.bias_size)

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, code):
        out = self.net(code) * self.scale
        kernel = tf.reshape(out[:, :self.kernel_size], [-1, *self.kernel_shape])
        return kernel, out[:, self.kernel_size:]

    def compute_output_shape(self, input_shape):
        return ((input_shape[0], *self.kernel_shape), (input_shape[0], *self.bias_shape))

    def get_config(self):
        return {**super().get_config(), "kernel_shape": list(self.kernel_shape),
                "bias_shape": list(self.bias_shape),
                "hidden_units": list(self.hidden_units), "activation": self.activation}


@keras.saving.register_keras_serializable(package="hyperkeras")
class LatentDiscriminator(keras.layers.Layer):
    """D: tells mixer codes from samples of the Gaussian prior; outputs a logit."""

    def __init__(self, hidden_units=(512, 512), activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.activation = activation
        self.net = mlp(self.hidden_units, activation, 0.2, name="discriminator_mlp",
                       output_units=1)

    def build(self, input_shape):
        self.net.build((input_shape[0], input_shape[-2] * input_shape[-1])
                       if len(input_shape) == 3 else input_shape)

    def call(self, codes):
        if codes.shape.rank == 3:
            codes = tf.reshape(codes, [-1, codes.shape[1] * codes.shape[2]])
        return self.net(codes)[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "activation": self.activation}
