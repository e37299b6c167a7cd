"""HyperGAN layers: output shapes, scaling and config round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hyperkeras.layers import LatentDiscriminator
from hyperkeras.layers import LayerGenerator
from hyperkeras.layers import Mixer


def test_mixer_shapes_and_config():
    mixer = Mixer(3, 5, hidden_units=(7,))
    out = mixer(tf.random.normal([4, 6]))
    assert out.shape == (4, 3, 5)
    clone = Mixer.from_config(mixer.get_config())
    assert clone(tf.zeros([1, 6])).shape == (1, 3, 5)
    with pytest.raises(ValueError, match="num_codes"):
        Mixer(0, 5)


def test_layer_generator_shapes_and_fan_in_scale():
    gen = LayerGenerator((3, 3, 2, 4), (4,), hidden_units=(8,))
    kernel, bias = gen(tf.random.normal([5, 6]))
    assert kernel.shape == (5, 3, 3, 2, 4) and bias.shape == (5, 4)
    assert gen.scale == pytest.approx(1 / np.sqrt(18))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert restored.kernel_shape == (3, 3, 2, 4)
    with pytest.raises(ValueError, match="hidden_units"):
        LayerGenerator((2, 2), (2,), hidden_units=(0,))


def test_discriminator_flattens_codes():
    d = LatentDiscriminator(hidden_units=(8,))
    assert d(tf.random.normal([4, 3, 5])).shape == (4,)
