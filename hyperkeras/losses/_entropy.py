"""Kozachenko-Leonenko nearest-neighbour entropy estimator (Deutsch et al., eq. 14)."""

import math

from scipy import special
import tensorflow as tf

_EPS = 1e-12


def log_unit_ball_volume(d):
    """log of the volume of the unit d-ball, ``pi^(d/2) / Gamma(d/2 + 1)``."""
    return 0.5 * d * math.log(math.pi) - special.gammaln(0.5 * d + 1.0)


_DIRECT_LIMIT = 1 << 22  # N*N*D elements up to which differences are formed exactly


def nearest_neighbour_sq_distances(samples):
    """``[N]`` squared Euclidean distance of each sample to its nearest other one.

    Exact pairwise differences when ``N*N*D`` is small; otherwise the Gram form
    (memory ``N^2``, not ``N^2 D``) on centred samples, clamped at zero. The
    diagonal is masked with ``tf.where`` so no ``inf * 0`` reaches the gradient.
    """
    x = samples - tf.reduce_mean(samples, 0, keepdims=True)
    n, dim = x.shape[0], x.shape[1]
    if dim is not None and n * n * dim <= _DIRECT_LIMIT:
        d2 = tf.reduce_sum(tf.square(x[:, None, :] - x[None, :, :]), -1)
    else:
        sq = tf.reduce_sum(tf.square(x), -1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True)
        d2 = tf.maximum(d2, 0.0)
    eye = tf.eye(n, dtype=tf.bool)
    big = tf.stop_gradient(tf.reduce_max(d2)) + 1.0
    d2 = tf.where(eye, big, d2)
    return tf.reduce_min(d2, -1)


def kl_entropy(samples, dim=None, full=False):
    """Kozachenko-Leonenko estimate of the differential entropy of samples (nats).

    ``H = psi(N) + d/N * sum_i log(eps_i)`` with ``eps_i`` the Euclidean distance
    from sample i to its nearest neighbour among the N samples (eq. 14). With
    ``full=True`` the constants of the complete estimator are added,
    ``- psi(1) + log V_d`` (``V_d`` the volume of the unit d-ball), which makes
    it a consistent estimate of the entropy when ``d`` is the true dimension.

    Args:
      samples: ``[N, D]`` float tensor, N >= 2.
      dim: the dimension d in the formula; default D. (Deutsch et al. use the
        noise dimension, since the samples lie on a manifold of that dimension.)
      full: add the constant terms.

    Returns:
      A scalar float32 tensor. Finite, with a finite gradient, even when samples
      coincide: distances are ``sqrt(d^2 + 1e-12)``.
    """
    samples = tf.convert_to_tensor(samples, tf.float32)
    if samples.shape.rank != 2:
        raise ValueError(f"samples must have shape [N, D], got {samples.shape}")
    n = samples.shape[0]
    if n is None:
        raise ValueError("kl_entropy needs a static number of samples N")
    if n < 2:
        raise ValueError(f"kl_entropy needs at least 2 samples, got N={n}")
    d = samples.shape[1] if dim is None else dim
    if d is None or d < 1:
        raise ValueError(f"dimension d must be >= 1, got {d}")
    d = float(d)
    nn2 = nearest_neighbour_sq_distances(samples)
    log_eps = 0.5 * tf.math.log(nn2 + _EPS)
    h = float(special.digamma(n)) + d * tf.reduce_mean(log_eps)
    if full:
        h += -float(special.digamma(1)) + log_unit_ball_volume(d)
    return h
