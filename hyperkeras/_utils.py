"""Private helpers of hyperkeras' layers, models and baselines (no hyperkeras
imports here; public names are re-exported by the public modules).
"""

import keras
import numpy as np
import tensorflow as tf


def check_positive_int(name, value):
    """``value`` as an int, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_weight(name, value, strict=False):
    """A loss weight as a float: ``>= 0`` (``> 0`` if ``strict``), or a ValueError."""
    if not (value > 0 if strict else value >= 0):
        raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {value!r}")
    return float(value)


def check_weight_or_schedule(name, value):
    """A loss weight: a float ``>= 0`` (:func:`check_weight`) or a
    ``keras.optimizers.schedules.LearningRateSchedule`` of the training step
    (also as its serialised dict, as ``get_config`` writes it)."""
    if isinstance(value, dict):
        value = keras.optimizers.schedules.deserialize(value)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number >= 0 or a "
                         f"keras.optimizers.schedules.LearningRateSchedule, got {value!r}")
    return check_weight(name, value)


def weight_config(value):
    """A weight from :func:`check_weight_or_schedule` as ``get_config`` stores it."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return keras.optimizers.schedules.serialize(value)
    return value


def weight_at(value, step):
    """The weight at training ``step``: the schedule's value, or the float."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return tf.cast(value(step), tf.float32)
    return value


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


def num_replicas():
    """Replicas of the current distribution strategy (losses are divided by it)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def num_examples(x):
    """float32 number of examples of a batch ``[B, ...]`` (metric weight)."""
    return tf.cast(tf.shape(x)[0], tf.float32)


def step_logs(metrics):
    """``{name: result}`` of a train/test step; ``[1]`` vectors under
    MultiWorkerMirroredStrategy over several workers, where Keras reduces
    step outputs with ``strategy.reduce("MEAN", v, axis=0)`` (fails on scalars).
    """
    strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and getattr(extended, "_in_multi_worker_mode", lambda: False)()):
        return {m.name: tf.reshape(m.result(), [1]) for m in metrics}
    return {m.name: m.result() for m in metrics}


def reject_loss_and_metrics(model, kwargs, objective, reports=None):
    """``kwargs`` of ``compile`` without ``loss``/metrics keys, or a ValueError
    naming the model, the rejected arguments, its objective and its metrics."""
    keys = ("loss", "metrics", "weighted_metrics", "loss_weights")
    given = [k for k in keys if kwargs.get(k) is not None]
    if given:
        reports = reports or ", ".join(m.name for m in model.metrics)
        raise ValueError(
            f"{type(model).__name__}.compile() does not accept "
            f"{', '.join(given)}: the model trains with its own objective "
            f"({objective}) and reports its own metrics ({reports}).")
    return {k: v for k, v in kwargs.items() if k not in keys}
