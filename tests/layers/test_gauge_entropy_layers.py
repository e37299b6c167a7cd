import keras
import numpy as np
import pytest
import tensorflow as tf

from hyperkeras.layers import Extractor, FilterGenerator


def test_extractor_shapes_and_paper_size():
    e = Extractor(32 + 16 + 8 + 1, 15, (300, 300))
    out = e(tf.zeros([3, 300]))
    assert out.shape == (3, 57, 15)
    assert e.net.layers[-1].units == 855
    assert e.compute_output_shape((3, 300)) == (3, 57, 15)


def test_filter_generator_shapes():
    g = FilterGenerator(26, 1, (40, 40), scale=0.2)
    assert g(tf.zeros([2, 32, 15])).shape == (2, 32, 26)
    last = FilterGenerator(9, 10, (60, 60))
    out = last(tf.random.normal([2, 1, 15]))
    assert out.shape == (2, 10, 9)
    assert last.net.layers[-1].units == 90
    assert last.compute_output_shape((2, 1, 15)) == (2, 10, 9)


def test_filter_generator_is_per_code():
    """Each filter depends only on its own code (the MLP is shared)."""
    g = FilterGenerator(5, 1, (8,))
    codes = tf.random.normal([2, 4, 3])
    full = g(codes).numpy()
    np.testing.assert_allclose(g(codes[:, 1:2]).numpy()[:, 0], full[:, 1], rtol=1e-6, atol=1e-6)


def test_scale_multiplies_outputs():
    g = FilterGenerator(5, 1, (8,), scale=1.0)
    codes = tf.random.normal([1, 2, 3])
    a = g(codes).numpy()
    g2 = FilterGenerator.from_config({**g.get_config(), "scale": 0.5})
    g2(codes)
    g2.set_weights(g.get_weights())
    np.testing.assert_allclose(g2(codes).numpy(), 0.5 * a, rtol=1e-6)


@pytest.mark.parametrize("cls,args", [(Extractor, (0, 15)), (FilterGenerator, (0,)),
                                      (FilterGenerator, (5, 0))])
def test_bad_arguments(cls, args):
    with pytest.raises(ValueError):
        cls(*args)


def test_config_round_trip():
    e = Extractor(7, 4, (6,), alpha=0.1, use_bias=False, name="e")
    e2 = keras.layers.deserialize(keras.layers.serialize(e))
    assert isinstance(e2, Extractor) and e2.get_config()["num_codes"] == 7
    assert e2.use_bias is False and e2.alpha == 0.1
