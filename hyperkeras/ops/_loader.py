"""Lazy loading of the compiled ``HyperKeras>BatchedConv2D`` op library.

The library is loaded with ``tf.load_op_library`` on first use, never at
import time. If it is missing or cannot be loaded, ``load()`` returns None and
``hyperkeras.ops.batched_conv2d`` falls back to pure TensorFlow (logged once).
The op's gradient (its own backward kernels) is registered here.
"""

import logging
import os
import threading

import tensorflow as tf


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
    with _lock:
        if _state["tried"]:
            return _state["module"]
        cuda = os.path.exists(CUDA_OP_LIBRARY) and _gpu_visible()
        errors = []
        for path in [CUDA_OP_LIBRARY, OP_LIBRARY] if cuda else [OP_LIBRARY]:
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


ATTRS = ("padding", "activation", "alpha", "pool", "pool_padding")


def _attrs(op):
    """The op's attributes as keyword arguments (strings decoded)."""
    values = {name: op.get_attr(name) for name in ATTRS}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


@tf.RegisterGradient(OP_NAME)
def _batched_conv2d_grad(op, dy, unused_dmask):
    """dx, dw, dbias from the op's own backward kernels.

    The forward's ``mask`` output (the max-pool's pick and the activation's
    sign, one byte per output element) is all they need besides x and w:
    nothing is recomputed. dx and dw are separate ops, so a graph that needs
    no dx (a first layer on data) prunes it; in eager mode TensorFlow tells
    the gradient which inputs need none (``skip_input_indices``).
    """
    x, w, _ = op.inputs
    mask = op.outputs[1]
    module = require()
    attrs = _attrs(op)
    skip = getattr(op, "skip_input_indices", None) or ()
    dx = None
    if 0 not in skip:
        dx = module.hyper_keras_batched_conv2d_backprop_input(x, w, dy, mask, **attrs)
    if 1 in skip and 2 in skip:
        return dx, None, None
    dw, dbias = module.hyper_keras_batched_conv2d_backprop_filter(x, w, dy, mask, **attrs)
    return dx, dw, dbias


def _no_second_order(op_name):
    def grad(op, *grads):
        raise LookupError(
            f"hyperkeras: second-order gradients through {op_name} are not implemented; "
            "use hyperkeras.ops.force_path('fallback') for higher-order derivatives")
    return grad


for _name in ("HyperKeras>BatchedConv2DBackpropInput",
              "HyperKeras>BatchedConv2DBackpropFilter"):
    tf.RegisterGradient(_name)(_no_second_order(_name))
