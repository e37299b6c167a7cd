"""What hypernetworks and baselines share: the member-prediction protocol
(:class:`MemberModel`) and the one training step of models with their own
objective (:class:`OwnObjectiveModel`: the hypernetworks, ``DeepEnsemble``).
"""

import keras
import numpy as np
import tensorflow as tf

from hyperkeras._utils import check_positive_int
from hyperkeras._utils import num_examples
from hyperkeras._utils import num_replicas
from hyperkeras._utils import reject_loss_and_metrics
from hyperkeras._utils import step_logs
from hyperkeras._utils import weight_at
from hyperkeras.losses import members_mean_entropy
from hyperkeras.losses import members_mutual_information
from hyperkeras.losses import nontrue_class_diversity

TASKS = ("classification", "regression")
OUTLIER_KINDS = ("blend", "rotate")


def check_outlier_kind(kind, input_shape):
    """``kind`` if it is one of :data:`OUTLIER_KINDS` and fits images of
    ``input_shape`` ("rotate" needs square ``[H, H, C]`` images)."""
    if kind not in OUTLIER_KINDS:
        raise ValueError(f"outlier_kind must be one of {OUTLIER_KINDS}, got {kind!r}")
    if kind == "rotate" and (len(input_shape) != 3 or input_shape[0] != input_shape[1]):
        raise ValueError("outlier_kind='rotate' needs square images [H, H, C], got "
                         f"input shape {tuple(input_shape)}")
    return kind


def _first_leaf_shape(x):
    """Static shape of the inputs in ``x`` (array, tensor, dataset), or None."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        while isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]
        return getattr(spec, "shape", None)
    return None if isinstance(x, (tuple, list, dict)) else getattr(x, "shape", None)


def disagreement(outputs):
    """Mean over examples of ``1 - sum_c n_c (n_c - 1) / (K (K - 1))``, the
    fraction of pairs of the K >= 2 networks that predict different classes
    (``n_c`` of them predict c), from ``[K, B, classes]`` logits; in-graph
    twin of :func:`hyperkeras.evaluation.disagreement`."""
    k = tf.cast(tf.shape(outputs)[0], tf.float32)
    pred = tf.one_hot(tf.argmax(outputs, -1), tf.shape(outputs)[-1])   # [K, B, C]
    counts = tf.reduce_sum(pred, 0)                                      # [B, C]
    agree = tf.reduce_sum(counts * (counts - 1.0), -1) / (k * (k - 1.0))
    return 1.0 - tf.reduce_mean(agree)


class MemberModel(keras.Model):
    """A Keras model that predicts with member networks of its ``target``.

    Subclasses set ``self.target`` and define ``sample(n, seed)`` (a list of
    ``(kernel [n, ...], bias [n, ...])``); they may set ``task`` and override
    :meth:`member_params` (the members used by default) and ``call``.
    """

    task = "classification"

    def _check_keras_input(self, x):
        # Keras traces with relaxed shapes after the first call: a wrongly
        # shaped later input would fail deep in the graph without this check.
        shape = _first_leaf_shape(x)
        if shape is not None and getattr(shape, "rank", 0) is not None:  # rank known
            self.target.check_batch_shape(shape)

    def predict(self, x, *args, **kwargs):
        self._check_keras_input(x)
        return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_keras_input(x)
        return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._check_keras_input(x)
        return super().fit(x, *args, **kwargs)

    def member_params(self, n=None, seed=None):
        """The members ``member_logits`` uses when given no ``params``."""
        return self.sample(n, seed)

    def member_logits(self, x, n=None, seed=None, params=None):
        """Outputs (logits) of each member: ``[n, B, outputs]``.

        ``params`` (from ``sample``) fixes the members; otherwise they are
        :meth:`member_params` ``(n, seed)``. Differentiable with respect to ``x``.
        """
        if params is None:
            params = self.member_params(n, seed)
        return self.target.forward(params, x)

    def member_probabilities(self, x, n=None, seed=None, params=None):
        """Softmax probabilities of each member, ``[n, B, classes]``."""
        return tf.nn.softmax(self.member_logits(x, n, seed, params), axis=-1)

    def sample_flat(self, n=None, seed=None):
        """``[n, num_params]`` weight vectors of ``sample(n, seed)``."""
        return self.target.flatten(self.sample(n, seed))

    def predict_members(self, x, n=None, seed=None, batch_size=500, probabilities=True):
        """Numpy ``[n, N, outputs]`` member outputs over a large array, batched.

        Probabilities for classification unless ``probabilities=False``;
        logits (outputs) otherwise. No examples (N = 0) give ``[n, 0, outputs]``.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        params = self.member_params(n, seed)
        fn = self.member_probabilities if probabilities and self.task == "classification" \
            else self.member_logits
        outs = [keras.ops.convert_to_numpy(fn(x[i:i + batch_size], params=params))
                for i in range(0, max(len(x), 1), batch_size)]
        return np.concatenate(outs, axis=1)

    def call(self, x, training=False):
        """Mean of the default members' probabilities (classification) or outputs."""
        out = self.member_logits(self.target.ensure_batch_input(x))
        if self.task == "classification":
            out = tf.nn.softmax(out, axis=-1)
        return tf.reduce_mean(out, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.target.output_dim)

    def get_compile_config(self):
        """What ``compile`` was given, so ``.keras`` loading can compile again."""
        if not self.compiled:
            return None
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(**{k: keras.saving.deserialize_keras_object(v)
                        if isinstance(v, dict) and "class_name" in v else v
                        for k, v in config.items()})
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)


class OwnObjectiveModel(MemberModel):
    """A :class:`MemberModel` trained by its own objective (not a compiled loss).

    ``train_step``: split the batch per network if ``batch_mode == "split"``;
    under a tape, ``training_members()`` gives ``(params, state)``, the
    step's networks, whose ``task_loss`` ``objective(task_loss, state)`` turns
    into the minimised loss, less ``diversity_weight`` times the step
    networks' :func:`~hyperkeras.losses.nontrue_class_diversity` and
    ``outlier_diversity_weight`` times their
    :func:`~hyperkeras.losses.members_mutual_information` on
    ``pseudo_outliers(x)`` (:meth:`with_outliers`) and
    ``outlier_entropy_weight`` times their
    :func:`~hyperkeras.losses.members_mean_entropy` there (the loss times
    :attr:`loss_scale`, divided by the replicas);
    ``trained_variables()`` are updated, then ``after_update(state)`` runs
    (e.g. a second player).
    Both hooks return ``{name: value}`` for ``objective_metric_names``.

    Reported: the task loss (``task_loss_name``), ``accuracy``
    (classification), the objective's metrics and, for classification with
    shared batches and ``networks_per_step >= 2``, ``disagreement`` of the
    step's networks (:func:`disagreement`; with ``batch_mode="split"``, where
    the networks see different images, only on the diversity slice that the
    diversity term adds, see :attr:`uses_diversity_slice`). ``evaluate`` reports the task
    loss and accuracy of the default members (:meth:`member_params`).
    """

    batch_mode = "shared"
    diversity_weight = 0.0
    diversity_examples = 16
    outlier_diversity_weight = 0.0
    outlier_entropy_weight = 0.0
    outlier_kind = "blend"
    task_loss_name = "task_loss"
    objective_metric_names = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task_trackers = [keras.metrics.Mean(name=self.task_loss_name),
                              keras.metrics.Mean(name="accuracy")]
        self.objective_trackers = [keras.metrics.Mean(name=n) for n in self.objective_metric_names]
        self.disagreement_tracker = keras.metrics.Mean(name="disagreement")

    def training_members(self):
        raise NotImplementedError

    def objective(self, task_loss, state):
        return task_loss, {}

    def after_update(self, state):
        return {}

    def trained_variables(self):
        return self.trainable_variables

    @property
    def loss_scale(self):
        """What the step's loss (objective and terms, all means over the
        step's networks) is multiplied by before the gradient: 1 for
        hypernetworks; ``DeepEnsemble`` sums its members' losses."""
        return 1.0

    def pseudo_outliers(self, x):
        """Images no network should be sure of, made from the batch ``x``
        (``outlier_kind``): each image blended with the next one (weights drawn
        from U(0.3, 0.7)), or turned a quarter (left or right, drawn for each
        image); the draws come from the model's ``noise_source``
        (:class:`~hyperkeras.layers.NoiseSource`)."""
        if getattr(self, "noise_source", None) is None:
            raise ValueError(f"{type(self).__name__} draws no pseudo-outliers: it has no "
                             "noise source (a DeepEnsemble has one only with "
                             "outlier_entropy_weight > 0)")
        shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        draw = tf.cast(self.noise_source.uniform(shape, 0.0, 1.0), x.dtype)
        if self.outlier_kind == "rotate":
            left = tf.transpose(x, [0, 2, 1, 3])[:, ::-1]       # rot90, counter-clockwise
            return tf.where(draw < 0.5, left, left[:, ::-1, ::-1])  # or clockwise
        mix = 0.3 + 0.4 * draw
        return mix * x + (1.0 - mix) * tf.roll(x, shift=1, axis=0)

    def task_metrics(self):
        return self.task_trackers[:2 if self.task == "classification" else 1]

    @property
    def supports_diversity(self):
        """Whether the step's networks can be compared: classification with
        at least two networks per step (what the diversity terms need)."""
        return self.task == "classification" and self.networks_per_step >= 2

    @property
    def tracks_disagreement(self):
        return self.supports_diversity and (self.batch_mode == "shared"
                                            or self.uses_diversity_slice)

    @property
    def uses_diversity_slice(self):
        """Split batches with the diversity term on: every network also sees
        the first ``diversity_examples`` images of the first network's batch,
        where diversity and disagreement are measured."""
        return self.batch_mode == "split" and bool(self.diversity_weight)

    @property
    def metrics(self):
        out = self.task_metrics() + self.objective_trackers
        return out + [self.disagreement_tracker] if self.tracks_disagreement else out

    def update_task_metrics(self, task_loss, acc, weight):
        """Batch means weighted by the batch's examples: a short last batch
        counts for its size, so epoch values are means over examples."""
        for tracker, value in zip(self.task_trackers, (task_loss, acc)):
            if value is not None:
                tracker.update_state(value, sample_weight=weight)

    def task_loss(self, outputs, y, shared=None):
        """Mean task loss and accuracy (None for regression) of ``[K, B, ...]`` outputs.

        ``y`` is ``[B]`` (or ``[B, 1]``) for shared batches and ``[K, B]`` for
        per-network ones (default: shared unless ``batch_mode == "split"``).
        """
        shared = self.batch_mode == "shared" if shared is None else shared
        label_rank = 1 if shared else 2
        if y.shape.rank == label_rank + 1 and y.shape[-1] == 1:
            y = tf.squeeze(y, -1)
        if y.shape.rank != label_rank:
            raise ValueError(f"labels must have rank {label_rank} "
                             f"({'shared' if shared else 'per-network'} batches), "
                             f"got shape {y.shape}")
        if shared:
            y = tf.broadcast_to(y[None], tf.concat([tf.shape(outputs)[:1], tf.shape(y)], 0))
        if self.task == "classification":
            y = tf.cast(y, tf.int32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=outputs))
            pred = tf.argmax(outputs, -1, output_type=tf.int32)
            acc = tf.reduce_mean(tf.cast(tf.equal(pred, y), tf.float32))
            return loss, acc
        return tf.reduce_mean(tf.square(outputs - tf.cast(y, tf.float32)[..., None])), None

    def compile_own_objective(self, optimizer, kwargs, objective):
        """``keras.Model.compile`` without ``loss``/metrics (see ``objective``)."""
        kwargs = reject_loss_and_metrics(self, kwargs, objective)
        kwargs.setdefault("jit_compile", False)   # the custom op is opaque to XLA
        super().compile(optimizer=optimizer, **kwargs)

    def split_batch(self, x, y):
        """Per-network batches ``[K, b, ...]`` in "split" mode, else as is."""
        if self.batch_mode == "shared":
            return x, y
        k = self.networks_per_step
        b = tf.shape(x)[0] // k
        tf.debugging.assert_equal(
            tf.shape(x)[0] % k, 0,
            message=f"batch_mode='split' needs a batch size divisible by networks_per_step={k}")
        return tuple(tf.reshape(t[:b * k], tf.concat([[k, b], tf.shape(t)[1:]], 0))
                     for t in (x, y))

    def with_outliers(self, x):
        """The batch followed by ``pseudo_outliers``, every network's outputs
        ``[K, 2b, ...]`` splitting into batch and outliers. Per-network
        batches ``[K, b, ...]`` ("split") all get the outliers made from the
        first network's batch, so the networks are compared on the same images."""
        return self._step_inputs(x, outliers=True, diversity_slice=False)[0]

    def _step_inputs(self, x, y=None, outliers=False, diversity_slice=None):
        """The step's inputs and the sizes their outputs split into along the
        example axis: the batch, then (split batches with the diversity term)
        the diversity slice, then (``outliers``) the pseudo-outliers.

        Shared batches ``[B, ...]`` are concatenated along axis 0, per-network
        ones ``[K, b, ...]`` along axis 1 (the slice and the outliers, made
        from the first network's batch, broadcast to every network). Returns
        ``(inputs, sizes, slice_labels)``; ``slice_labels`` is None without a
        slice. ``diversity_slice`` (default :attr:`uses_diversity_slice`)
        adds the slice or leaves it out."""
        if self.batch_mode == "shared":
            if not outliers:
                return x, [tf.shape(x)[0]], None
            parts = [x, self.pseudo_outliers(x)]
            return tf.concat(parts, 0), [tf.shape(p)[0] for p in parts], None
        k = tf.shape(x)[0]
        parts, slice_labels = [x], None
        if self.uses_diversity_slice if diversity_slice is None else diversity_slice:
            n = tf.minimum(self.diversity_examples, tf.shape(x)[1])
            parts.append(tf.broadcast_to(x[:1, :n], tf.concat([[k, n], tf.shape(x)[2:]], 0)))
            slice_labels = y[0, :n] if y is not None else None
        if outliers:
            parts.append(tf.broadcast_to(self.pseudo_outliers(x[0])[None], tf.shape(x)))
        if len(parts) == 1:
            return x, [tf.shape(x)[1]], slice_labels
        return tf.concat(parts, 1), [tf.shape(p)[1] for p in parts], slice_labels

    def train_step(self, data):
        x, y = data[0], data[1]
        weight = num_examples(x)
        x, y = self.split_batch(x, y)
        variables = self.trained_variables()
        with tf.GradientTape() as tape:
            params, state = self.training_members()
            outliers = bool(self.outlier_diversity_weight or self.outlier_entropy_weight)
            # One pass over the batch, the diversity slice and the outliers.
            inputs, sizes, slice_y = self._step_inputs(x, y, outliers)
            pieces = tf.split(self.target.forward(params, inputs), sizes, axis=1)
            outputs = pieces[0]
            outlier_outputs = pieces[-1] if outliers else None
            # Diversity is measured where the networks see the same images.
            shared_outputs, shared_y = ((pieces[1], slice_y) if self.uses_diversity_slice
                                        else (outputs, y))
            task_loss, acc = self.task_loss(outputs, y)
            loss, logs = self.objective(task_loss, state)
            if self.diversity_weight:
                diversity_weight = weight_at(self.diversity_weight, self.optimizer.iterations)
                loss -= diversity_weight * nontrue_class_diversity(shared_outputs, shared_y)
            if self.outlier_diversity_weight:
                loss -= self.outlier_diversity_weight * members_mutual_information(
                    outlier_outputs)
            if self.outlier_entropy_weight:
                loss -= self.outlier_entropy_weight * members_mean_entropy(outlier_outputs)
            if "loss" in logs:
                logs = {**logs, "loss": loss}
            scaled = self.loss_scale * loss / num_replicas()
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        logs = {**logs, **self.after_update(state)}
        self.update_task_metrics(task_loss, acc, weight)
        for tracker in self.objective_trackers:
            tracker.update_state(logs[tracker.name])
        if self.tracks_disagreement:
            self.disagreement_tracker.update_state(disagreement(shared_outputs),
                                                   sample_weight=num_examples(shared_outputs[0]))
        return step_logs(self.metrics)

    def test_step(self, data):
        x, y = data[0], data[1]
        task_loss, acc = self.task_loss(self.member_logits(x), y, shared=True)
        self.update_task_metrics(task_loss, acc, num_examples(x))
        return step_logs(self.task_metrics())
