"""Image-classification datasets as ``tf.data`` pipelines or numpy arrays.

``name_or_path`` is one of:

* a known name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``; ``-``/``_``
  and case are interchangeable).  A local copy is used when there is one:
  ``$HYPERKERAS_DATA_DIR/<name>/`` (IDX files), ``$HYPERKERAS_DATA_DIR/<name>.npz``
  or a folder in ``SYSTEM_DATA_DIRS`` (Debian's ``dataset-fashion-mnist``
  installs ``/usr/share/datasets/fashion-mnist``); otherwise the data comes from
  tensorflow-datasets (``tfds.load(name, split=..., as_supervised=True)``);
* a folder of uint8 IDX files, gzipped or not: any file name with the words
  ``train``/``test``/``t10k`` and ``images``/``labels`` (``-``/``_``/``.``
  separated), e.g. ``train-images-idx3-ubyte.gz`` or EMNIST's names;
* an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (images ``[N, H, W]`` or ``[N, H, W, C]``, integers in ``[0, 255]`` or
  floats; only the requested split's keys are needed).

Splits are ``"train"`` or ``"test"`` in tensorflow-datasets' slicing syntax
(``"train[:90%]"``, ``"test[100:200]"``), for local sources too.  There is no
validation split: carve one from the training data (``"train[90%:]"``).

Every source becomes numpy arrays first, then goes through the same class
selection and (in :func:`load`) the same ``tf.data`` pipeline.  Images come
out as float32 ``[H, W, C]`` in ``[0, 1]``, labels as int32.
:func:`describe` tells which source a name resolves to.
"""

import dataclasses
import gzip
import math
import os
import re
import zipfile
import zlib

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

__all__ = ["KNOWN_NAMES", "SYSTEM_DATA_DIRS", "DatasetSource", "describe", "info",
           "random_erasing", "random_flips", "random_shifts",
           "load", "load_arrays", "read_idx"]

KNOWN_NAMES = ("mnist", "fashion_mnist", "cifar10")  # tfds names, each with train/test
SYSTEM_DATA_DIRS = {  # known name -> folders searched for a local IDX copy
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
DATA_DIR_ENV = "HYPERKERAS_DATA_DIR"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """``kind`` is ``"idx"``, ``"npz"`` or ``"tfds"``; ``path`` is ``None`` for tfds."""
    name: str
    kind: str
    path: str | None = None

    @property
    def is_local(self):
        return self.kind != "tfds"

    def __str__(self):
        if self.kind == "tfds":
            return f"{self.name} (tensorflow-datasets)"
        return f"{self.name} (local {'IDX' if self.kind == 'idx' else 'npz'}: {self.path})"


def _local_copy(name):
    env = os.environ.get(DATA_DIR_ENV)
    cands = []
    if env:
        for stem in dict.fromkeys((name, name.replace("_", "-"))):
            stem = os.path.join(os.path.expanduser(env), stem)
            cands += [stem, stem + ".npz"]
    for cand in cands + list(SYSTEM_DATA_DIRS.get(name, ())):
        if os.path.isdir(cand) and _idx_files(cand):
            return DatasetSource(name, "idx", os.path.abspath(cand))
        if os.path.isfile(cand) and cand.endswith(".npz"):
            return DatasetSource(name, "npz", os.path.abspath(cand))
    return None


def info(name_or_path):
    """Resolves ``name_or_path`` to a :class:`DatasetSource` (reads no data).

    Raises ``FileNotFoundError`` for a missing path, ``ValueError`` for an
    unknown name.
    """
    s = os.fsdecode(os.fspath(name_or_path))
    name = s.strip().lower().replace("-", "_")
    if name in KNOWN_NAMES:
        return _local_copy(name) or DatasetSource(name, "tfds")
    path = os.path.abspath(os.path.expanduser(s))
    if os.path.isdir(path):
        return DatasetSource(os.path.basename(path.rstrip(os.sep)) or path, "idx", path)
    if os.path.isfile(path):
        if path.lower().endswith(".npz"):
            return DatasetSource(os.path.basename(path)[:-4], "npz", path)
        raise ValueError(
            f"Unsupported dataset file {path!r}: expected an .npz file or a "
            "folder of IDX files (pass the folder, not a single IDX file).")
    if "/" in s or os.sep in s or s.startswith((".", "~")) or "ubyte" in s.lower() \
            or s.lower().endswith((".npz", ".gz")):
        raise FileNotFoundError(f"No such dataset file or folder: {s}")
    raise ValueError(
        f"Unknown dataset name {s!r}; accepted names: {', '.join(KNOWN_NAMES)}, "
        "or a path to a folder of IDX files or to an .npz file.")


def describe(name_or_path):
    """E.g. ``"fashion_mnist (local IDX: /usr/share/datasets/fashion-mnist)"``."""
    return str(info(name_or_path))


def _parse_split(split):
    """The ``tfds.core.ReadInstruction`` for a ``train``/``test`` split string."""
    try:
        instr = tfds.core.ReadInstruction.from_spec(split)
    except (ValueError, TypeError, NotImplementedError):
        instr = None
    if getattr(instr, "split_name", None) not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; expected one of {SPLITS}, optionally sliced in "
            "tensorflow-datasets syntax ('train[:90%]', 'test[100:200]'). Carve a "
            "validation set from the training data, e.g. 'train[90%:]'.")
    return instr


def read_idx(path):
    """Reads one uint8 IDX file (optionally gzipped) into a numpy array.

    The magic number and the data size are checked: a corrupt or truncated
    file, or one of another IDX type, raises ``ValueError`` naming the file.
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
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise ValueError(
            f"Corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty file)'} "
            "(expected 0x0000 followed by a type code and the number of dimensions)")
    if raw[2] != 0x08:
        raise ValueError(
            f"Unsupported IDX file {path}: type code 0x{raw[2]:02x}; only unsigned bytes "
            "(0x08, as in MNIST/Fashion-MNIST/EMNIST) are read. Convert other data to "
            "an .npz file.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"Corrupt IDX file {path}: truncated header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    # math.prod of Python ints: an int64 product of the dimensions could wrap
    # to 0 and pass the size check.
    if len(raw) - header != math.prod(shape):
        raise ValueError(
            f"Corrupt IDX file {path}: header says shape {shape} ({math.prod(shape)} bytes "
            f"of data) but the file holds {len(raw) - header} bytes")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_files(folder):
    """``{(split, "images"|"labels"): [file names]}`` for IDX-looking files."""
    found = {}
    for fn in sorted(os.listdir(folder)):
        words = set(re.split(r"[-_.]", fn.lower()))
        kind = "images" if "images" in words else "labels" if "labels" in words else None
        split = "train" if "train" in words else "test" if words & {"t10k", "test"} else None
        if (kind and split and os.path.isfile(os.path.join(folder, fn))
                and not fn.lower().endswith((".npz", ".npy", ".txt", ".json"))):
            found.setdefault((split, kind), []).append(fn)
    return found


def _idx_arrays(folder, split):
    found = _idx_files(folder)
    if not found:
        raise FileNotFoundError(
            f"no IDX files found in {folder} (expected e.g. train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    paths = []
    for kind in ("images", "labels"):
        names = found.get((split, kind))
        if not names:
            listing = ", ".join(sorted(f for fs in found.values() for f in fs))
            raise FileNotFoundError(f"no {split} {kind} IDX file found in {folder} (found: {listing})")
        if len({n.removesuffix(".gz") for n in names}) > 1:
            raise ValueError(f"Ambiguous {split} {kind} IDX files in {folder}: {', '.join(names)}")
        paths.append(os.path.join(folder, min(names, key=lambda n: n.endswith(".gz"))))
    return read_idx(paths[0]), read_idx(paths[1]), " / ".join(paths)


def _npz_arrays(path, split):
    keys = (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            arrays = [data[k] for k in keys if k in files]
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise ValueError(f"Cannot read {path} as an .npz file (corrupt or truncated?): "
                         f"{type(e).__name__}: {e}") from e
    missing = [k for k in keys if k not in files]
    if missing:
        raise ValueError(
            f"{path} is missing key(s) {', '.join(missing)} for split {split!r} "
            f"(has: {', '.join(files) or 'nothing'}; expected x_train, y_train, x_test, y_test)")
    return arrays[0], arrays[1], f"{path}[{keys[0]}, {keys[1]}]"


def _tfds_arrays(name, split, data_dir):
    try:
        ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
    except Exception as e:  # download/preparation failures: say what else works
        raise RuntimeError(
            f"Could not load {name!r} split {split!r} through tensorflow-datasets and no "
            f"local copy was found (set ${DATA_DIR_ENV} to a folder holding {name}/ with IDX "
            f"files or {name}.npz, or pass a path): {type(e).__name__}: {e}") from e
    batches = list(tfds.as_numpy(ds.batch(8192)))
    if not batches:
        raise ValueError(f"split {split!r} of {name} (tensorflow-datasets) is empty")
    x, y = (np.concatenate(parts) for parts in zip(*batches))
    return x, y, f"{name} (tensorflow-datasets) split {split!r}"


def _checked(x, y, where):
    """``(x [N,H,W,C] uint8 or float, y int32 [N], divisor to [0, 1])``."""
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"Images in {where} have shape {x.shape}; expected [N, H, W] or [N, H, W, C]")
    if y.ndim != 1:
        raise ValueError(f"Labels in {where} have shape {y.shape}; expected [N] integer class ids")
    if len(x) != len(y):
        raise ValueError(f"Mismatched image/label counts in {where}: {len(x)} images but {len(y)} labels")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"Labels in {where} have dtype {y.dtype}; expected integers")
    if x.dtype.kind not in "iufb":
        raise ValueError(f"Images in {where} have dtype {x.dtype}; expected uint8 or float")
    if x.dtype == np.bool_:
        x = x.astype(np.float32)
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))
        raise ValueError(
            f"Images in {where} contain {len(bad)} non-finite (NaN or infinite) pixel "
            f"value(s), the first at index {tuple(int(i) for i in bad[0])}; "
            "expected finite values in [0, 1] or [0, 255]")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise ValueError(f"Images in {where} have values in [{lo}, {hi}]; "
                         "expected [0, 1] floats or [0, 255]")
    if x.dtype.kind in "iu":
        return x.astype(np.uint8, copy=False), y.astype(np.int32), 255.0
    return x, y.astype(np.int32), 1.0 if hi <= 1.0 else 255.0


def _arrays(name_or_path, split, classes, relabel, limit, data_dir):
    """``(x as stored, y int32, divisor to [0, 1], base split)``, sliced and selected."""
    src = info(name_or_path)
    instr = _parse_split(split)
    base = instr.split_name
    if classes is not None:
        classes = tuple(int(c) for c in np.atleast_1d(classes))
        if not classes:
            raise ValueError("classes is empty; pass None to keep all classes")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes contains duplicates: {classes}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit <= 0):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")

    if src.kind == "tfds":
        x, y, where = _tfds_arrays(src.name, split, data_dir)  # tfds slices
    else:
        read = _idx_arrays if src.kind == "idx" else _npz_arrays
        x, y, where = read(src.path, base)
    x, y, scale = _checked(x, y, where)
    if src.is_local:
        (sl,) = instr.to_absolute({base: tfds.core.SplitInfo(
            name=base, shard_lengths=[len(y)], num_bytes=0)})
        x, y = x[sl.from_:sl.to], y[sl.from_:sl.to]

    if classes is not None:
        keep = np.isin(y, classes)
        if not keep.any():
            raise ValueError(f"classes={classes} select zero examples from {src} "
                             f"(labels present: {np.unique(y).tolist()[:50]})")
        x, y = x[keep], y[keep]
        if relabel:  # classes[i] -> i: position of each label among the sorted classes
            order = np.argsort(classes)
            y = order[np.searchsorted(np.asarray(classes)[order], y)].astype(np.int32)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y, scale, base


def load_arrays(name_or_path, split="train", *, normalize=True, classes=None,
                relabel=False, limit=None, data_dir=None):
    """Loads a whole split as numpy arrays.

    Returns ``(x, y)``: ``x`` float32 ``[N, H, W, C]`` in ``[0, 1]`` (the
    stored values and dtype if ``normalize=False``), ``y`` int32 ``[N]``.
    ``classes``/``relabel``/``limit``/``data_dir`` behave as in :func:`load`.
    """
    x, y, scale, _ = _arrays(name_or_path, split, classes, relabel, limit, data_dir)
    x = x.astype(np.float32) / np.float32(scale) if normalize else x.copy()
    return x, y.copy()


def load(name_or_path, split="train", batch_size=None, shuffle=None, seed=0,
         normalize=True, classes=None, as_numpy=False, limit=None, *,
         relabel=False, drop_remainder=False, data_dir=None, prefetch=True):
    """Returns a ``tf.data.Dataset`` of ``(image, label)``.

    Args:
      name_or_path: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, a folder
        of IDX files or an ``.npz`` file (see the module docstring).
      split: ``"train"`` or ``"test"``, optionally sliced (``"train[:90%]"``,
        ``"test[100:200]"``).
      batch_size: batch the examples (``None``: unbatched).
      shuffle: shuffle the examples (reshuffled every epoch); defaults to True
        for the train split, False otherwise.
      seed: shuffle seed (``None`` for a nondeterministic order).
      normalize: images float32 in ``[0, 1]``; ``False`` keeps the stored
        values and dtype (uint8 for IDX and tfds).
      classes: keep only these labels (e.g. ``(0, 1, 2, 3, 4)``).
      as_numpy: return a re-iterable of numpy ``(image, label)`` elements
        (batches), with ``len``, instead of the dataset.
      limit: keep the first ``limit`` examples (after class selection, before
        shuffling).
      relabel: with ``classes``, map ``classes[i]`` to label ``i``.
      drop_remainder: drop the last incomplete batch (for training).
      data_dir: ``data_dir`` for ``tfds.load``.
      prefetch: add ``prefetch(AUTOTUNE)`` at the end.

    The split is held in memory (uint8 images stay uint8 until batched).
    Images are ``[H, W, C]`` (``[B, H, W, C]`` batched), labels int32.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) <= 0):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    x, y, scale, base = _arrays(name_or_path, split, classes, relabel, limit, data_dir)
    if shuffle is None:
        shuffle = base == "train"
    if normalize and x.dtype != np.uint8:
        x, scale = x.astype(np.float32) / np.float32(scale), None  # floats: once, up front
    elif not normalize:
        scale = None
    xt, yt = tf.constant(x), tf.constant(y)

    def gather(i):
        xi = tf.gather(xt, i)
        return (xi if scale is None else tf.cast(xi, tf.float32) / scale), tf.gather(yt, i)

    ds = tf.data.Dataset.range(len(y))
    if shuffle:
        ds = ds.shuffle(max(len(y), 1), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return tfds.as_numpy(ds) if as_numpy else ds


def _image_shape(dataset, what):
    """The image shape of a dataset of ``(images, labels)``; a ValueError naming
    ``what`` unless images are ``[H, W, C]`` or batches ``[B, H, W, C]``."""
    spec = dataset.element_spec[0] if isinstance(dataset.element_spec, tuple) else None
    shape = getattr(spec, "shape", tf.TensorShape(None))
    if shape.rank not in (3, 4):
        raise ValueError(f"{what} needs images [H, W, C] or [B, H, W, C], got shape {shape}")
    return shape


def random_flips(dataset, seed=0):
    """``dataset`` of ``(images, labels)`` with each image flipped left-right
    with probability 1/2 (labels unchanged), a label-preserving augmentation
    for clothes (Fashion-MNIST), not for digits. Images are ``[H, W, C]`` or
    batches ``[B, H, W, C]``; ``seed`` makes the flips repeat."""
    _image_shape(dataset, "random_flips")

    def flip(x, y):
        x = tf.convert_to_tensor(x)
        shape = [tf.shape(x)[0], 1, 1, 1] if x.shape.rank == 4 else [1, 1, 1]
        keep = tf.random.uniform(shape, seed=seed) < 0.5
        return tf.where(keep, x, tf.reverse(x, [x.shape.rank - 2])), y
    return dataset.map(flip)


def random_shifts(dataset, max_shift=2, seed=0):
    """``dataset`` of ``(images, labels)`` with each image moved by a random
    whole number of pixels, at most ``max_shift`` down or up and left or
    right, the uncovered border filled with zeros (labels unchanged;
    ``keras.layers.RandomTranslation`` with nearest sampling). Images are
    ``[H, W, C]`` or batches ``[B, H, W, C]``; ``seed`` makes the shifts repeat."""
    max_shift = int(max_shift)
    if max_shift < 0:
        raise ValueError(f"random_shifts needs max_shift >= 0, got {max_shift}")
    shape = _image_shape(dataset, "random_shifts")
    height, width = shape[-3], shape[-2]
    if height is None or width is None:
        raise ValueError(f"random_shifts needs a known image size, got shape {shape}")
    layer = keras.layers.RandomTranslation(max_shift / height, max_shift / width,
                                           fill_mode="constant", interpolation="nearest",
                                           seed=seed)
    return dataset.map(lambda x, y: (layer(x, training=True), y))


def random_erasing(dataset, probability=0.5, seed=0):
    """``dataset`` of ``(images, labels)`` with a random rectangle of each
    image, drawn with ``probability``, set to zero (random erasing, Zhong et
    al., 2017; ``keras.layers.RandomErasing`` with its default patch sizes;
    labels unchanged). Images are ``[H, W, C]`` or batches ``[B, H, W, C]``
    with values in [0, 1]; ``seed`` makes the patches repeat."""
    probability = float(probability)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"random_erasing needs a probability in [0, 1], got {probability}")
    _image_shape(dataset, "random_erasing")
    layer = keras.layers.RandomErasing(factor=(probability, probability), fill_value=0.0,
                                       value_range=(0.0, 1.0), seed=seed)
    return dataset.map(lambda x, y: (layer(x, training=True), y))
