"""What the GPU check runs: geometry helpers, the correctness sweep, the MNIST
target layers and the speed rows. Pure Python (no NumPy / torch needed)."""

import dataclasses
import random

PADDINGS = ("SAME", "VALID")
ACTIVATIONS = ("none", "relu", "leaky_relu")
# cudaErrorInvalidConfiguration: what hk_batched_conv_cuda returns when the
# filter does not fit the shared-memory tile (kh * kw > HK_GPU_MAX_TAPS).
CUDA_ERROR_INVALID_CONFIGURATION = 9


# --------------------------------------------------------------- geometry
def tf_same_pads(k):
    """TensorFlow's SAME padding for stride 1: (before, after) for a filter of
    size k. For even k the extra row/column goes *after* (bottom/right), which
    PyTorch's ``padding='same'`` / symmetric padding does not do."""
    before = (k - 1) // 2
    return before, k - 1 - before


def conv_hw(H, W, kh, kw, padding):
    """Spatial size of the stride-1 convolution (before pooling)."""
    if padding == "SAME":
        return H, W
    return H - kh + 1, W - kw + 1


def pool_hw(hc, wc, pool, pool_padding):
    """Spatial size after the optional 2x2/2 max-pool (as batched_conv.h)."""
    if not pool:
        return hc, wc
    if pool_padding == "SAME":
        return (hc + 1) // 2, (wc + 1) // 2
    return (hc // 2 if hc >= 2 else 0), (wc // 2 if wc >= 2 else 0)


# ------------------------------------------------------------------ cases
@dataclasses.dataclass(frozen=True)
class Case:
    """One batched-conv call: geometry, options and a seed for its data."""
    K: int
    B: int
    H: int
    W: int
    cin: int
    cout: int
    kh: int
    kw: int
    padding: str = "SAME"
    activation: str = "none"
    alpha: float = 0.2
    pool: bool = False
    pool_padding: str = "VALID"
    shared: bool = True
    bias: bool = True
    seed: int = 0
    expect_error: int = 0   # nonzero: the launcher must return this code
    tag: str = ""

    @property
    def conv_hw(self):
        return conv_hw(self.H, self.W, self.kh, self.kw, self.padding)

    @property
    def out_hw(self):
        hc, wc = self.conv_hw
        hc, wc = max(hc, 0), max(wc, 0)
        return pool_hw(hc, wc, self.pool, self.pool_padding)

    @property
    def x_shape(self):
        per = (self.B, self.H, self.W, self.cin)
        return per if self.shared else (self.K,) + per

    @property
    def w_shape(self):
        return (self.K, self.kh, self.kw, self.cin, self.cout)

    @property
    def y_shape(self):
        ho, wo = self.out_hw
        return (self.K, self.B, max(ho, 0), max(wo, 0), self.cout)

    @property
    def empty(self):
        ho, wo = self.out_hw
        return ho <= 0 or wo <= 0 or self.K * self.B * self.cout == 0

    @property
    def mask_needed(self):
        return self.pool or self.activation != "none"

    @property
    def name(self):
        pool = f"pool{self.pool_padding}" if self.pool else "nopool"
        s = (f"K{self.K}B{self.B}_{self.H}x{self.W}_c{self.cin}-{self.cout}"
             f"_k{self.kh}x{self.kw}_{'sh' if self.shared else 'pn'}"
             f"_{self.padding}_{self.activation}_{pool}")
        if not self.bias:
            s += "_nobias"
        if self.tag:
            s += "_" + self.tag
        return s

    def y_elems(self):
        n = 1
        for d in self.y_shape:
            n *= d
        return n

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["name"] = self.name
        return d


_KERNELS = [(5, 5), (3, 3), (2, 2), (4, 3), (1, 1), (3, 5), (7, 7), (2, 5)]
_CINS = [1, 13, 23, 3, 8, 40]       # 13, 23: not a multiple of the Cin tile;
_COUTS = [1, 5, 8, 17, 32]          # 40: several staged Cin chunks (5x5)


def correctness_sweep(seed=20261126):
    """Seeded sweep: every (input mode, padding, activation, pool) combination
    with varied odd/even sizes, Cin in {1, 3, 8, 13, 23, 40}, several kernel
    shapes (even ones exercise TF's SAME convention), plus fixed corner cases
    (K = 1000 shared and per network, 1x1 images, an empty VALID output, the
    MNIST layer shapes, several spatial tiles and Cout blocks, a filter too
    large for the tile that must be refused)."""
    rng = random.Random(seed)
    cases = []
    i = 0
    for shared in (True, False):
        for padding in PADDINGS:
            for activation in ACTIVATIONS:
                for pool, pool_padding in ((False, "VALID"), (True, "SAME"),
                                           (True, "VALID")):
                    kh, kw = _KERNELS[i % len(_KERNELS)]
                    lo_h = kh if padding == "VALID" else 1
                    lo_w = kw if padding == "VALID" else 1
                    cases.append(Case(
                        K=rng.choice([1, 2, 3, 7]), B=rng.choice([1, 2, 3]),
                        H=rng.randint(lo_h, lo_h + 20),
                        W=rng.randint(lo_w, lo_w + 20),
                        cin=_CINS[i % len(_CINS)],
                        cout=_COUTS[(i // 2) % len(_COUTS)], kh=kh, kw=kw,
                        padding=padding, activation=activation,
                        alpha=rng.choice([0.2, 0.1, 0.3]), pool=pool,
                        pool_padding=pool_padding, shared=shared,
                        bias=(i % 5) != 4, seed=seed + i))
                    i += 1
    fixed = [
        # K = 1000 networks, shared and per-network input
        Case(1000, 2, 7, 7, 3, 5, 3, 3, "SAME", "relu", 0.2, True, "SAME",
             True, tag="K1000"),
        Case(1000, 2, 9, 8, 2, 4, 3, 3, "VALID", "leaky_relu", 0.2, True,
             "VALID", False, tag="K1000"),
        # K = 1, B = 1, 1x1 image, partial SAME pool window
        Case(1, 1, 1, 1, 1, 1, 3, 3, "SAME", "leaky_relu", 0.2, True, "SAME",
             True),
        Case(1, 1, 1, 1, 1, 1, 1, 1, "VALID", "none", 0.2, False, "VALID",
             False),
        # VALID pool of a 1-row conv output: empty output, must succeed
        Case(2, 2, 1, 9, 3, 4, 1, 3, "SAME", "relu", 0.2, True, "VALID", True,
             tag="empty"),
        # several 16x16 spatial tiles, several Cout blocks, Cin chunks
        Case(3, 2, 37, 29, 23, 17, 5, 5, "SAME", "leaky_relu", 0.2, True,
             "SAME", True, tag="tiles"),
        Case(2, 2, 33, 35, 40, 9, 5, 5, "VALID", "relu", 0.2, False, "VALID",
             False, tag="chunks"),
        Case(2, 2, 9, 9, 64, 64, 3, 3, "SAME", "none", 0.2, True, "VALID",
             True, tag="wide"),
        # the MNIST target layers at small K, B
        Case(4, 3, 28, 28, 1, 32, 5, 5, "VALID", "leaky_relu", 0.2, True,
             "VALID", True, tag="hypergan1"),
        Case(4, 3, 12, 12, 32, 32, 5, 5, "VALID", "leaky_relu", 0.2, True,
             "VALID", False, tag="hypergan2"),
        Case(4, 3, 28, 28, 1, 32, 5, 5, "SAME", "relu", 0.2, True, "SAME",
             False, tag="deutsch1"),
        Case(4, 3, 14, 14, 32, 16, 5, 5, "SAME", "relu", 0.2, True, "SAME",
             True, tag="deutsch2"),
        # filter larger than the tile allows (17*17 > 256 taps): refused
        Case(1, 1, 20, 20, 1, 1, 17, 17, "SAME", "none", 0.2, False, "VALID",
             True, expect_error=CUDA_ERROR_INVALID_CONFIGURATION,
             tag="unsupported"),
    ]
    for j, c in enumerate(fixed):
        cases.append(dataclasses.replace(c, seed=seed + 1000 + j))
    return cases


def sanitizer_cases():
    """Small cases for compute-sanitizer: pooled (two Cin chunks, SAME, partial
    pool windows) and unpooled VALID per-network."""
    return [
        Case(2, 2, 9, 7, 13, 9, 5, 5, "SAME", "leaky_relu", 0.2, True, "SAME",
             True, seed=7),
        Case(2, 1, 11, 10, 3, 5, 3, 3, "VALID", "relu", 0.2, False, "VALID",
             False, seed=8),
    ]


# ------------------------------------------------------------- speed rows
# The conv layers of hyperkeras/targets.py's MNIST presets (written down here
# because the GPU machine has no TensorFlow to import hyperkeras with):
#   hypergan_mnist: Conv(32, 5, "VALID", "leaky_relu", pool=True)   28x28x1
#                   Conv(32, 5, "VALID", "leaky_relu", pool=True)   12x12x32
#                   (pool_padding VALID, alpha 0.2 = the Conv defaults)
#   deutsch_mnist:  Conv(32, 5, "SAME", "relu", pool=True, pool_padding="SAME")
#                   Conv(16, 5, "SAME", "relu", pool=True, pool_padding="SAME")
#                   on 28x28x1 then 14x14x32
LAYERS = {
    "hypergan_mnist_conv1": dict(H=28, W=28, cin=1, cout=32, kh=5, kw=5,
                                 padding="VALID", activation="leaky_relu",
                                 alpha=0.2, pool=True, pool_padding="VALID"),
    "hypergan_mnist_conv2": dict(H=12, W=12, cin=32, cout=32, kh=5, kw=5,
                                 padding="VALID", activation="leaky_relu",
                                 alpha=0.2, pool=True, pool_padding="VALID"),
    "deutsch_mnist_conv1": dict(H=28, W=28, cin=1, cout=32, kh=5, kw=5,
                                padding="SAME", activation="relu", alpha=0.2,
                                pool=True, pool_padding="SAME"),
    "deutsch_mnist_conv2": dict(H=14, W=14, cin=32, cout=16, kh=5, kw=5,
                                padding="SAME", activation="relu", alpha=0.2,
                                pool=True, pool_padding="SAME"),
}
SHARED_KS = (10, 100, 1000)
SHARED_BS = (100, 1000)
TRAIN_K, TRAIN_B = 32, 32


@dataclasses.dataclass(frozen=True)
class Row:
    """One speed row: a target layer at (K, B), shared or per-network x."""
    layer: str
    K: int
    B: int
    shared: bool

    @property
    def case(self):
        return Case(K=self.K, B=self.B, shared=self.shared, bias=True,
                    **LAYERS[self.layer])

    @property
    def name(self):
        return (f"{self.layer} K={self.K} B={self.B} "
                f"{'shared' if self.shared else 'per-net'}")


def speed_rows():
    rows = [Row(layer, K, B, True) for layer in LAYERS for K in SHARED_KS
            for B in SHARED_BS]
    rows += [Row(layer, TRAIN_K, TRAIN_B, False) for layer in LAYERS]
    return rows


def select_rows(rows, patterns):
    """The rows whose name contains one of the comma-separated ``patterns``
    (e.g. ``"K=100 ,per-net"``); all rows for an empty string. An unmatched
    pattern is an error, so a typo does not silently time nothing."""
    pats = [p for p in patterns.split(",") if p]
    if not pats:
        return list(rows)
    missing = [p for p in pats if not any(p in r.name for r in rows)]
    if missing:
        raise ValueError(f"--rows: no speed row name contains {missing}; names look like "
                         f"{rows[0].name!r}")
    return [r for r in rows if any(p in r.name for p in pats)]


def quick_rows():
    """Tiny rows of the same layers (smoke runs: --quick)."""
    return [Row(layer, K, 2, shared) for layer in LAYERS
            for K, shared in ((3, True), (2, False))]


def quick_sweep(seed=20261126):
    """A subset of the sweep without the K = 1000 cases (smoke runs)."""
    return [c for c in correctness_sweep(seed)[::3] if c.K <= 8] + [
        c for c in correctness_sweep(seed) if c.expect_error or c.empty]
