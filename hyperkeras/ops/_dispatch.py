"""Argument checking and dispatch for ``batched_conv2d``.

Path selection (one switch):

* ``force_path("op" | "fallback" | None)`` wins, in the calling thread only
  (a ``contextvars.ContextVar``; see :func:`force_path`);
* otherwise the environment variable ``HYPERKERAS_OPS=op|fallback|auto``
  (default ``auto``), read at call time, process-wide;
* ``auto`` uses the compiled op ``HyperKeras>BatchedConv2D`` when its library
  loads, else the pure-TF fallback; ``op`` raises ``OpLibraryNotFoundError``
  naming the missing file if it cannot be loaded.

The path is chosen when ``batched_conv2d`` is *called*: inside a
``tf.function`` (e.g. Keras ``fit``/``predict``) that is when the function is
traced, and the traced graph keeps that path until it is traced again.

The op computes float32 only; other dtypes always take the fallback. Its
gradient is its own backward kernels (``_loader``); the fallback's is
TensorFlow's. The op has no XLA kernel: models calling ``batched_conv2d``
must use ``jit_compile=False``.
"""

import contextlib
import contextvars
import logging
import os

import tensorflow as tf

from hyperkeras.ops import _fallback
from hyperkeras.ops import _loader
from hyperkeras.ops._fallback import _static as _known

logger = logging.getLogger("hyperkeras.ops")

ENV_VAR = "HYPERKERAS_OPS"

_forced = contextvars.ContextVar("hyperkeras_ops_forced_path", default=None)
_logged = set()


def _requested():
    """The forced path of this thread, else the environment's request."""
    if _forced.get() is not None:
        return _forced.get()
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in ("op", "fallback", "auto"):
        raise ValueError(f"{ENV_VAR} must be 'op', 'fallback' or 'auto', got {value!r}")
    return value


def active_path():
    """Which implementation ``batched_conv2d`` uses now in this thread:
    "op" or "fallback"."""
    request = _requested()
    if request == "auto":
        return "op" if _loader.load() is not None else "fallback"
    if request == "op":
        _loader.require()
    return request


def force_path(path):
    """Force "op", "fallback" or None (automatic) in the calling thread.

    Use it as a context manager (``with force_path("fallback"): ...``); the
    previous setting comes back when the block ends. Called plainly, the
    setting stays for the rest of the thread (or ``contextvars`` context).
    Forcing "op" raises ``OpLibraryNotFoundError`` at once if the compiled
    library cannot be loaded.
    """
    if path not in (None, "op", "fallback"):
        raise ValueError(f"path must be None, 'op' or 'fallback', got {path!r}")
    if path == "op":
        _loader.require()
    restore = contextlib.ExitStack()  # its exit resets the variable
    restore.callback(_forced.reset, _forced.set(path))
    return restore


def _log_once(path):
    if path not in _logged:
        _logged.add(path)
        if path == "op":
            logger.info("hyperkeras.ops.batched_conv2d: using compiled op %s (%s)",
                        _loader.OP_NAME, _loader.library_path())
        else:
            logger.info("hyperkeras.ops.batched_conv2d: using the pure-TF "
                        "fallback (%s)", _loader._state["error"] or
                        f"{ENV_VAR}/force_path")


def conv_output_size(n, k, padding="SAME", pool=False, pool_padding="VALID"):
    """Output length of one spatial axis of ``batched_conv2d``: stride-1 conv
    of an ``n``-long axis with a ``k``-long filter, then the optional 2x2
    stride-2 max-pool (the formula of ``hk_conv_output_hw`` in
    kernels/batched_conv.h; may be <= 0 when the filter does not fit)."""
    c = n if str(padding).upper() == "SAME" else n - k + 1
    if pool:
        c = (c + 1) // 2 if str(pool_padding).upper() == "SAME" else max(c, 0) // 2
    return c


def _check(x, w, bias, padding, activation, pool_padding):
    if w.shape.rank != 5:
        raise ValueError(f"w must have rank 5 [K, kh, kw, Cin, Cout], got shape {w.shape}")
    if x.shape.rank not in (4, 5):
        raise ValueError(
            "x must have rank 4 [B, H, W, C] (shared) or 5 [K, B, H, W, C] "
            f"(per network), got shape {x.shape}")
    if _known(x.shape[-1], w.shape[3]) and x.shape[-1] != w.shape[3]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[-1]} channels but w expects "
            f"Cin={w.shape[3]} (x {x.shape}, w {w.shape})")
    if (x.shape.rank == 5 and _known(x.shape[0], w.shape[0])
            and x.shape[0] != w.shape[0]):
        raise ValueError(
            f"K mismatch: x holds {x.shape[0]} networks' inputs but w has "
            f"{w.shape[0]} filter banks")
    if bias is not None:
        if bias.shape.rank != 2:
            raise ValueError(f"bias must have rank 2 [K, Cout], got shape {bias.shape}")
        for b, ref in zip(bias.shape, (w.shape[0], w.shape[4])):
            if _known(b, ref) and b != ref:
                raise ValueError(f"bias must have shape [K, Cout] = "
                                 f"[{w.shape[0]}, {w.shape[4]}], got {bias.shape}")
    if padding not in _fallback.PADDINGS or pool_padding not in _fallback.PADDINGS:
        raise ValueError(f"padding must be one of {_fallback.PADDINGS}, got "
                         f"{padding!r} / pool_padding {pool_padding!r}")
    if activation not in _fallback.ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; expected one of "
                         f"{_fallback.ACTIVATIONS}")
    # An empty batch is valid (empty result, as for tf.nn.conv2d); any other
    # zero dimension is not.
    batch_axis = x.shape.rank - 4
    if (0 in w.shape.as_list() or
            0 in [d for i, d in enumerate(x.shape.as_list()) if i != batch_axis]):
        raise ValueError(f"zero-size input: x {x.shape}, w {w.shape}")
    if padding == "VALID":
        for dim, k in zip(x.shape[-3:-1], w.shape[1:3]):
            if _known(dim, k) and dim < k:
                raise ValueError(f"input {x.shape} is smaller than the filter "
                                 f"{w.shape[1:3]} with VALID padding")


def batched_conv2d(x, w, bias=None, padding="SAME", activation="none",
                   alpha=0.2, pool=False, pool_padding="VALID"):
    """K convolutions with generated filters, fused with bias, activation, pool.

    Args:
      x: float32 ``[B, H, W, Cin]`` shared by all networks, or ``[K, B, H, W, Cin]``.
      w: float32 ``[K, kh, kw, Cin, Cout]``, one filter bank per network.
      bias: optional float32 ``[K, Cout]``.
      padding: "SAME" or "VALID" (stride 1; case-insensitive).
      activation: "none", "relu" or "leaky_relu" (slope ``alpha``).
      pool: apply 2x2 max-pooling with stride 2 and ``pool_padding``.

    Returns:
      ``[K, B, H', W', Cout]``. Differentiable with respect to x, w and bias
      on both paths.
    """
    x = tf.convert_to_tensor(x)
    w = tf.convert_to_tensor(w)
    bias = None if bias is None else tf.convert_to_tensor(bias)
    padding, pool_padding = str(padding).upper(), str(pool_padding).upper()
    _check(x, w, bias, padding, activation, pool_padding)
    path = active_path()
    float32 = (x.dtype == tf.float32 and w.dtype == tf.float32 and
               (bias is None or bias.dtype == tf.float32))
    if path == "op" and float32:
        _log_once("op")
        if bias is None:
            bias = tf.zeros_like(w[:, 0, 0, 0])  # [K, Cout]
        y, _ = _loader.raw_op()(
            x, w, bias, padding=padding, activation=activation,
            alpha=float(alpha), pool=bool(pool), pool_padding=pool_padding)
        return y
    _log_once("fallback")
    return _fallback.batched_conv2d_fallback(
        x, w, bias, padding=padding, activation=activation, alpha=alpha,
        pool=pool, pool_padding=pool_padding)
