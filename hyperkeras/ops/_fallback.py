"""Pure-TensorFlow batched generated-weight convolution (the fallback path).

Every sampled network ``k`` has its own filters ``w[k]``; one call computes

    y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k]))

Every formulation here trains on every TensorFlow build: none uses a
grouped convolution, whose CPU gradient exists only under oneDNN
(``TF_ENABLE_ONEDNN_OPTS=1``). Chosen by measurement on both oneDNN settings
(``benchmarks/fallback_formulations.py``, results in ``benchmarks/results/``):

* shared input ``x[B,H,W,C]``: one wide convolution with the K filter banks
  concatenated along the output channels (``[kh,kw,C,K*O]``); no K copies of
  x. With at most ``LOOP_MAX_CIN`` input channels (a first layer on grey
  images) and a static K, K plain convolutions instead: the wide
  convolution's filter gradient measured up to 3x slower there;
* per-network input ``x[K,B,H,W,C]``: ``tf.map_fn`` over the K networks, one
  plain convolution each (fastest in most rows on both settings; im2col +
  batched matmul and a depthwise formulation measured 2-20x slower). It also
  serves filter sizes and K unknown until run time.
"""

import tensorflow as tf

ACTIVATIONS = ("none", "relu", "leaky_relu")
PADDINGS = ("SAME", "VALID")
LOOP_MAX_CIN = 2  # shared input with at most this many channels: K plain convs


def apply_activation(y, activation, alpha):
    if activation == "none":
        return y
    if activation == "relu":
        return tf.nn.relu(y)
    if activation == "leaky_relu":
        return tf.nn.leaky_relu(y, alpha=alpha)
    raise ValueError(f"Unknown activation {activation!r}; expected one of {ACTIVATIONS}.")


def _epilogue(y, bias, activation, alpha, pool, pool_padding):
    """bias + activation + 2x2 max-pool on a rank-4 ``[N, H, W, C]`` tensor
    (``bias`` already shaped to broadcast against it)."""
    if bias is not None:
        y = y + bias
    y = apply_activation(y, activation, alpha)
    if pool:
        if pool_padding == "VALID" and any(d is None or d % 2 for d in y.shape[1:3]):
            # VALID pooling drops an odd last row / column anyway; dropping it
            # first keeps oneDNN's MaxPool (TF_ENABLE_ONEDNN_OPTS=1) from
            # failing on a 1-pixel axis (output size 0).
            ys = tf.shape(y)
            y = y[:, :ys[1] // 2 * 2, :ys[2] // 2 * 2, :]
        y = tf.nn.max_pool2d(y, ksize=2, strides=2, padding=pool_padding)
    return y


def _conv(x, w, padding):
    """``tf.nn.conv2d`` (stride 1), shaped right for an empty batch too:
    TensorFlow's CPU kernel returns its input's shape when the batch is
    empty. A reshape of no elements costs nothing."""
    y = tf.nn.conv2d(x, w, strides=1, padding=padding)
    xs, ws = tf.shape(x), tf.shape(w)
    hc, wc = (xs[1], xs[2]) if padding == "SAME" else (xs[1] - ws[0] + 1, xs[2] - ws[1] + 1)
    return tf.reshape(y, tf.stack([xs[0], hc, wc, ws[3]]))


def _static(*dims):
    return all(d is not None for d in dims)


def batched_conv2d_fallback(x, w, bias=None, padding="SAME", activation="none",
                            alpha=0.2, pool=False, pool_padding="VALID"):
    """Pure-TF batched convolution. Arguments are already validated."""
    kw = dict(padding=padding, activation=activation, alpha=alpha, pool=pool,
              pool_padding=pool_padding)
    if x.shape.rank == 5:
        return batched_conv2d_map(x, w, bias, **kw)
    if _static(w.shape[0], w.shape[3]) and w.shape[3] <= LOOP_MAX_CIN:
        return batched_conv2d_loop(x, w, bias, **kw)
    return batched_conv2d_wide(x, w, bias, **kw)


def batched_conv2d_wide(x, w, bias=None, padding="SAME", activation="none",
                        alpha=0.2, pool=False, pool_padding="VALID"):
    """Shared input: one convolution with K*Cout output channels."""
    ws = tf.shape(w)
    k, cout = ws[0], ws[4]
    # [K,kh,kw,C,O] -> [kh,kw,C,K,O] -> [kh,kw,C,K*O]
    wide = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]),
                      tf.stack([ws[1], ws[2], ws[3], -1]))
    y = _conv(x, wide, padding)  # [B,H',W',K*O]
    y = _epilogue(y, None if bias is None else tf.reshape(bias, [-1]),
                  activation, alpha, pool, pool_padding)
    ys = tf.shape(y)
    y = tf.reshape(y, tf.stack([ys[0], ys[1], ys[2], k, cout]))
    return tf.transpose(y, [3, 0, 1, 2, 4])


def batched_conv2d_map(x, w, bias=None, padding="SAME", activation="none",
                       alpha=0.2, pool=False, pool_padding="VALID"):
    """Per-network input, any static-ness: tf.map_fn over the K networks."""
    if bias is None:
        bias = tf.zeros_like(w[:, 0, 0, 0])  # [K, Cout]

    def one(args):
        xi, wi, bi = args
        y = _conv(xi, wi, padding)
        return _epilogue(y, bi, activation, alpha, pool, pool_padding)

    return tf.map_fn(one, (x, w, bias), fn_output_signature=x.dtype)


def batched_conv2d_loop(x, w, bias=None, padding="SAME", activation="none",
                        alpha=0.2, pool=False, pool_padding="VALID"):
    """Slow, obviously-correct reference: one tf.nn.conv2d per network."""
    outs = []
    for i in range(w.shape[0]):
        xi = x if x.shape.rank == 4 else x[i]
        y = _conv(xi, w[i], padding)
        outs.append(_epilogue(y, None if bias is None else bias[i], activation,
                              alpha, pool, pool_padding))
    return tf.stack(outs)
