"""Deutsch et al.'s hypernetwork layers: extractor E and per-filter generators W_l.

The extractor maps noise z to one code per filter of every target layer but the
last, plus one code for the whole last layer. Each weight generator W_l is an
MLP shared by all filters of layer l: it maps one code to one filter (weights
then bias). The last layer's generator maps its single code to the whole layer.

No batch normalisation: each network is computed from its own noise row only,
so a sampled network never depends on the others drawn with it.
"""

import keras
import tensorflow as tf

from hyperkeras._utils import check_positive_int
from hyperkeras._utils import check_units
from hyperkeras._utils import mlp


@keras.saving.register_keras_serializable(package="hyperkeras")
class Extractor(keras.layers.Layer):
    """E: noise ``[K, noise_dim]`` -> codes ``[K, num_codes, code_dim]``.

    An MLP with leaky-ReLU hidden layers and a linear output of size
    ``num_codes * code_dim`` (paper: 300 -> 300 -> 300 -> 855 = 15 * 57).
    """

    def __init__(self, num_codes, code_dim=15, hidden_units=(300, 300), alpha=0.05,
                 use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_codes = check_positive_int("num_codes", num_codes)
        self.code_dim = check_positive_int("code_dim", code_dim)
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.alpha = float(alpha)
        self.use_bias = bool(use_bias)
        self.net = mlp(self.hidden_units, "leaky_relu", self.alpha,
                       name=f"{self.name}_mlp", use_bias=self.use_bias,
                       output_units=self.num_codes * self.code_dim,
                       output_kernel_initializer="he_normal")

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, z):
        return tf.reshape(self.net(z), [-1, self.num_codes, self.code_dim])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_codes, self.code_dim)

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes,
                "code_dim": self.code_dim, "hidden_units": list(self.hidden_units),
                "alpha": self.alpha, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="hyperkeras")
class FilterGenerator(keras.layers.Layer):
    """W_l: codes ``[K, C, code_dim]`` -> filters ``[K, C * filters_per_code, filter_size]``.

    One MLP shared by every code of the layer. ``filters_per_code`` is 1 for a
    per-filter generator and the number of filters for the last layer, whose
    single code gives the whole layer. Outputs are multiplied by ``scale``
    (the model passes ``1/sqrt(fan_in)``, He-style, so training starts with
    well-scaled target weights).
    """

    def __init__(self, filter_size, filters_per_code=1, hidden_units=(100, 100),
                 alpha=0.05, scale=1.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filter_size = check_positive_int("filter_size", filter_size)
        self.filters_per_code = check_positive_int("filters_per_code", filters_per_code)
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.alpha = float(alpha)
        self.scale = float(scale)
        self.use_bias = bool(use_bias)
        self.net = mlp(self.hidden_units, "leaky_relu", self.alpha,
                       name=f"{self.name}_mlp", use_bias=self.use_bias,
                       output_units=self.filters_per_code * self.filter_size,
                       output_kernel_initializer="he_normal")

    def build(self, input_shape):
        self.net.build((None, input_shape[-1]))

    def call(self, codes):
        shape = tf.shape(codes)
        flat = tf.reshape(codes, [-1, codes.shape[-1]])
        out = self.net(flat) * self.scale
        return tf.reshape(out, [shape[0], shape[1] * self.filters_per_code,
                                self.filter_size])

    def compute_output_shape(self, input_shape):
        c = None if input_shape[1] is None else input_shape[1] * self.filters_per_code
        return (input_shape[0], c, self.filter_size)

    def get_config(self):
        return {**super().get_config(), "filter_size": self.filter_size,
                "filters_per_code": self.filters_per_code,
                "hidden_units": list(self.hidden_units), "alpha": self.alpha,
                "scale": self.scale, "use_bias": self.use_bias}
