"""Argument checking and dispatch for ``batched_conv2d``.

Path selection (one switch):

* ``force_path("op" | "fallback" | None)`` (also a context manager) wins;
* otherwise the environment variable ``HYPERKERAS_OPS=op|fallback|auto``
  (default ``auto``), read at call time;
* ``auto`` uses the compiled op ``HyperKeras>BatchedConv2D`` when its library
  loads, else the pure-TF fallback; ``op`` raises ``OpLibraryNotFoundError``
  naming the missing file if it cannot be loaded.

Under a recording ``GradientTape`` (training), the op path by default emits
the fallback formulation for layers with an activation or pooling: the fused
op's gradient must recompute the pre-pool convolution (a second forward), which
measured slower than the fallback's own gradient
(``benchmarks/training_step.py``). ``HYPERKERAS_OPS_TAPE`` selects this:
``fallback`` (default), ``split`` (op computes conv + bias, TF applies the
activation / pool; no recomputation) or ``fused`` (the fused op and its
registered gradient). Without a tape (inference) the fused op is used.

The op computes float32 only; other dtypes always take the fallback. The op
has no XLA kernel: models calling ``batched_conv2d`` must use
``jit_compile=False``.
"""

import contextlib
import logging
import os

import tensorflow as tf

from hyperkeras.ops import _fallback
from hyperkeras.ops import _loader

logger = logging.getLogger("hyperkeras.ops")

PATHS = ("op", "fallback")
ENV_VAR = "HYPERKERAS_OPS"

_forced = None  # None (auto), "fallback" or "op"
_logged = set()


def _env_request():
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in ("op", "fallback", "auto"):
        raise ValueError(f"{ENV_VAR} must be 'op', 'fallback' or 'auto', got "
                         f"{value!r}")
    return value


def _requested():
    return _forced if _forced is not None else _env_request()


def active_path():
    """Which implementation ``batched_conv2d`` uses now: "op" or "fallback"."""
    request = _requested()
    if request == "fallback":
        return "fallback"
    if request == "op":
        _loader.require()
        return "op"
    return "op" if _loader.load() is not None else "fallback"


def force_path(path):
    """Force "op", "fallback" or None (automatic). Usable as a context manager.

    Forcing "op" raises ``OpLibraryNotFoundError`` at once if the compiled
    library cannot be loaded.
    """
    global _forced
    if path not in (None, "op", "fallback"):
        raise ValueError(f"path must be None, 'op' or 'fallback', got {path!r}")
    if path == "op":
        _loader.require()
    previous, _forced = _forced, path

    @contextlib.contextmanager
    def restore():
        global _forced
        try:
            yield
        finally:
            _forced = previous

    return restore()


def _log_once(path):
    if path not in _logged:
        _logged.add(path)
        where = _loader.library_path() if path == "op" else None
        if path == "op":
            logger.info("hyperkeras.ops.batched_conv2d: using compiled op %s (%s)",
                        _loader.OP_NAME, where)
        else:
            logger.info("hyperkeras.ops.batched_conv2d: using the pure-TF "
                        "fallback (%s)", _loader._state["error"] or
                        f"{ENV_VAR}/force_path")


def _check(x, w, bias, padding, activation, pool_padding):
    if w.shape.rank != 5:
        raise ValueError(
            f"w must have rank 5 [K, kh, kw, Cin, Cout], got shape {w.shape}")
    if x.shape.rank not in (4, 5):
        raise ValueError(
            "x must have rank 4 [B, H, W, C] (shared) or 5 [K, B, H, W, C] "
            f"(per network), got shape {x.shape}")
    if x.shape[-1] is not None and w.shape[3] is not None and x.shape[-1] != w.shape[3]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[-1]} channels but w expects "
            f"Cin={w.shape[3]} (x {x.shape}, w {w.shape})")
    if (x.shape.rank == 5 and x.shape[0] is not None and w.shape[0] is not None
            and x.shape[0] != w.shape[0]):
        raise ValueError(
            f"K mismatch: x holds {x.shape[0]} networks' inputs but w has "
            f"{w.shape[0]} filter banks")
    if bias is not None and bias.shape.rank != 2:
        raise ValueError(f"bias must have rank 2 [K, Cout], got shape {bias.shape}")
    if bias is not None:
        for i, (b, ref) in enumerate(zip(bias.shape, (w.shape[0], w.shape[4]))):
            if b is not None and ref is not None and b != ref:
                raise ValueError(f"bias must have shape [K, Cout] = "
                                 f"[{w.shape[0]}, {w.shape[4]}], got {bias.shape}")
    if padding not in _fallback.PADDINGS or pool_padding not in _fallback.PADDINGS:
        raise ValueError(f"padding must be one of {_fallback.PADDINGS}, got "
                         f"{padding!r} / pool_padding {pool_padding!r}")
    if activation not in _fallback.ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; expected one of "
                         f"{_fallback.ACTIVATIONS}")
    if 0 in x.shape.as_list() or 0 in w.shape.as_list():
        raise ValueError(f"zero-size input: x {x.shape}, w {w.shape}")
    if padding == "VALID":
        for dim, k in zip(x.shape[-3:-1], w.shape[1:3]):
            if dim is not None and k is not None and dim < k:
                raise ValueError(
                    f"input {x.shape} is smaller than the filter {w.shape[1:3]} "
                    "with VALID padding")


def _tape_records(*tensors):
    """True if an active GradientTape will record backprop through them."""
    try:
        from tensorflow.python.eager import record  # pylint: disable=g-import-not-at-top
        return bool(record.should_record_backprop(list(tensors)))
    except Exception:  # noqa: BLE001 - private API; fall back to fused op
        return False


def _op_for_training(x, w, bias, padding, activation, alpha, pool, pool_padding):
    """Op path under a recording GradientTape.

    The fused op's gradient would have to recompute the pre-pool conv output
    (the max-pool gradient needs it), i.e. a second forward convolution. When
    a tape records, the op computes only conv + bias (its gradient then needs
    no recomputation) and activation / max-pool run as TF ops whose gradients
    reuse their saved inputs, like the fallback does.
    """
    z = _loader.raw_op()(x, w, bias, padding=padding, activation="none",
                         alpha=alpha, pool=False, pool_padding=pool_padding)
    a = _fallback.apply_activation(z, activation, alpha)
    if not pool:
        return a
    zs = tf.shape(z)
    p = tf.nn.max_pool2d(tf.reshape(a, tf.concat([[-1], zs[2:]], 0)), ksize=2,
                         strides=2, padding=pool_padding)
    ps = tf.shape(p)
    out = tf.reshape(p, tf.concat([zs[:2], ps[1:]], 0))
    # Keep the static shape the fused op would have.
    k, b = w.shape[0], x.shape[0] if x.shape.rank == 4 else x.shape[1]
    out.set_shape([k, b, p.shape[1], p.shape[2], w.shape[4]])
    return out


def batched_conv2d(x, w, bias=None, padding="SAME", activation="none",
                   alpha=0.2, pool=False, pool_padding="VALID"):
    """K convolutions with generated filters, fused with bias, activation, pool.

    Args:
      x: float32 ``[B, H, W, Cin]`` shared by all networks, or ``[K, B, H, W, Cin]``.
      w: float32 ``[K, kh, kw, Cin, Cout]``, one filter bank per network.
      bias: optional float32 ``[K, Cout]``.
      padding: "SAME" or "VALID" (stride 1).
      activation: "none", "relu" or "leaky_relu" (slope ``alpha``).
      pool: apply 2x2 max-pooling with stride 2 and ``pool_padding``.

    Returns:
      ``[K, B, H', W', Cout]``.
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
            ws = tf.shape(w)
            bias = tf.zeros(tf.stack([ws[0], ws[4]]), dtype=tf.float32)
        training = os.environ.get("HYPERKERAS_OPS_TAPE", "fallback")
        if (activation != "none" or pool) and _tape_records(x, w, bias):
            if training == "split":
                return _op_for_training(x, w, bias, padding, activation,
                                        float(alpha), bool(pool), pool_padding)
            if training != "fused":
                _log_once("fallback")
                return _fallback.batched_conv2d_fallback(
                    x, w, bias, padding=padding, activation=activation,
                    alpha=alpha, pool=pool, pool_padding=pool_padding)
        return _loader.raw_op()(
            x, w, bias, padding=padding, activation=activation,
            alpha=float(alpha), pool=bool(pool), pool_padding=pool_padding)
    _log_once("fallback")
    return _fallback.batched_conv2d_fallback(
        x, w, bias, padding=padding, activation=activation, alpha=alpha,
        pool=pool, pool_padding=pool_padding)
