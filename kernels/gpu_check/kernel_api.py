"""Calls the raw-pointer CUDA entries of the built pybind module, whatever
their exact argument list: the binding is being extended (forward mask
output, backward launchers), so the signature is read from the function's
pybind11 docstring. Named arguments (py::arg) are matched by name; unnamed
ones (arg0, arg1, ...) by count against the layouts listed below. Missing
functions or unrecognised signatures are reported, never fatal.
"""

import re

FORWARD = "batched_conv2d_cuda"
BWD_INPUT = ("batched_conv2d_backprop_input_cuda",
             "batched_conv2d_cuda_backprop_input")
BWD_FILTER = ("batched_conv2d_backprop_filter_cuda",
              "batched_conv2d_cuda_backprop_filter")

GEOM = ["K", "B", "H", "W", "Cin", "Cout", "kh", "kw", "padding",
        "activation", "alpha", "pool", "pool_padding", "shared_input"]
# Pointer layouts after the 14 geometry arguments, for unnamed signatures
# (the order of the fields in hk_batched_conv_params / _grad_params).
POSITIONAL = {
    "forward": [["x", "w", "bias", "y", "stream"],
                ["x", "w", "bias", "y", "mask", "stream"]],
    "bwd_input": [["w", "dy", "mask", "dx", "stream"],
                  ["x", "w", "dy", "mask", "dx", "stream"],
                  ["x", "w", "dy", "mask", "dx", "dw", "dbias", "stream"]],
    "bwd_filter": [["x", "dy", "mask", "dw", "dbias", "stream"],
                   ["x", "w", "dy", "mask", "dw", "dbias", "stream"],
                   ["x", "w", "dy", "mask", "dx", "dw", "dbias", "stream"]],
}
# Accepted spellings of a named argument -> canonical name.
ALIASES = {"cin": "Cin", "c_in": "Cin", "cout": "Cout", "c_out": "Cout",
           "shared": "shared_input", "x_ptr": "x", "w_ptr": "w",
           "bias_ptr": "bias", "b_ptr": "bias", "y_ptr": "y",
           "mask_ptr": "mask", "dy_ptr": "dy", "dx_ptr": "dx",
           "dw_ptr": "dw", "dbias_ptr": "dbias", "db": "dbias",
           "db_ptr": "dbias", "stream_ptr": "stream", "cuda_stream": "stream",
           "k": "K", "b": "B", "h": "H", "padding_": "padding"}


def signature(fn):
    """Parameter names from a pybind11 docstring's first line (None if it
    cannot be parsed). Unnamed parameters come back as 'arg0', 'arg1', ..."""
    doc = getattr(fn, "__doc__", None) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    m = re.match(r"\s*\w+\((.*)\)\s*->", first)
    if not m:
        return None
    depth, cur, parts = 0, "", []
    for ch in m.group(1):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.split(":")[0].split("=")[0].strip() for p in parts]


def _canon(name):
    return ALIASES.get(name, name)


class Entry:
    """One bound launcher and how to fill its arguments."""

    def __init__(self, fn, kind):
        self.fn = fn
        self.kind = kind
        self.names = signature(fn)
        self.layout = None      # list of canonical names, in call order
        self.named = False
        self.problem = None
        if self.names is None:
            self.problem = "cannot parse the signature from __doc__"
            return
        if all(re.fullmatch(r"arg\d+", n) for n in self.names):
            n_ptr = len(self.names) - len(GEOM)
            for lay in POSITIONAL[kind]:
                if len(lay) == n_ptr:
                    self.layout = GEOM + lay
                    return
            self.problem = (f"{len(self.names)} unnamed arguments match no "
                            f"known layout for {kind}")
        else:
            self.named = True
            self.layout = [_canon(n) for n in self.names]
            known = set(GEOM) | {"x", "w", "bias", "y", "mask", "dy", "dx",
                                 "dw", "dbias", "stream"}
            unknown = [n for n, c in zip(self.names, self.layout)
                       if c not in known]
            if unknown:
                self.problem = f"unknown argument names {unknown}"
                self.layout = None

    @property
    def ok(self):
        return self.layout is not None

    @property
    def takes(self):
        return set(self.layout or ())

    def __call__(self, case, **ptrs):
        geom = dict(K=case.K, B=case.B, H=case.H, W=case.W, Cin=case.cin,
                    Cout=case.cout, kh=case.kh, kw=case.kw,
                    padding=case.padding, activation=case.activation,
                    alpha=float(case.alpha), pool=bool(case.pool),
                    pool_padding=case.pool_padding,
                    shared_input=bool(case.shared))
        vals = []
        for name in self.layout:
            if name in geom:
                vals.append(geom[name])
            else:
                vals.append(int(ptrs.get(name, 0) or 0))
        if self.named:
            return int(self.fn(**dict(zip(self.names, vals))))
        return int(self.fn(*vals))

    def describe(self):
        if not self.ok:
            return f"unusable ({self.problem})"
        ptrs = [n for n in self.layout if n not in GEOM]
        return (f"{'named' if self.named else 'positional'} "
                f"geometry + ({', '.join(ptrs)})")


class KernelAPI:
    """What the module offers: forward (with or without mask) and backward."""

    def __init__(self, mod):
        self.mod = mod
        self.forward = self.bwd_input = self.bwd_filter = None
        self.notes = {}
        if hasattr(mod, FORWARD):
            self.forward = Entry(getattr(mod, FORWARD), "forward")
            self.notes["forward"] = self.forward.describe()
        else:
            self.notes["forward"] = f"not available (no {FORWARD} in module)"
        for attr, names, kind in (("bwd_input", BWD_INPUT, "bwd_input"),
                                  ("bwd_filter", BWD_FILTER, "bwd_filter")):
            fn = next((getattr(mod, n) for n in names if hasattr(mod, n)), None)
            if fn is None:
                self.notes[kind] = f"not available (no {names[0]} in module)"
                continue
            e = Entry(fn, kind)
            setattr(self, attr, e)
            self.notes[kind] = e.describe()

    @property
    def has_forward(self):
        return self.forward is not None and self.forward.ok

    @property
    def forward_mask(self):
        return self.has_forward and "mask" in self.forward.takes

    @property
    def has_backward(self):
        """Backward checks need both launchers and the forward's mask."""
        return (self.forward_mask and self.bwd_input is not None
                and self.bwd_input.ok and self.bwd_filter is not None
                and self.bwd_filter.ok)

    def backward_unavailable_reason(self):
        if not self.has_forward:
            return "no usable forward"
        if not self.forward_mask:
            return "the forward binding takes no mask pointer"
        for e, kind in ((self.bwd_input, "bwd_input"),
                        (self.bwd_filter, "bwd_filter")):
            if e is None or not e.ok:
                return f"{kind}: {self.notes.get(kind)}"
        return None
