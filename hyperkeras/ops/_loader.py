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


@tf.RegisterGradient(OP_NAME)
def _batched_conv2d_grad(op, dy):
    """Gradients for x, w and bias by recomputing the pure-TF formulation."""
    x, w, bias = op.inputs
    kwargs = dict(padding=_attr(op, "padding"),
                  activation=_attr(op, "activation"),
                  alpha=_attr(op, "alpha"), pool=_attr(op, "pool"),
                  pool_padding=_attr(op, "pool_padding"))
    with tf.GradientTape() as tape:
        tape.watch([x, w, bias])
        y = _fallback.batched_conv2d_fallback(x, w, bias, **kwargs)
    return tape.gradient(y, [x, w, bias], output_gradients=dy)
