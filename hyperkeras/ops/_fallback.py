"""Pure-TensorFlow batched generated-weight convolution (the fallback path).

Every sampled network ``k`` has its own filters ``w[k]``; one call computes

    y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k]))

Formulation (chosen by measurement, see ``benchmarks/fallback_formulations.py``):

* shared input ``x[B,H,W,C]``: one wide convolution with the K filter banks
  concatenated along the output channels (``[kh,kw,C,K*O]``); no K copies of x.
* per-network input ``x[K,B,H,W,C]``: one grouped convolution with K groups,
  the K images of a position stacked along channels.
* few input channels (``Cin <= 2``, e.g. a first layer on grey images) and a
  static K: K separate convolutions, because TF's backward pass of a wide or
  grouped convolution with one input channel per group measured 2.5-4x slower
  than K plain ones (training step, K = 32).
"""

import tensorflow as tf

ACTIVATIONS = ("none", "relu", "leaky_relu")
PADDINGS = ("SAME", "VALID")
LOOP_MAX_CIN = 2  # at most this many input channels: one conv per network


def apply_activation(y, activation, alpha):
    if activation == "none":
        return y
    if activation == "relu":
        return tf.nn.relu(y)
    if activation == "leaky_relu":
        return tf.nn.leaky_relu(y, alpha=alpha)
    raise ValueError(
        f"Unknown activation {activation!r}; expected one of {ACTIVATIONS}.")


def batched_conv2d_fallback(x, w, bias=None, padding="SAME", activation="none",
                            alpha=0.2, pool=False, pool_padding="VALID"):
    """Pure-TF batched convolution. Arguments are already validated."""
    kh, kw, cin, cout = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    if cin <= LOOP_MAX_CIN and w.shape[0] is not None:
        return batched_conv2d_loop(x, w, bias, padding, activation, alpha, pool,
                                   pool_padding)
    k = tf.shape(w)[0]
    # [K,kh,kw,C,O] -> [kh,kw,C,K,O] -> [kh,kw,C,K*O]
    wide = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]), [kh, kw, cin, -1])
    if x.shape.rank == 4:
        y = tf.nn.conv2d(x, wide, strides=1, padding=padding)  # [B,H',W',K*O]
    else:
        # [K,B,H,W,C] -> [B,H,W,K,C] -> [B,H,W,K*C]; grouped conv with K groups.
        xs = tf.shape(x)
        xt = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]),
                        [xs[1], xs[2], xs[3], k * cin])
        y = tf.nn.conv2d(xt, wide, strides=1, padding=padding)
    if bias is not None:
        y = y + tf.reshape(bias, [-1])
    y = apply_activation(y, activation, alpha)
    if pool:
        y = tf.nn.max_pool2d(y, ksize=2, strides=2, padding=pool_padding)
    ys = tf.shape(y)
    y = tf.reshape(y, [ys[0], ys[1], ys[2], k, cout])
    return tf.transpose(y, [3, 0, 1, 2, 4])


def batched_conv2d_loop(x, w, bias=None, padding="SAME", activation="none",
                        alpha=0.2, pool=False, pool_padding="VALID"):
    """Slow, obviously-correct reference: one tf.nn.conv2d per network."""
    outs = []
    for i in range(w.shape[0]):
        xi = x if x.shape.rank == 4 else x[i]
        y = tf.nn.conv2d(xi, w[i], strides=1, padding=padding)
        if bias is not None:
            y = y + bias[i]
        y = apply_activation(y, activation, alpha)
        if pool:
            y = tf.nn.max_pool2d(y, ksize=2, strides=2, padding=pool_padding)
        outs.append(y)
    return tf.stack(outs)
