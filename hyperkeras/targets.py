"""Target networks: the networks whose weights a hypernetwork generates.

A target is declared as a list of :class:`Conv` and :class:`Dense` layer specs.
From it the library derives every parameter shape (Keras layouts: conv kernels
``[kh, kw, Cin, Cout]``, dense kernels ``[Din, Dout]``), the filters of each
layer and their fan-in, and a batched forward pass that evaluates K parameter
sets at once.

Parameters of K networks are a list with one ``(kernel, bias)`` pair per layer,
each with a leading K axis: conv ``([K, kh, kw, Cin, Cout], [K, Cout])``, dense
``([K, Din, Dout], [K, Dout])``.
"""

import dataclasses
import math
import numbers

import keras
import tensorflow as tf

from hyperkeras import ops
from hyperkeras.ops._fallback import ACTIVATIONS as _ACTIVATIONS
from hyperkeras.ops._fallback import apply_activation


def _check_int(what, value):
    """``value`` as a Python int; ``ValueError`` naming ``what`` unless integral.

    Python and numpy integers are accepted; floats (even 3.0), bools and
    anything else are rejected, so no size is silently truncated.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def _normalise_ints(spec, fields):
    for field in fields:
        object.__setattr__(spec, field, _check_int(
            f"{type(spec).__name__}.{field}", getattr(spec, field)))


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-D convolution, stride 1, optionally followed by 2x2/2 max-pooling."""
    filters: int
    kernel_size: int = 5
    padding: str = "SAME"
    activation: str = "relu"
    alpha: float = 0.2
    pool: bool = False
    pool_padding: str = "VALID"

    def __post_init__(self):
        _normalise_ints(self, ("filters", "kernel_size"))


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully-connected layer; a Dense after a Conv flattens (NHWC order)."""
    units: int
    activation: str = "relu"
    alpha: float = 0.2

    def __post_init__(self):
        _normalise_ints(self, ("units",))


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Derived facts about one target layer."""
    name: str
    spec: object
    kind: str              # "conv" or "dense"
    input_shape: tuple     # per-example shape entering the layer
    output_shape: tuple    # per-example shape leaving it (after pooling)
    kernel_shape: tuple
    bias_shape: tuple

    @property
    def filters(self):
        """Number of filters (output channels or units)."""
        return self.kernel_shape[-1]

    @property
    def fan_in(self):
        """Weights per filter, bias excluded."""
        return math.prod(self.kernel_shape[:-1])

    @property
    def filter_size(self):
        """Entries per filter including its bias."""
        return self.fan_in + 1

    @property
    def num_params(self):
        return self.filters * self.filter_size


class TargetNetwork:
    """A declarative target network.

    Args:
      input_shape: per-example input shape, ``(H, W, C)`` for images or
        ``(D,)`` for vectors.
      layers: sequence of :class:`Conv` / :class:`Dense` specs. The last layer
        produces the outputs (logits for classification).
      name: a label used in layer names and reports.
    """

    def __init__(self, input_shape, layers, name="target"):
        try:
            dims = tuple(input_shape)
        except TypeError:
            raise ValueError(f"input_shape must be a sequence of integers, got "
                             f"{input_shape!r}") from None
        self.input_shape = tuple(_check_int(f"input_shape[{i}]", d) for i, d in enumerate(dims))
        self.specs = tuple(layers)
        self.name = name
        if not self.specs:
            raise ValueError("A target network needs at least one layer.")
        if any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must be positive, got {self.input_shape}")
        self.layers = self._derive()

    def _derive(self):
        infos, shape = [], self.input_shape
        for i, spec in enumerate(self.specs):
            name = f"layer{i + 1}"
            if isinstance(spec, Conv):
                self._check_common(spec, name, spec.filters)
                if len(shape) != 3:
                    raise ValueError(
                        f"{name}: Conv needs an (H, W, C) input but the shapes do "
                        f"not chain: it receives {shape}")
                for p in (spec.padding, spec.pool_padding):
                    if p not in ("SAME", "VALID"):
                        raise ValueError(f"{name}: padding must be SAME or VALID, got {p!r}")
                h, w, c = shape
                k = spec.kernel_size
                if k < 1:
                    raise ValueError(f"{name}: kernel_size must be >= 1, got {k}")
                oh, ow = (ops.conv_output_size(n, k, spec.padding, spec.pool,
                                               spec.pool_padding) for n in (h, w))
                if oh < 1 or ow < 1:
                    raise ValueError(
                        f"{name}: the target's shapes do not chain: a {k}x{k} "
                        f"{spec.padding} conv{' + pool' if spec.pool else ''} on "
                        f"{h}x{w} leaves {oh}x{ow}")
                out = (oh, ow, spec.filters)
                infos.append(LayerInfo(name, spec, "conv", shape, out,
                                       (k, k, c, spec.filters), (spec.filters,)))
            elif isinstance(spec, Dense):
                self._check_common(spec, name, spec.units)
                din = math.prod(shape)
                out = (spec.units,)
                infos.append(LayerInfo(name, spec, "dense", shape, out,
                                       (din, spec.units), (spec.units,)))
            else:
                raise TypeError(f"{name}: expected a Conv or Dense spec, got {spec!r}")
            shape = out
        return tuple(infos)

    @staticmethod
    def _check_common(spec, name, n):
        if int(n) < 1:
            raise ValueError(f"{name}: a layer needs at least one filter, got {n}")
        if spec.activation not in _ACTIVATIONS:
            raise ValueError(f"{name}: unknown activation {spec.activation!r}; "
                             f"expected one of {_ACTIVATIONS}")

    @property
    def output_dim(self):
        return self.layers[-1].output_shape[-1]

    @property
    def num_params(self):
        return sum(l.num_params for l in self.layers)

    @property
    def param_shapes(self):
        """``[(kernel_shape, bias_shape), ...]`` of one network."""
        return [(l.kernel_shape, l.bias_shape) for l in self.layers]

    def __repr__(self):
        parts = ", ".join(f"{l.kind}{l.kernel_shape}" for l in self.layers)
        return f"TargetNetwork({self.name!r}, input={self.input_shape}, [{parts}])"

    def get_config(self):
        layers = [{**dataclasses.asdict(s), "type": type(s).__name__} for s in self.specs]
        return {"input_shape": list(self.input_shape), "layers": layers, "name": self.name}

    @classmethod
    def from_config(cls, config):
        if isinstance(config, (TargetNetwork, str)):
            return get(config)
        if not isinstance(config, dict):
            raise TypeError(f"a target config must be a dict, got {config!r}")
        missing = [k for k in ("input_shape", "layers") if k not in config]
        if missing:
            raise ValueError(
                f"target config is missing {', '.join(repr(k) for k in missing)}; "
                "expected {'input_shape': [...], 'layers': [{'type': 'Conv' | "
                f"'Dense', ...}}, ...], 'name': ...}}, got keys {sorted(config)}")
        kinds = {"Conv": Conv, "Dense": Dense}
        layers = []
        for i, d in enumerate(config["layers"]):
            where = f"target config layer {i}"
            if not isinstance(d, dict):
                raise ValueError(f"{where} must be a dict, got {d!r}")
            d = dict(d)
            kind = d.pop("type", None)
            if kind not in kinds:
                raise ValueError(f"{where} has type {kind!r}; expected 'Conv' or 'Dense'")
            fields = {f.name for f in dataclasses.fields(kinds[kind])}
            unknown = sorted(set(d) - fields)
            if unknown:
                raise ValueError(f"{where} ({kind}) has unknown field(s) {unknown}; "
                                 f"accepted: {sorted(fields)}")
            try:
                layers.append(kinds[kind](**d))
            except TypeError as e:
                raise ValueError(f"{where} ({kind}): {e}") from e
        return cls(config["input_shape"], layers, config.get("name", "target"))

    def to_filters(self, params):
        """Per-layer ``[K, filters, filter_size]`` (weights then bias) views."""
        out = []
        for info, (kernel, bias) in zip(self.layers, params):
            k = tf.shape(kernel)[0]
            wmat = tf.reshape(kernel, [k, info.fan_in, info.filters])
            out.append(tf.concat([tf.transpose(wmat, [0, 2, 1]), bias[:, :, None]], -1))
        return out

    def from_filters(self, filters):
        """Inverse of :meth:`to_filters`."""
        params = []
        for info, f in zip(self.layers, filters):
            k = tf.shape(f)[0]
            wmat = tf.transpose(f[:, :, :-1], [0, 2, 1])
            params.append((tf.reshape(wmat, tf.concat([[k], info.kernel_shape], 0)),
                           f[:, :, -1]))
        return params

    def flatten(self, params):
        """``[K, num_params]``: all weights of each network in one vector."""
        k = tf.shape(params[0][0])[0]
        return tf.concat([tf.reshape(t, [k, -1]) for pair in params for t in pair], 1)

    def unflatten(self, flat):
        """Inverse of :meth:`flatten`."""
        k = tf.shape(flat)[0]
        params, start = [], 0
        for info in self.layers:
            pair = []
            for shape in (info.kernel_shape, info.bias_shape):
                n = math.prod(shape)
                pair.append(tf.reshape(flat[:, start:start + n], tf.concat([[k], shape], 0)))
                start += n
            params.append(tuple(pair))
        return params

    def check_input(self, x, num_networks=None):
        """Validate ``x``: ``[B, *input_shape]`` or ``[K, B, *input_shape]``."""
        shape = tuple(x.shape)
        n = len(self.input_shape)
        if len(shape) == n + 1:
            per = shape[1:]
        elif len(shape) == n + 2:
            per = shape[2:]
            if (num_networks is not None and shape[0] is not None
                    and shape[0] != num_networks):
                raise ValueError(
                    f"per-network input holds {shape[0]} networks' batches but "
                    f"{num_networks} parameter sets were given")
        else:
            raise ValueError(
                f"input must have shape [B, {', '.join(map(str, self.input_shape))}] "
                f"or [K, B, ...] for target {self.name!r}, got {list(shape)}")
        if any(a is not None and a != b for a, b in zip(per, self.input_shape)):
            what = "channels" if n == 3 and per[-1] != self.input_shape[-1] else "shape"
            raise ValueError(
                f"wrong input {what}: target {self.name!r} expects per-example "
                f"shape {self.input_shape}, got {tuple(per)}")
        return len(shape) == n + 2

    def check_batch_shape(self, shape):
        """Check a static shape (None for unknown sizes) as one batch ``[B, *input_shape]``."""
        shape = tuple(shape)
        if len(shape) != len(self.input_shape) + 1:
            raise ValueError(
                f"input must have shape [B, {', '.join(map(str, self.input_shape))}] "
                f"for target {self.name!r}, got {list(shape)}")
        self.check_input(tf.TensorSpec(shape))

    def ensure_batch_input(self, x):
        """``x`` checked as one batch ``[B, *input_shape]`` (``call``'s form).

        Statically known shapes are checked at once (clear ``ValueError``).
        Inside a function traced with relaxed shapes (Keras after the first
        ``predict``) the rank or sizes may be unknown; then the shape is
        checked when the graph runs and fixed for the rest of the trace.
        """
        x = tf.convert_to_tensor(x)
        if x.shape.rank is not None:
            self.check_batch_shape(x.shape)
            if all(d is not None for d in x.shape[1:]):
                return x
        return tf.ensure_shape(x, [None, *self.input_shape])

    def forward(self, params, x):
        """Evaluate K networks: returns ``[K, B, output_dim]`` outputs (logits).

        ``x`` is either one batch ``[B, ...]`` seen by every network or
        per-network batches ``[K, B, ...]``.
        """
        if len(params) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} (kernel, bias) pairs, got {len(params)}")
        h = tf.convert_to_tensor(x)
        if h.dtype != tf.float32:
            if not (h.dtype.is_floating or h.dtype.is_integer):
                raise TypeError(f"input dtype must be numeric, got {h.dtype}")
            h = tf.cast(h, tf.float32)
        per_network = self.check_input(h, params[0][0].shape[0])
        for info, (kernel, bias) in zip(self.layers, params):
            spec = info.spec
            if info.kind == "conv":  # an empty batch (B = 0) gives an empty result
                h = ops.batched_conv2d(h, kernel, bias, padding=spec.padding,
                                       activation=spec.activation, alpha=spec.alpha,
                                       pool=spec.pool, pool_padding=spec.pool_padding)
            else:
                # the static fan-in, not -1: an empty batch cannot infer it
                hs = tf.shape(h)
                if per_network:
                    h = tf.matmul(tf.reshape(h, [hs[0], hs[1], info.fan_in]), kernel)
                else:
                    h = tf.einsum("bd,kdu->kbu", tf.reshape(h, [hs[0], info.fan_in]), kernel)
                h = apply_activation(h + bias[:, None, :], spec.activation, spec.alpha)
            per_network = True
        return h

    def _keras_layers(self, dropout=None):
        """``(layers, weighted)``: Keras layers of this architecture, in order,
        and those among them that hold a kernel and bias (one per target layer).

        With a ``dropout`` rate, the input of every layer but the first gets
        dropout: channel-wise (``SpatialDropout2D``) on feature maps, unit-wise
        on vectors (:class:`~hyperkeras.baselines.MCDropout`).
        """
        layers, weighted = [], []
        for i, info in enumerate(self.layers):
            spec = info.spec
            if dropout is not None and i > 0:
                layers.append(keras.layers.SpatialDropout2D(dropout)
                              if len(info.input_shape) == 3 else keras.layers.Dropout(dropout))
            if info.kind == "dense" and len(info.input_shape) > 1:
                layers.append(keras.layers.Flatten())
            act = {"none": None, "relu": "relu"}.get(spec.activation)
            if info.kind == "conv":
                weighted.append(keras.layers.Conv2D(
                    spec.filters, spec.kernel_size, padding=spec.padding.lower(),
                    activation=act))
            else:
                weighted.append(keras.layers.Dense(spec.units, activation=act))
            layers.append(weighted[-1])
            if spec.activation == "leaky_relu":
                layers.append(keras.layers.LeakyReLU(negative_slope=spec.alpha))
            if info.kind == "conv" and spec.pool:
                layers.append(keras.layers.MaxPooling2D(2, padding=spec.pool_padding.lower()))
        return layers, weighted

    def keras_model(self, params=None, index=0):
        """An ordinary ``keras.Sequential`` with this architecture.

        With ``params`` given, it holds network ``index`` of those weights.
        """
        layers, _ = self._keras_layers()
        model = keras.Sequential([keras.Input(self.input_shape), *layers], name=self.name)
        if params is not None:
            model.set_weights([keras.ops.convert_to_numpy(t[index]) for pair in params
                               for t in pair])
        return model


def hypergan_mnist():
    """HyperGAN's MNIST target: conv 32x1x5x5, conv 32x32x5x5, linear 512x10.

    VALID convolutions, leaky-ReLU and 2x2 max-pooling after each conv:
    28 -> 24 -> 12 -> 8 -> 4, and 4*4*32 = 512 features into the classifier.
    """
    return TargetNetwork((28, 28, 1), [
        Conv(32, 5, "VALID", "leaky_relu", pool=True),
        Conv(32, 5, "VALID", "leaky_relu", pool=True),
        Dense(10, "none"),
    ], name="hypergan_mnist")


def hypergan_cifar10():
    """HyperGAN's CIFAR-10 target (supplementary Table 2): 3 conv + 2 linear.

    Conv 16x3x3x3, 32x16x3x3, 64x32x3x3 (the table prints the last as 32x64, which
    does not chain), VALID 3x3 convs with pooling: 32 -> 30 -> 15 -> 13 -> 6 ->
    4 -> 2, so 2*2*64 = 256 features into linear 256x128 and 128x10.
    """
    return TargetNetwork((32, 32, 3), [
        Conv(16, 3, "VALID", "leaky_relu", pool=True),
        Conv(32, 3, "VALID", "leaky_relu", pool=True),
        Conv(64, 3, "VALID", "leaky_relu", pool=True),
        Dense(128, "leaky_relu"),
        Dense(10, "none"),
    ], name="hypergan_cifar10")


def deutsch_mnist():
    """Deutsch et al.'s MNIST target (their Table 1): 20018 weights.

    conv 5x5 SAME 32 filters, ReLU, 2x2 pool SAME; conv 5x5 SAME 16, ReLU,
    pool SAME; dense 8 ReLU; dense 10.
    """
    return TargetNetwork((28, 28, 1), [
        Conv(32, 5, "SAME", "relu", pool=True, pool_padding="SAME"),
        Conv(16, 5, "SAME", "relu", pool=True, pool_padding="SAME"),
        Dense(8, "relu"),
        Dense(10, "none"),
    ], name="deutsch_mnist")


def lenet5():
    """LeNet-5 on 28x28x1 images, as in the usual Fashion-MNIST baselines
    (ReLU instead of the original tanh): conv 6 5x5 SAME + pool, conv 16 5x5
    VALID + pool (28 -> 14 -> 10 -> 5), dense 120, dense 84, dense 10;
    61,706 weights.
    """
    return TargetNetwork((28, 28, 1), [
        Conv(6, 5, "SAME", "relu", pool=True),
        Conv(16, 5, "VALID", "relu", pool=True),
        Dense(120, "relu"),
        Dense(84, "relu"),
        Dense(10, "none"),
    ], name="lenet5")


def regression_1d():
    """The 1-100-1 ReLU regression network of HyperGAN's toy experiment."""
    return TargetNetwork((1,), [Dense(100, "relu"), Dense(1, "none")], name="regression_1d")


PRESETS = {f.__name__: f for f in (hypergan_mnist, hypergan_cifar10, deutsch_mnist, lenet5,
                                    regression_1d)}


def get(target):
    """A :class:`TargetNetwork` from an instance, a preset name or a config."""
    if isinstance(target, TargetNetwork):
        return target
    if isinstance(target, str):
        if target not in PRESETS:
            raise ValueError(f"Unknown target {target!r}; presets: {sorted(PRESETS)}")
        return PRESETS[target]()
    if isinstance(target, dict):
        return TargetNetwork.from_config(target)
    raise TypeError(f"Cannot make a target network from {target!r}")
