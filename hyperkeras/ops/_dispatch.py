"""Argument checking and dispatch for ``batched_conv2d``."""

import contextlib

import tensorflow as tf

from hyperkeras.ops import _fallback

_forced = None  # None (auto), "fallback" or "op"


def active_path():
    """Which implementation ``batched_conv2d`` uses now: "op" or "fallback"."""
    return "fallback"


def force_path(path):
    """Force "op", "fallback" or None (automatic). Usable as a context manager."""
    global _forced
    if path not in (None, "op", "fallback"):
        raise ValueError(f"path must be None, 'op' or 'fallback', got {path!r}")
    previous, _forced = _forced, path

    @contextlib.contextmanager
    def restore():
        global _forced
        try:
            yield
        finally:
            _forced = previous

    return restore()


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
    if padding not in _fallback.PADDINGS or pool_padding not in _fallback.PADDINGS:
        raise ValueError(f"padding must be one of {_fallback.PADDINGS}, got "
                         f"{padding!r} / pool_padding {pool_padding!r}")
    if activation not in _fallback.ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; expected one of "
                         f"{_fallback.ACTIVATIONS}")


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
    return _fallback.batched_conv2d_fallback(
        x, w, bias, padding=padding, activation=activation, alpha=alpha,
        pool=pool, pool_padding=pool_padding)
