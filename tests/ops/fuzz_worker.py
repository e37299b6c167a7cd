"""Fuzz worker: malformed calls of the batched convolution through one entry
point, run as a subprocess by tests/ops/test_fuzz.py so that a crash (a
signal) or a hang is seen and counted rather than taking pytest down.

    python fuzz_worker.py ENTRY SEED N

ENTRY: public_op, public_fallback, raw_op, raw_backprop, pybind. Prints one
JSON line: {"ok": n, "rejected": n, "unclear": [messages naming nothing]}.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# A rejection must name the problem: one of these words in its message.
NAMED = ("rank", "mismatch", "shape", "zero-size", "smaller", "padding",
         "activation", "bias", "float", "dtype", "channel", "filter", "mask",
         "dy", "must", "expected", "cin", "size")

ACTS = ["none", "relu", "leaky_relu", "tanh", "RELU"]
PADS = ["SAME", "VALID", "Valid", "same", "FULL", ""]


def random_call(rng):
    """Shapes and attributes, valid about a third of the time."""
    if rng.random() < 0.3:
        shapes = [tuple(int(d) for d in rng.integers(0, 5, size=rng.integers(0, 7)))
                  for _ in range(3)]
    else:
        K, B, H, W, C, O, kh, kw = (int(v) for v in rng.integers(1, 6, size=8))
        shapes = [(B, H, W, C) if rng.random() < 0.5 else (K, B, H, W, C),
                  (K, kh, kw, C, O), (K, O)]
        if rng.random() < 0.5:  # perturb one dimension
            i = int(rng.integers(0, 3))
            s = list(shapes[i])
            s[int(rng.integers(0, len(s)))] = int(rng.integers(0, 7))
            shapes[i] = tuple(s)
    attrs = dict(padding=str(rng.choice(PADS[:4] if rng.random() < 0.8 else PADS)),
                 activation=str(rng.choice(ACTS[:3] if rng.random() < 0.8 else ACTS)),
                 pool=bool(rng.integers(0, 2)),
                 pool_padding=str(rng.choice(PADS[:2])),
                 alpha=float(rng.standard_normal()))
    dtype = np.float32 if rng.random() < 0.9 else np.int32
    return shapes, attrs, dtype


def _upstream(rng, forward):
    """dy and mask for a backward call: the forward's own shapes when the
    forward accepts the call (mostly), else random ones."""
    try:
        y, mask = (np.asarray(t) for t in forward())
        if rng.random() < 0.7:
            return np.ones_like(y), mask
    except Exception:  # noqa: BLE001 - a rejected forward: random upstream
        pass
    dy = np.zeros(tuple(int(d) for d in rng.integers(0, 4, size=rng.integers(4, 6))),
                  np.float32)
    return dy, np.zeros(dy.shape if rng.random() < 0.5 else (0,), np.uint8)


def main():
    entry, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import tensorflow as tf  # noqa: PLC0415

    from hyperkeras import ops  # noqa: PLC0415
    from hyperkeras.ops import _loader  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    ok = rejected = 0
    unclear = []
    errors = (ValueError, TypeError, tf.errors.InvalidArgumentError)
    for _ in range(n):
        shapes, attrs, dtype = random_call(rng)
        x, w, b = (np.zeros(s, dtype) for s in shapes)
        try:
            if entry in ("public_op", "public_fallback"):
                with ops.force_path(entry.split("_")[1]):
                    np.asarray(ops.batched_conv2d(x, w, b, **attrs))
            elif entry == "raw_op":
                attrs["padding"] = attrs["padding"].upper() or "X"
                np.asarray(_loader.raw_op()(x, w, b, **attrs)[0])
            elif entry == "raw_backprop":
                attrs["padding"] = attrs["padding"].upper() or "X"
                module = _loader.require()
                dy, mask = _upstream(rng, lambda: _loader.raw_op()(x, w, b, **attrs))
                op = (module.hyper_keras_batched_conv2d_backprop_input if rng.random() < 0.5
                      else module.hyper_keras_batched_conv2d_backprop_filter)
                tf.nest.map_structure(np.asarray, op(x, w, dy, mask, **attrs))
            elif entry == "pybind":
                import importlib  # noqa: PLC0415
                mod = importlib.import_module("hyperkeras.ops._batched_conv_pybind")
                if rng.random() < 0.5:
                    mod.batched_conv2d(x, w, b, **attrs)
                else:
                    dy, mask = _upstream(rng, lambda: mod.batched_conv2d(
                        x, w, b, return_mask=True, **attrs))
                    mod.batched_conv2d_backprop(x, w, dy, mask, **attrs)
            else:
                raise SystemExit(f"unknown entry {entry!r}")
            ok += 1
        except errors as e:
            rejected += 1
            msg = str(e)
            if not any(word in msg.lower() for word in NAMED):
                unclear.append(msg[:200])
    print(json.dumps({"ok": ok, "rejected": rejected, "unclear": unclear}))


if __name__ == "__main__":
    main()
