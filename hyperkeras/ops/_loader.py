"""Lazy loading of the compiled ``HyperKeras>BatchedConv2D`` op library.

The library is loaded with ``tf.load_op_library`` on first use, never at
import time. If it is missing or cannot be loaded, ``load()`` returns None and
``hyperkeras.ops.batched_conv2d`` falls back to pure TensorFlow (logged once).
The gradient of the op is registered here (recomputed with the pure-TF
fallback under a GradientTape, so higher-order gradients work too).

The op has no XLA kernel: Keras models that call it must be compiled with
``jit_compile=False``.
"""

import logging
import os
import threading

import tensorflow as tf

from hyperkeras.ops import _fallback

logger = logging.getLogger("hyperkeras.ops")

OP_NAME = "HyperKeras>BatchedConv2D"
LIB_DIR = os.path.dirname(os.path.abspath(__file__))
OP_LIBRARY = os.path.join(LIB_DIR, "_batched_conv_ops.so")
CUDA_OP_LIBRARY = os.path.join(LIB_DIR, "_batched_conv_ops_cuda.so")

_lock = threading.Lock()
_state = {"tried": False, "module": None, "path": None, "error": None}


class OpLibraryNotFoundError(RuntimeError):
    """The compiled op library is required (HYPERKERAS_OPS=op) but missing."""


def _gpu_visible():
    try:
        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001
        return False


def load():
    """Loads the op library once; returns the module or None."""
    if _state["tried"]:
        return _state["module"]
    with _lock:
        if _state["tried"]:
            return _state["module"]
        candidates = []
        if os.path.exists(CUDA_OP_LIBRARY) and _gpu_visible():
            candidates.append(CUDA_OP_LIBRARY)
        candidates.append(OP_LIBRARY)
        errors = []
        for path in candidates:
            if not os.path.exists(path):
                errors.append(f"{path} does not exist (build it with "
                              "`pip install --no-build-isolation -e .`)")
                continue
            try:
                module = tf.load_op_library(path)
                _state.update(module=module, path=path)
                break
            except Exception as e:  # noqa: BLE001 - a bad .so never breaks us
                errors.append(f"{path} failed to load: {e}")
                logger.warning("hyperkeras: could not load %s: %s", path, e)
        _state["error"] = "; ".join(errors) if _state["module"] is None else None
        _state["tried"] = True
        return _state["module"]


def library_path():
    """Path of the loaded op library, or None."""
    load()
    return _state["path"]


def require():
    """Returns the loaded module or raises OpLibraryNotFoundError."""
    module = load()
    if module is None:
        raise OpLibraryNotFoundError(
            f"hyperkeras: the compiled op {OP_NAME} was requested "
            f"(HYPERKERAS_OPS=op or force_path('op')) but its library is "
            f"unavailable: {_state['error']}")
    return module


def raw_op():
    """The generated Python wrapper of the op (bypasses the Python checks)."""
    return require().hyper_keras_batched_conv2d


def _attr(op, name):
    v = op.get_attr(name)
    return v.decode() if isinstance(v, bytes) else v


def _conv_vjp(x, w, dz, padding):
    """dx, dw of the bare convolution z = conv(x, w) for an upstream dz.

    ``dz`` is ``[K, B, Hc, Wc, Cout]`` (conv output before bias/act/pool).
    Shared input: explicit ``conv2d_backprop_*`` on the wide formulation (no
    forward). Per-network input: VJP of the fallback's grouped convolution;
    its forward output is unused, so tf.function prunes it.
    """
    if x.shape.rank == 4:
        ws = tf.shape(w)
        wide = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]),
                          tf.stack([ws[1], ws[2], ws[3], -1]))
        zs = tf.shape(dz)
        dz_wide = tf.reshape(tf.transpose(dz, [1, 2, 3, 0, 4]),
                             tf.stack([zs[1], zs[2], zs[3], -1]))
        dx = tf.compat.v1.nn.conv2d_backprop_input(
            tf.shape(x), wide, dz_wide, strides=[1, 1, 1, 1], padding=padding)
        dwide = tf.compat.v1.nn.conv2d_backprop_filter(
            x, tf.shape(wide), dz_wide, strides=[1, 1, 1, 1], padding=padding)
        dw = tf.transpose(
            tf.reshape(dwide, tf.stack([ws[1], ws[2], ws[3], ws[0], ws[4]])),
            [3, 0, 1, 2, 4])
        return dx, dw
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        z = _fallback.batched_conv2d_fallback(x, w, None, padding=padding)
    return tape.gradient(z, [x, w], output_gradients=dz)


@tf.RegisterGradient(OP_NAME)
def _batched_conv2d_grad(op, dy):
    """Gradients for x, w and bias.

    The conv output z is needed only to route the max-pool gradient (or for
    leaky-ReLU with alpha <= 0); then it is recomputed with the op itself
    (no pool, no activation), otherwise the activation's derivative is read
    off the op's output y. The convolution's VJP never runs a forward conv
    (see ``_conv_vjp``). Every step is differentiable (z via this op), so
    higher-order gradients work.
    """
    x, w, bias = op.inputs
    padding = _attr(op, "padding")
    activation = _attr(op, "activation")
    alpha = _attr(op, "alpha")
    pool = _attr(op, "pool")
    pool_padding = _attr(op, "pool_padding")
    y = op.outputs[0]
    if not pool and (activation in ("none", "relu") or
                     (activation == "leaky_relu" and alpha > 0)):
        if activation == "none":
            dz = dy
        elif activation == "relu":
            dz = tf.where(y > 0, dy, tf.zeros_like(dy))
        else:
            dz = tf.where(y > 0, dy, alpha * dy)
    else:
        z = raw_op()(x, w, bias, padding=padding, activation="none",
                     alpha=alpha, pool=False, pool_padding=pool_padding)
        with tf.GradientTape() as tape:
            tape.watch(z)
            zs = tf.shape(z)
            a = _fallback.apply_activation(z, activation, alpha)
            if pool:
                a4 = tf.reshape(a, tf.concat([[-1], zs[2:]], 0))
                p4 = tf.nn.max_pool2d(a4, ksize=2, strides=2, padding=pool_padding)
                ys = tf.shape(y)
                out = tf.reshape(p4, ys)
            else:
                out = a
        dz = tape.gradient(out, z, output_gradients=dy)
    dbias = tf.reduce_sum(dz, axis=[1, 2, 3])
    dx, dw = _conv_vjp(x, w, dz, padding)
    return dx, dw, dbias
