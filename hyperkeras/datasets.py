"""Image-classification datasets as ``tf.data`` pipelines or numpy arrays.

Sources, tried in this order for a given ``name_or_path``:

* A known name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``; ``-`` and
  ``_`` are interchangeable, case is ignored).  A local copy is looked for
  first: ``$HYPERKERAS_DATA_DIR/<name>/`` (a folder of IDX files) or
  ``$HYPERKERAS_DATA_DIR/<name>.npz``, then the system folders in
  ``SYSTEM_DATA_DIRS`` (Debian's ``dataset-fashion-mnist`` package installs
  ``/usr/share/datasets/fashion-mnist``).  Without a local copy the data comes
  from tensorflow-datasets (``tfds.load(name, split=..., as_supervised=True)``).
* A folder of IDX files (gzipped or not), e.g. ``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ... (any name with
  ``train``/``test``/``t10k`` and ``images``/``labels`` as ``-``/``_``/``.``
  separated words is accepted, e.g. EMNIST's names).
* An ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (images ``[N, H, W]`` or ``[N, H, W, C]``, uint8 or float; only the keys of
  the requested split are needed).

Images come out as float32 ``[H, W, C]`` scaled to ``[0, 1]`` and labels as
int32.  :func:`describe` tells which source a name resolves to.

TensorFlow and tensorflow-datasets are imported lazily, so :func:`load_arrays`
on a local source and :func:`describe` do not import TensorFlow.
"""

import dataclasses
import functools
import gzip
import math
import os
import re
import zipfile
import zlib

import numpy as np

__all__ = [
    "KNOWN_NAMES",
    "SYSTEM_DATA_DIRS",
    "DatasetSource",
    "describe",
    "info",
    "load",
    "load_arrays",
    "read_idx",
]

# Dataset names served by tensorflow-datasets (all have "train" and "test").
KNOWN_NAMES = ("mnist", "fashion_mnist", "cifar10")

# Names for which a local IDX copy is searched for in the system folders.
SYSTEM_DATA_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}

DATA_DIR_ENV = "HYPERKERAS_DATA_DIR"

SPLITS = ("train", "test")

_TFDS_SHUFFLE_BUFFER = 10_000

# IDX type codes -> numpy dtypes (big-endian, as stored).
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ----------------------------------------------------------------------------
# Source resolution


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from.

    ``kind`` is ``"idx"`` (folder of IDX files), ``"npz"`` or ``"tfds"``;
    ``path`` is the folder / file for local kinds and ``None`` for tfds.
    """
    name: str
    kind: str
    path: str | None = None

    @property
    def is_local(self):
        return self.kind != "tfds"

    def __str__(self):
        if self.kind == "tfds":
            return f"{self.name} (tensorflow-datasets)"
        return f"{self.name} (local {self.kind.upper() if self.kind == 'idx' else self.kind}: {self.path})"


def _canonical_name(s):
    return s.strip().lower().replace("-", "_")


def _looks_like_path(s):
    return (os.sep in s or "/" in s or s.startswith((".", "~"))
            or s.lower().endswith((".npz", ".gz")) or "ubyte" in s.lower())


def _local_candidates(name):
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        env = os.path.expanduser(env)
        for variant in dict.fromkeys((name, name.replace("_", "-"))):
            yield os.path.join(env, variant)
            yield os.path.join(env, variant + ".npz")
    yield from SYSTEM_DATA_DIRS.get(name, ())


def info(name_or_path):
    """Resolves ``name_or_path`` to a :class:`DatasetSource` (no data is read).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for an
    unknown dataset name.
    """
    s = os.fspath(name_or_path)
    if not isinstance(s, str):
        s = os.fsdecode(s)
    name = _canonical_name(s)
    if name in KNOWN_NAMES:
        for cand in _local_candidates(name):
            if os.path.isdir(cand) and _idx_files(cand):
                return DatasetSource(name, "idx", os.path.abspath(cand))
            if os.path.isfile(cand) and cand.endswith(".npz"):
                return DatasetSource(name, "npz", os.path.abspath(cand))
        return DatasetSource(name, "tfds", None)
    path = os.path.expanduser(s)
    if os.path.isdir(path):
        path = os.path.abspath(path)
        return DatasetSource(os.path.basename(path.rstrip(os.sep)) or path, "idx", path)
    if os.path.isfile(path):
        path = os.path.abspath(path)
        if path.lower().endswith(".npz"):
            return DatasetSource(os.path.basename(path)[:-4], "npz", path)
        raise ValueError(
            f"Unsupported dataset file {path!r}: expected an .npz file or a "
            "folder of IDX files (pass the folder, not a single IDX file).")
    if _looks_like_path(s):
        raise FileNotFoundError(f"No such dataset file or folder: {s}")
    raise ValueError(
        f"Unknown dataset name {s!r}; accepted names: {', '.join(KNOWN_NAMES)}, "
        "or a path to a folder of IDX files or to an .npz file.")


def describe(name_or_path):
    """One-line description of the source, e.g.
    ``"fashion_mnist (local IDX: /usr/share/datasets/fashion-mnist)"``."""
    return str(info(name_or_path))


# ----------------------------------------------------------------------------
# Splits


_SPLIT_RE = re.compile(r"^\s*(\w+)\s*(?:\[\s*([+-]?\d+%?)?\s*:\s*([+-]?\d+%?)?\s*\])?\s*$")


def _parse_split(split):
    """``"train[:10%]"`` -> ``("train", "", "10%")``; validates the base split."""
    if not isinstance(split, str):
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}")
    m = _SPLIT_RE.match(split)
    if not m or m.group(1) not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; expected one of {SPLITS}, optionally "
            "sliced like 'train[:10%]' or 'test[100:200]'.")
    return m.group(1), m.group(2), m.group(3)


def _slice_bound(tok, n):
    if tok is None:
        return None
    if tok.endswith("%"):
        pct = int(tok[:-1])
        if not -100 <= pct <= 100:
            raise ValueError(f"Split slice percentage out of range: {tok}")
        return int(round(n * pct / 100))
    return int(tok)


def _apply_slice(x, y, start, stop):
    n = len(y)
    sl = slice(_slice_bound(start, n), _slice_bound(stop, n))
    return x[sl], y[sl]


# ----------------------------------------------------------------------------
# IDX files


def read_idx(path):
    """Reads one IDX file (optionally gzipped) into a numpy array.

    The magic number (two zero bytes, a type code, the number of dimensions)
    and the data size are checked; a corrupt or truncated file raises
    ``ValueError`` naming the file.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"Corrupt IDX file {path}: cannot decompress ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"Corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty file)'} "
            "(expected 0x0000 followed by a type code and the number of dimensions)")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"Corrupt IDX file {path}: truncated header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    # Python ints: a product of 32-bit dimensions must not wrap around (an
    # int64 product can wrap to 0 and pass the size check below).
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"Corrupt IDX file {path}: header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header} bytes")
    arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _idx_role(filename):
    """``(split, kind)`` for an IDX-looking file name, else ``None``."""
    words = set(re.split(r"[-_.]", filename.lower()))
    kind = "images" if "images" in words else "labels" if "labels" in words else None
    split = "train" if "train" in words else "test" if words & {"t10k", "test"} else None
    if kind is None or split is None or filename.lower().endswith((".npz", ".npy", ".txt", ".json")):
        return None
    return split, kind


def _idx_files(folder):
    """``{(split, kind): [filenames]}`` for the IDX-looking files in ``folder``."""
    found = {}
    for fn in sorted(os.listdir(folder)):
        if not os.path.isfile(os.path.join(folder, fn)):
            continue
        role = _idx_role(fn)
        if role:
            found.setdefault(role, []).append(fn)
    return found


def _pick_idx(folder, found, split, kind):
    names = found.get((split, kind))
    if not names:
        listing = ", ".join(sorted(f for fs in found.values() for f in fs))
        raise FileNotFoundError(
            f"no {split} {kind} IDX file found in {folder} (found: {listing})")
    stems = {n[:-3] if n.endswith(".gz") else n for n in names}
    if len(stems) > 1:
        raise ValueError(
            f"Ambiguous {split} {kind} IDX files in {folder}: {', '.join(names)}")
    plain = [n for n in names if not n.endswith(".gz")]
    return os.path.join(folder, (plain or names)[0])


def _load_idx_folder(folder, split):
    found = _idx_files(folder)
    if not found:
        raise FileNotFoundError(
            f"no IDX files found in {folder} (expected e.g. train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    img_path = _pick_idx(folder, found, split, "images")
    lbl_path = _pick_idx(folder, found, split, "labels")
    x = read_idx(img_path)
    y = read_idx(lbl_path)
    if x.ndim not in (3, 4):
        raise ValueError(f"IDX images file {img_path} has shape {x.shape}; expected [N, H, W] or [N, H, W, C]")
    if y.ndim != 1:
        raise ValueError(f"IDX labels file {lbl_path} has shape {y.shape}; expected [N]")
    return x, y, f"{img_path} / {lbl_path}"


# ----------------------------------------------------------------------------
# npz files


def _load_npz(path, split):
    keys = (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            arrays = [data[k] for k in keys if k in files]
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise ValueError(
            f"Cannot read {path} as an .npz file (corrupt or truncated?): "
            f"{type(e).__name__}: {e}") from e
    missing = [k for k in keys if k not in files]
    if missing:
        raise ValueError(
            f"{path} is missing key(s) {', '.join(missing)} for split {split!r} "
            f"(has: {', '.join(files) or 'nothing'}; expected x_train, y_train, x_test, y_test)")
    return arrays[0], arrays[1], f"{path}[{keys[0]}, {keys[1]}]"


# ----------------------------------------------------------------------------
# Raw arrays (cached) and normalization


def _check_arrays(x, y, where):
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"Images in {where} have shape {x.shape}; expected [N, H, W] or [N, H, W, C]")
    if y.ndim != 1:
        raise ValueError(f"Labels in {where} have shape {y.shape}; expected [N] integer class ids")
    if len(x) != len(y):
        raise ValueError(
            f"Mismatched image/label counts in {where}: {len(x)} images but {len(y)} labels")
    if y.dtype.kind == "f":
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"Labels in {where} are not integers")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"Labels in {where} have dtype {y.dtype}; expected integers")
    if x.dtype.kind not in "iuf" and x.dtype != np.bool_:
        raise ValueError(f"Images in {where} have dtype {x.dtype}; expected uint8 or float")
    return x, y.astype(np.int32)


def _image_scale(x, where):
    """Divisor that maps the images to [0, 1] (1 for floats already in range)."""
    if x.size == 0:
        return 255.0 if x.dtype.kind in "iu" else 1.0
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))
        raise ValueError(
            f"Images in {where} contain {len(bad)} non-finite (NaN or infinite) "
            f"pixel value(s), the first at index {tuple(int(i) for i in bad[0])}; "
            "expected finite values in [0, 1] or [0, 255]")
    lo, hi = float(x.min()), float(x.max())
    if x.dtype == np.uint8:
        return 255.0
    if lo < 0 or hi > 255:
        raise ValueError(
            f"Images in {where} have values in [{lo}, {hi}]; expected [0, 1] floats or [0, 255]")
    if x.dtype.kind == "f" and hi <= 1.0:
        return 1.0
    return 255.0


@functools.lru_cache(maxsize=8)
def _raw_cached(kind, path, split, stamp):
    del stamp  # part of the cache key only: invalidates when the file changes
    if kind == "idx":
        x, y, where = _load_idx_folder(path, split)
    else:
        x, y, where = _load_npz(path, split)
    x, y = _check_arrays(x, y, where)
    if x.dtype.kind in "iu" and x.dtype != np.uint8 and x.size and x.min() >= 0 and x.max() <= 255:
        x = x.astype(np.uint8)
    scale = _image_scale(x, where)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, scale, where


def _stamp(path):
    if os.path.isdir(path):
        return tuple((fn, os.stat(os.path.join(path, fn)).st_mtime_ns, os.stat(os.path.join(path, fn)).st_size)
                     for fn in sorted(os.listdir(path)))
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _local_raw(src, split):
    """``(x [N,H,W,C] raw, y int32 [N], scale, where)`` for a local source."""
    base, start, stop = _parse_split(split)
    x, y, scale, where = _raw_cached(src.kind, src.path, base, _stamp(src.path))
    x, y = _apply_slice(x, y, start, stop)
    return x, y, scale, where


def _normalize_classes(classes):
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)):
        classes = (classes,)
    classes = tuple(int(c) for c in classes)
    if not classes:
        raise ValueError("classes is empty; pass None to keep all classes")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}")
    return classes


def _select(x, y, classes, relabel, limit, src):
    if classes is not None:
        keep = np.isin(y, classes)
        if not keep.any():
            present = np.unique(y)
            raise ValueError(
                f"classes={classes} select zero examples from {src} "
                f"(labels present: {present.tolist()[:50]})")
        x, y = x[keep], y[keep]
        if relabel:
            lut = np.full(int(max(classes)) + 1, -1, np.int32)
            lut[list(classes)] = np.arange(len(classes), dtype=np.int32)
            y = lut[y]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)


# ----------------------------------------------------------------------------
# tensorflow-datasets


def _tfds_load(name, split, shuffle_files, seed, data_dir):
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle_files else None
    try:
        return tfds.load(name, split=split, as_supervised=True, with_info=True,
                         shuffle_files=bool(shuffle_files), read_config=read_config,
                         data_dir=data_dir)
    except Exception as e:  # download/preparation failures: add context
        raise RuntimeError(
            f"Could not load {name!r} split {split!r} through tensorflow-datasets and no "
            f"local copy was found (set ${DATA_DIR_ENV} to a folder holding {name}/ with IDX "
            f"files or {name}.npz, or pass a path): {type(e).__name__}: {e}") from e


def _tfds_num_classes(ds_info):
    try:
        return int(ds_info.features["label"].num_classes)
    except Exception:  # pragma: no cover - unexpected feature layout
        return None


def _tfds_pipeline(src, split, classes, relabel, limit, shuffle_files, seed, data_dir):
    import tensorflow as tf

    ds, ds_info = _tfds_load(src.name, split, shuffle_files, seed, data_dir)
    if classes is not None:
        n = _tfds_num_classes(ds_info)
        if n is not None and not any(0 <= c < n for c in classes):
            raise ValueError(
                f"classes={classes} select zero examples from {src} (labels are 0..{n - 1})")
        wanted = tf.constant(classes, tf.int64)
        ds = ds.filter(lambda x, y: tf.reduce_any(tf.equal(tf.cast(y, tf.int64), wanted)))
        if relabel:
            lut = np.full(max(classes) + 1, -1, np.int32)
            lut[list(classes)] = np.arange(len(classes), dtype=np.int32)
            lut = tf.constant(lut)
            ds = ds.map(lambda x, y: (x, tf.gather(lut, y)))
    ds = ds.map(lambda x, y: (x, tf.cast(y, tf.int32)))
    if limit is not None:
        ds = ds.take(limit)
    return ds


# ----------------------------------------------------------------------------
# Public API


def load_arrays(name_or_path, split="train", *, normalize=True, classes=None,
                relabel=False, limit=None, data_dir=None):
    """Loads a whole split as numpy arrays.

    Returns ``(x, y)``: ``x`` float32 ``[N, H, W, C]`` in ``[0, 1]`` (raw
    values in the stored dtype if ``normalize=False``), ``y`` int32 ``[N]``.
    ``classes``/``relabel``/``limit`` behave as in :func:`load`.
    """
    src = info(name_or_path)
    classes = _normalize_classes(classes)
    limit = _check_limit(limit)
    if src.is_local:
        x, y, scale, _ = _local_raw(src, split)
        x, y = _select(x, y, classes, relabel, limit, src)
        x = (x.astype(np.float32) / np.float32(scale)) if normalize else x.copy()
        return x, np.array(y, np.int32)

    _parse_split(split)
    ds = _tfds_pipeline(src, split, classes, relabel, limit, False, None, data_dir)
    xs, ys = [], []
    for xb, yb in ds.batch(4096).as_numpy_iterator():
        xs.append(xb)
        ys.append(yb)
    if not xs:
        spec = ds.element_spec[0]
        x = np.zeros((0, *spec.shape), spec.dtype.as_numpy_dtype)
        y = np.zeros((0,), np.int32)
    else:
        x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int32)
    if x.ndim == 3:
        x = x[..., None]
    if normalize:
        x = x.astype(np.float32) / np.float32(255.0 if x.dtype.kind in "iu" else 1.0)
    return x, y


class _NumpyIterable:
    """Re-iterable view of a dataset yielding numpy arrays (like ``tfds.as_numpy``)."""

    def __init__(self, ds):
        self.dataset = ds

    def __iter__(self):
        return self.dataset.as_numpy_iterator()

    def __len__(self):
        n = int(self.dataset.cardinality())
        if n < 0:
            raise TypeError("length of this dataset is unknown")
        return n


def load(name_or_path, split="train", batch_size=None, shuffle=None, seed=0,
         normalize=True, classes=None, as_numpy=False, limit=None, *,
         relabel=False, drop_remainder=False, data_dir=None, prefetch=True):
    """Returns a ``tf.data.Dataset`` of ``(image, label)``.

    Args:
      name_or_path: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` (local
        copy first, else tensorflow-datasets), a folder of IDX files, or an
        ``.npz`` file (see the module docstring).
      split: ``"train"`` or ``"test"``, optionally sliced (``"train[:10%]"``,
        ``"test[100:200]"``).
      batch_size: batch the examples (``None``: unbatched).
      shuffle: shuffle the examples (reshuffled every epoch); defaults to True
        for the train split, False otherwise.
      seed: shuffle seed (``None`` for a nondeterministic order).
      normalize: images float32 in ``[0, 1]``; ``False`` keeps the stored
        values and dtype (uint8 for IDX / tfds).
      classes: keep only these labels (e.g. ``(0, 1, 2, 3, 4)``).
      as_numpy: return a re-iterable of numpy ``(image, label)`` elements
        (batches) instead of the dataset.
      limit: keep the first ``limit`` examples (after class filtering, before
        shuffling).
      relabel: with ``classes``, map ``classes[i]`` to label ``i``.
      drop_remainder: drop the last incomplete batch (for training).
      data_dir: ``data_dir`` passed to ``tfds.load``.
      prefetch: add ``prefetch(AUTOTUNE)`` at the end.

    Images are ``[H, W, C]`` (``[B, H, W, C]`` batched), labels int32.
    """
    import tensorflow as tf

    src = info(name_or_path)
    base, _, _ = _parse_split(split)
    classes = _normalize_classes(classes)
    limit = _check_limit(limit)
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) <= 0):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if shuffle is None:
        shuffle = base == "train"

    if src.is_local:
        x, y, scale, _ = _local_raw(src, split)
        x, y = _select(x, y, classes, relabel, limit, src)
        n = len(y)
        if not normalize:
            scale = None
        elif scale == 1.0 or x.dtype != np.uint8:
            # float (or wide int) sources: normalize once up front.
            x = x.astype(np.float32) / np.float32(scale)
            scale = None
        xt = tf.constant(x)
        yt = tf.constant(y, tf.int32)
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        if batch_size is not None:
            ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

        def gather(i):
            xi = tf.gather(xt, i)
            if scale is not None:
                xi = tf.cast(xi, tf.float32) / scale
            return xi, tf.gather(yt, i)

        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = _tfds_pipeline(src, split, classes, relabel, limit, shuffle, seed, data_dir)
        if shuffle:
            ds = ds.shuffle(_TFDS_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        if batch_size is not None:
            ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

        def fix(x, y):
            if x.shape.rank is not None and x.shape.rank == (2 if batch_size is None else 3):
                x = x[..., None]
            if normalize:
                x = tf.cast(x, tf.float32) / (255.0 if x.dtype.is_integer else 1.0)
            return x, y

        ds = ds.map(fix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return _NumpyIterable(ds) if as_numpy else ds
