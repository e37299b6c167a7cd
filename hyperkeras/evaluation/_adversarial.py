"""White-box L-infinity attacks (FGSM, PGD) and the HyperGAN adversarial protocol.

An attack needs a differentiable function ``x -> logits`` of shape ``[B, C]``
or ``[K, B, C]``; K members are fused by averaging their logits (the paper's
uniformly weighted logit fusion; the scale does not change the argmax). Use
:func:`attack_function` to fix ``n`` members of a model drawn with a seed.
:func:`adversarial_evaluation` is HyperGAN's protocol (sec. 4.5).
"""

import numpy as np
import tensorflow as tf

from hyperkeras.evaluation import _metrics as metrics
from hyperkeras.evaluation._common import check_labels
from hyperkeras.evaluation._common import log_softmax

ATTACKS = ("fgsm", "pgd")


def _check_epsilon(epsilon):
    epsilon = float(epsilon)
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon}")
    return epsilon


def _check_xy(x, y, clip_min, clip_max):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch [N, ...], got shape {list(x.shape)}")
    y = check_labels(y, len(x))
    if clip_min >= clip_max:
        raise ValueError(f"clip_min must be < clip_max, got {clip_min}, {clip_max}")
    if x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6:
        raise ValueError(f"inputs must lie in the valid range [{clip_min}, {clip_max}], "
                         f"got [{x.min():.4g}, {x.max():.4g}]")
    return x, y


def attack_function(model, n=1, seed=0):
    """``x -> [n, B, C]`` logits of ``n`` fixed members of ``model`` (drawn with seed).

    Works with every object exposing ``sample(n, seed)`` and
    ``member_logits(x, params=...)`` (hyperkeras models and baselines), else
    ``member_logits(x, n=n, seed=seed)``.
    """
    if hasattr(model, "sample"):
        params = model.sample(n, seed)
        return lambda x: model.member_logits(x, params=params)
    return lambda x: model.member_logits(x, n=n, seed=seed)


def _loss_and_grad_fn(logits_fn):
    """A cached ``tf.function`` (one trace per logits function, not per call)."""
    cached = getattr(logits_fn, "_hyperkeras_loss_grad", None)
    if cached is not None:
        return cached

    @tf.function(reduce_retracing=True)
    def loss_grad(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = logits_fn(x)
            if logits.shape.rank == 3:
                logits = tf.reduce_mean(logits, 0)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, x)

    try:  # a reference cycle the garbage collector can free, unlike a global cache
        logits_fn._hyperkeras_loss_grad = loss_grad
    except AttributeError:
        pass
    return loss_grad


def _batched(fn, x, y, batch_size):
    outs = [fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, 0)


def fgsm(logits_fn, x, y, epsilon, clip_min=0.0, clip_max=1.0, batch_size=256):
    """Fast gradient sign method: ``clip(x + eps * sign(grad_x loss))``."""
    epsilon = _check_epsilon(epsilon)
    x, y = _check_xy(x, y, clip_min, clip_max)
    loss_grad = _loss_and_grad_fn(logits_fn)

    def one(xb, yb):
        _, g = loss_grad(tf.constant(xb), tf.constant(yb, tf.int32))
        return np.clip(xb + epsilon * np.sign(g.numpy()), clip_min, clip_max)

    return _batched(one, x, y, batch_size).astype(np.float32)


def pgd(logits_fn, x, y, epsilon, steps=20, step_size=None, restarts=1,
        random_start=True, seed=0, clip_min=0.0, clip_max=1.0, batch_size=256):
    """Projected gradient descent (Madry et al.) in the L-inf ball of radius eps.

    Each of ``restarts`` runs starts at a uniform random point of the ball
    (``random_start``) and takes ``steps`` signed-gradient steps of size
    ``step_size`` (default ``2.5 * eps / steps``), projecting back onto the
    ball and onto ``[clip_min, clip_max]``. Per example, the run with the
    highest final loss is kept.
    """
    epsilon = _check_epsilon(epsilon)
    x, y = _check_xy(x, y, clip_min, clip_max)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    step_size = 2.5 * epsilon / steps if step_size is None else float(step_size)
    if step_size < 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}")
    loss_grad = _loss_and_grad_fn(logits_fn)
    rng = np.random.default_rng(seed)

    def one(xb, yb):
        yt = tf.constant(yb, tf.int32)
        best = xb.copy()
        best_loss = np.full(len(xb), -np.inf)
        for _ in range(restarts):
            xa = xb.copy()
            if random_start and epsilon > 0:
                xa = np.clip(xa + rng.uniform(-epsilon, epsilon, xb.shape).astype(np.float32),
                             clip_min, clip_max)
            for _ in range(steps):
                _, g = loss_grad(tf.constant(xa), yt)
                xa = xa + step_size * np.sign(g.numpy())
                xa = np.clip(np.clip(xa, xb - epsilon, xb + epsilon), clip_min, clip_max)
            loss, _ = loss_grad(tf.constant(xa), yt)
            loss = loss.numpy()
            better = loss > best_loss
            best[better] = xa[better]
            best_loss = np.where(better, loss, best_loss)
        return best

    return _batched(one, x, y, batch_size).astype(np.float32)


def attack(logits_fn, x, y, epsilon, method="fgsm", **kwargs):
    """Dispatch to :func:`fgsm` or :func:`pgd`."""
    if method == "fgsm":
        kwargs = {k: v for k, v in kwargs.items() if k in ("clip_min", "clip_max", "batch_size")}
        return fgsm(logits_fn, x, y, epsilon, **kwargs)
    if method == "pgd":
        return pgd(logits_fn, x, y, epsilon, **kwargs)
    raise ValueError(f"method must be one of {ATTACKS}, got {method!r}")


def evaluate_members(logits, y):
    """Accuracy, entropy, MI and fooled fraction of member logits ``[K, N, C]``."""
    lp = log_softmax(logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    wrong = np.argmax(lp, -1) != y[None]
    return {
        "accuracy": metrics.accuracy_mean_probability(lp, y, logits=True),
        "entropy": float(metrics.predictive_entropy(lp, logits=True).mean()),
        "mutual_information": float(metrics.mutual_information(lp, logits=True).mean()),
        "fooled_fraction": float(wrong.mean()),
        "all_fooled": float(wrong.all(0).mean()),
    }


def adversarial_evaluation(model, x, y, epsilons=(0.01, 0.05, 0.1, 0.2, 0.3),
                           attacks=ATTACKS, n=10, attack_seed=1000, test_seed=2000,
                           targets=("single", "ensemble"), pgd_steps=20,
                           pgd_restarts=2, clip_min=0.0, clip_max=1.0,
                           batch_size=256):
    """HyperGAN-style adversarial evaluation of ``model``.

    For each attacked target ("single": one network drawn with ``attack_seed``;
    "ensemble": ``n`` networks drawn with ``attack_seed``), each attack and each
    epsilon, the adversarial images are scored by a fresh ensemble of ``n``
    networks drawn with ``test_seed``. A row with ``epsilon = 0`` holds the clean
    scores. (A finite ensemble such as
    :class:`~hyperkeras.baselines.DeepEnsemble` cannot draw new members: its
    "fresh" ensemble is a seeded choice of its members and may contain the
    attacked ones.)

    Returns a list of dicts with keys ``target``, ``attack``, ``epsilon``,
    ``accuracy``, ``entropy``, ``mutual_information``, ``fooled_fraction`` (of
    the fresh networks, averaged over examples), ``all_fooled`` (fraction of
    examples fooling every fresh network) and ``attacked_accuracy`` (accuracy of
    the attacked networks themselves).
    """
    x, y = _check_xy(x, y, clip_min, clip_max)
    if test_seed == attack_seed:
        raise ValueError("test_seed must differ from attack_seed: the test ensemble "
                         "has to be drawn fresh")
    eps_list = [_check_epsilon(e) for e in epsilons]
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; expected one of {ATTACKS}")
    for t in targets:
        if t not in ("single", "ensemble"):
            raise ValueError(f"targets must be 'single' or 'ensemble', got {t!r}")

    def fresh(xs):
        return model.predict_members(xs, n=n, seed=test_seed, batch_size=batch_size,
                                     probabilities=False)

    clean = evaluate_members(fresh(x), y)
    rows = [{"target": "clean", "attack": "none", "epsilon": 0.0, **clean,
             "attacked_accuracy": clean["accuracy"]}]
    # attack() passes FGSM only the clip and batch arguments
    kw = dict(clip_min=clip_min, clip_max=clip_max, batch_size=batch_size,
              steps=pgd_steps, restarts=pgd_restarts, seed=attack_seed)
    for t in targets:
        fn = attack_function(model, 1 if t == "single" else n, attack_seed)
        for a in attacks:
            for eps in eps_list:
                x_adv = attack(fn, x, y, eps, a, **kw)
                attacked = np.concatenate(
                    [np.asarray(fn(tf.constant(x_adv[i:i + batch_size])))
                     for i in range(0, len(x_adv), batch_size)], axis=1)
                rows.append({"target": t, "attack": a, "epsilon": eps,
                             **evaluate_members(fresh(x_adv), y),
                             "attacked_accuracy": metrics.accuracy_summed_logits(
                                 attacked, y, logits=True)})
    return rows
