"""MC dropout (Gal & Ghahramani): dropout kept on at test time."""

import keras
import numpy as np
import tensorflow as tf

from hyperkeras import targets as targets_lib
from hyperkeras._members import MemberModel
from hyperkeras._utils import check_positive_int
from hyperkeras._utils import reject_loss_and_metrics
from hyperkeras._utils import stateless_noise


@keras.saving.register_keras_serializable(package="hyperkeras")
class MCDropout(MemberModel):
    """The target architecture with dropout on the input of every layer but the first.

    Dropout of rate ``rate`` is applied to the output of every hidden layer
    (after activation and pooling): channel-wise (``SpatialDropout2D``) on
    convolutional feature maps and unit-wise on dense features. So one dropout
    sample *is* a network of the target architecture: the next layer's kernel
    with the dropped input channels zeroed and the others scaled by
    ``1/(1-rate)``. ``sample(n, seed)`` returns such thinned weights (network i
    depends only on the seed and i, the same mask for every example), and the
    members are evaluated with the target's batched forward pass, so the same
    evaluation and attack code applies as to hypernetworks.

    Train with ``compile(optimizer)`` (always sparse cross-entropy from logits,
    reporting loss and accuracy; ``loss`` and ``metrics`` are not accepted)
    and ``fit``; ``call`` is the dropout network (stochastic when training,
    the deterministic weight-scaled network otherwise).
    """

    def __init__(self, target, rate=0.5, samples=100, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.target = targets_lib.get(target)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.samples = check_positive_int("samples", samples)
        self.eval_seed = int(seed)
        layers, self.weight_layers = self.target._keras_layers(dropout=self.rate)
        self.net = keras.Sequential(layers, name="dropout_net")
        self.net.build((None, *self.target.input_shape))
        self.built = True

    def call(self, x, training=False):
        return self.net(self.target.ensure_batch_input(x), training=training)

    def compile(self, optimizer="adam", **kwargs):
        """Only the optimizer (and Keras options): no ``loss`` or ``metrics``.

        The sampling interface (``sample``, ``predict_members``, evaluation)
        treats the network's outputs as class logits, so the loss is fixed.
        """
        kwargs = reject_loss_and_metrics(
            self, kwargs, "sparse categorical cross-entropy on its logits",
            reports="loss, accuracy")
        super().compile(optimizer=optimizer,
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"], **kwargs)

    def sample(self, n=None, seed=None):
        """``n`` thinned networks: a list of ``(kernel [n,...], bias [n,...])``."""
        n = self.samples if n is None else check_positive_int("n", n)
        seed = self.eval_seed if seed is None else int(seed)
        infos = self.target.layers
        channels = [info.input_shape[-1] for info in infos[1:]]
        keep = 1.0 - self.rate
        if channels:
            u = stateless_noise(n, sum(channels), seed, "uniform", 0.0, 1.0)
            masks = tf.cast(u < keep, tf.float32) / keep
            masks = tf.split(masks, channels, axis=1)
        params = []
        for i, (info, layer) in enumerate(zip(infos, self.weight_layers)):
            kernel = tf.broadcast_to(tf.convert_to_tensor(layer.kernel), [n, *info.kernel_shape])
            bias = tf.broadcast_to(tf.convert_to_tensor(layer.bias), [n, *info.bias_shape])
            if i > 0:
                m = masks[i - 1]                                  # [n, C_in]
                if info.kind == "conv":
                    kernel = kernel * m[:, None, None, :, None]
                else:
                    # Flattened NHWC features: the channel index runs fastest.
                    reps = int(np.prod(info.input_shape[:-1]))
                    kernel = kernel * tf.tile(m, [1, reps])[:, :, None]
            params.append((kernel, bias))
        return params

    def get_config(self):
        return {"target": self.target.get_config(), "rate": self.rate,
                "samples": self.samples, "seed": self.eval_seed, "name": self.name}
