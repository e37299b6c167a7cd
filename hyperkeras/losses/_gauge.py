"""Gauge fixing of the scaling and logits-bias symmetries (Deutsch et al., eq. 7-11).

A ReLU network is unchanged when a filter (its weights and bias) is multiplied by
``a > 0`` and the matching input channel of the next layer by ``1/a`` (ReLU,
leaky-ReLU and max-pooling commute with positive scales), and a classifier's
softmax is unchanged when the same constant is added to every logit bias.
Entropy measured on raw weights rewards these trivial directions; gauge fixing
picks one representative of every equivalence class:

* layers ``1..m-1``: every filter has ``sum(theta_{l,i}[k]^2) == n_{l,i}``, its
  number of entries (weights and bias), i.e. mean square 1;
* last layer ``m``: the logit biases sum (equivalently: average) to zero.

Two strategies: :func:`gauge_fix` is the transform S (eq. 11), and
:func:`gauge_penalty` the quadratic penalty G (eq. 8) used with a weight gamma.
"""

import math

import tensorflow as tf

# Floor on a filter's sum of squares. A filter below it (a dead or all-zero
# filter) is scaled as if its sum of squares were the floor: its gauge-fixed
# weights stay small and finite and so does the gradient. Filters above the
# floor (every filter of a working network) are transformed exactly. At 1e-12
# the largest scale is sqrt(n) * 1e6 and the largest intermediate gradient
# factor (d rsqrt / d sq at the floor) 0.5e18, far from float32 overflow.
_FLOOR = 1e-12


def _input_channel_scale(inv_scale, fan_in):
    """``[K, fan_in]`` multipliers of the next layer's fan-in entries.

    The next layer's fan-in index j reads input channel ``j % C`` in every
    layout here: conv kernels flatten ``(kh, kw, Cin)`` with Cin fastest, a
    Dense after a Conv flattens NHWC ((h*W + w)*C + c), and a Dense after a
    Dense has j == c.
    """
    c = inv_scale.shape[-1]
    if fan_in % c:
        raise ValueError(f"fan-in {fan_in} is not a multiple of the {c} channels "
                         "of the previous layer")
    return tf.tile(inv_scale, [1, fan_in // c])


def gauge_fix(target, params):
    """The transform S: the gauge-fixed representative of each of K networks.

    Args:
      target: the :class:`~hyperkeras.targets.TargetNetwork` of ``params``.
      params: list of ``(kernel [K,...], bias [K,...])`` pairs.

    Returns:
      The gauge-fixed parameters (same structure). The network function is
      unchanged, S is idempotent, every filter of layers ``1..m-1`` has sum of
      squares equal to its ``filter_size``, and the last layer's biases have
      mean zero. Differentiable with a finite gradient everywhere: a filter
      whose sum of squares is below ``1e-12`` (e.g. exactly zero) is scaled by
      ``sqrt(n / 1e-12)`` instead of being put on the gauge, and no gradient
      flows through its (floored) norm.
    """
    return target.from_filters(fix_filters(target, target.to_filters(params)))


def fix_filters(target, filters):
    """:func:`gauge_fix` of per-layer filter views (``target.to_filters``)."""
    filters = [tf.convert_to_tensor(f) for f in filters]
    layers = target.layers
    out = []
    carry = None  # [K, fan_in] multipliers from the previous layer's scaling
    for l, (info, f) in enumerate(zip(layers, filters)):
        if carry is not None:
            f = tf.concat([f[:, :, :-1] * carry[:, None, :], f[:, :, -1:]], -1)
        if l < len(layers) - 1:
            sq = tf.reduce_sum(tf.square(f), -1)                   # [K, F]
            # where(), not maximum() or + eps: the floored entries get no
            # gradient into sq, and rsqrt is only ever evaluated (and
            # differentiated) at values >= _FLOOR, so no inf * 0 = NaN.
            safe = tf.where(sq > _FLOOR, sq, _FLOOR * tf.ones_like(sq))
            scale = math.sqrt(info.filter_size) * tf.math.rsqrt(safe)  # [K, F]
            f = f * scale[:, :, None]
            carry = _input_channel_scale(1.0 / scale, layers[l + 1].fan_in)
        else:
            bias = f[:, :, -1]
            bias = bias - tf.reduce_mean(bias, -1, keepdims=True)
            f = tf.concat([f[:, :, :-1], bias[:, :, None]], -1)
        out.append(f)
    return out


def gauge_penalty(target, params):
    """G(theta) of eq. 8 for each of K networks, ``[K]``.

    ``sum_{l<m, i} (sum_k theta_{l,i}[k]^2 - n_{l,i})^2 + (sum_i theta_{m,i}[bias])^2``;
    zero exactly on gauge-fixed networks.
    """
    return filter_penalty(target, target.to_filters(params))


def filter_penalty(target, filters):
    """:func:`gauge_penalty` of per-layer filter views (``target.to_filters``)."""
    total = 0.0
    for info, f in zip(target.layers[:-1], filters[:-1]):
        sq = tf.reduce_sum(tf.square(f), -1)
        total += tf.reduce_sum(tf.square(sq - float(info.filter_size)), -1)
    total += tf.square(tf.reduce_sum(filters[-1][:, :, -1], -1))
    return total
