"""Function-space diversity terms on the predictions of K members: the mutual
information between member and prediction, over all classes (for inputs no
member should be sure of) or over the classes other than the label (after
Pang et al., 2019, "Improving adversarial robustness via promoting ensemble
diversity": the members agree on the label and differ in their errors)."""

import tensorflow as tf


def _check_logits(logits):
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank != 3:
        raise ValueError(f"logits must be [members, batch, classes], got shape {logits.shape}")
    return logits


def _mean_mutual_information(lp):
    """Entropy of the mean minus mean entropy of ``[K, B, C]`` log-probabilities,
    averaged over the batch (0 * log 0 terms count as 0)."""
    p = tf.exp(lp)
    mean_entropy = -tf.reduce_mean(tf.reduce_sum(p * lp, -1), 0)
    p_mean = tf.reduce_mean(p, 0)
    entropy_of_mean = -tf.reduce_sum(tf.math.xlogy(p_mean, p_mean), -1)
    return tf.reduce_mean(entropy_of_mean - mean_entropy)


def members_mean_entropy(logits):
    """Mean over members and examples of the entropy of each member's
    prediction of ``[K, B, C]`` logits, nats in ``[0, log C]``. Maximised on
    inputs no member should be sure of, it is outlier exposure (Hendrycks et
    al., 2019: cross-entropy to the uniform distribution, up to a constant)."""
    lp = tf.nn.log_softmax(_check_logits(logits))
    return -tf.reduce_mean(tf.reduce_sum(tf.exp(lp) * lp, -1))


def members_mutual_information(logits):
    """Mean over examples of the mutual information between member and
    prediction of ``[K, B, C]`` logits, nats in ``[0, log K]`` (0: the
    members agree)."""
    return _mean_mutual_information(tf.nn.log_softmax(_check_logits(logits)))


def nontrue_class_diversity(logits, labels):
    """Mean over examples of the mutual information between member and
    prediction, with each member's distribution taken over the classes other
    than the label, nats in ``[0, log K]``.

    Maximising it spreads the members' errors (which wrong class each one
    prefers) without pulling any member away from the label: the term is
    blind to the true class's logit.

    Args:
      logits: ``[K, B, C]`` logits of K members on one shared batch.
      labels: ``[B]`` (or ``[B, 1]``) integer labels.
    """
    logits = _check_logits(logits)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    if labels.shape[0] is not None and logits.shape[1] is not None \
            and labels.shape[0] != logits.shape[1]:
        raise ValueError(f"{labels.shape[0]} labels for a batch of {logits.shape[1]} "
                         f"(logits {logits.shape}); the members must share one batch")
    true = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return _mean_mutual_information(tf.nn.log_softmax(logits - 1e9 * true))
