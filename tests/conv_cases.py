"""Shared cases and tolerances for the batched-conv tests (ops and kernels)."""

import numpy as np


def make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias=True):
    x_shape = (B, H, W, cin) if shared else (K, B, H, W, cin)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((K, kh, kw, cin, cout)) /
         np.sqrt(kh * kw * cin)).astype(np.float32)
    bias = rng.standard_normal((K, cout)).astype(np.float32) if with_bias else None
    return x, w, bias


def sweep(seed=1234, n=28):
    """Seeded randomized sweep of shapes and options, with fixed corner cases."""
    rng = np.random.default_rng(seed)
    fixed = [
        # K, B, H, W, Cin, Cout, kh, kw, shared, padding, act, pool, pool_pad, bias
        (1, 1, 7, 5, 1, 1, 3, 3, True, "SAME", "none", False, "VALID", True),
        (1, 1, 9, 11, 1, 32, 5, 5, False, "VALID", "relu", True, "VALID", True),
        (3, 2, 13, 13, 13, 7, 5, 5, True, "SAME", "leaky_relu", True, "SAME", True),
        (2, 3, 12, 12, 32, 16, 5, 5, True, "VALID", "relu", True, "VALID", False),
        (2, 1, 14, 14, 3, 16, 5, 5, False, "SAME", "relu", True, "SAME", True),
        (4, 1, 17, 19, 2, 37, 3, 2, True, "SAME", "leaky_relu", False, "VALID", True),
        (1, 2, 5, 5, 1, 3, 5, 5, True, "VALID", "none", False, "VALID", True),
        (2, 2, 6, 6, 1, 5, 5, 5, True, "VALID", "relu", True, "SAME", True),
        (2, 2, 3, 1, 4, 3, 1, 1, False, "SAME", "none", True, "SAME", True),
        # shared input, K*Cout over several CPU channel blocks (wide path,
        # NV=4 / NV=3 blocks, networks straddling block boundaries)
        (17, 2, 8, 9, 2, 15, 3, 3, True, "VALID", "leaky_relu", True, "SAME", True),
        (9, 2, 11, 10, 5, 29, 3, 3, True, "SAME", "relu", True, "SAME", False),
        (4, 3, 12, 12, 32, 16, 5, 5, True, "VALID", "none", False, "VALID", True),
    ]
    cases = list(fixed)
    for _ in range(n - len(fixed)):
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        padding = str(rng.choice(["SAME", "VALID"]))
        lo_h = kh if padding == "VALID" else 1
        lo_w = kw if padding == "VALID" else 1
        cases.append((
            int(rng.integers(1, 5)), int(rng.integers(1, 4)),
            int(rng.integers(lo_h, lo_h + 14)), int(rng.integers(lo_w, lo_w + 14)),
            int(rng.choice([1, 2, 3, 9, 13, 17])),
            int(rng.choice([1, 3, 8, 16, 19, 33])), kh, kw,
            bool(rng.integers(0, 2)), padding,
            str(rng.choice(["none", "relu", "leaky_relu"])),
            bool(rng.integers(0, 2)), str(rng.choice(["SAME", "VALID"])),
            bool(rng.integers(0, 4) > 0)))
    return cases


def case_id(c):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, bias = c
    return (f"K{K}B{B}_{H}x{W}_c{cin}-{cout}_k{kh}x{kw}_{'sh' if shared else 'pn'}"
            f"_{pad}_{act}_{'pool' + pp if pool else 'nopool'}{'' if bias else '_nobias'}")


def assert_close(y, ref, rtol=1e-4):
    y = np.asarray(y)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    scale = max(float(np.abs(ref).max()), 1e-6) if ref.size else 1.0
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol * scale)
