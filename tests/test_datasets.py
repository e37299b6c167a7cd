"""Tests for hyperkeras.datasets (tfds via mock_data, local IDX / npz files)."""

import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import datasets

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------
# helpers


def write_idx(path, arr, compress=False):
    """Writes ``arr`` in IDX format (independently of the module under test)."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    arr = np.asarray(arr)
    big = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    data = bytes([0, 0, codes[big], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += arr.astype(big).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)


def make_split(rng, n, h=7, w=5, num_classes=10):
    x = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    y = (np.arange(n) % num_classes).astype(np.uint8)
    rng.shuffle(y)
    return x, y


def write_idx_folder(folder, rng, compress, n_train=30, n_test=12, names=None):
    names = names or {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = make_split(rng, n)
        suffix = ".gz" if compress else ""
        write_idx(os.path.join(folder, names[split][0] + suffix), x, compress)
        write_idx(os.path.join(folder, names[split][1] + suffix), y, compress)
        out[split] = (x, y)
    return out


def collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.stack(xs), np.array(ys)


@pytest.fixture
def no_local_copies(monkeypatch):
    """Forces known names onto the tensorflow-datasets path."""
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", {})


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    return folder, write_idx_folder(str(folder), rng, compress=True)


# ----------------------------------------------------------------------------
# tensorflow-datasets (mocked)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_mock(no_local_copies, name, shape):
    import tensorflow_datasets as tfds

    assert datasets.describe(name) == f"{name} (tensorflow-datasets)"
    with tfds.testing.mock_data(num_examples=12):
        ds = datasets.load(name, split="train", batch_size=4)
        batches = list(ds)
        assert len(batches) == 3
        x, y = batches[0]
        assert x.shape == (4, *shape) and x.dtype == tf.float32
        assert y.dtype == tf.int32
        x, y = datasets.load_arrays(name, "test")
        assert x.shape == (12, *shape) and x.dtype == np.float32
        assert y.shape == (12,) and y.dtype == np.int32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
        assert 0 <= y.min() and y.max() <= 9
        # tfds slicing, limit, unnormalized values
        # (mock_data ignores slicing; this only checks the split string is accepted)
        assert len(list(datasets.load(name, "train[:50%]"))) > 0
        assert len(list(datasets.load(name, "test", limit=5, shuffle=True))) == 5
        xr, _ = next(iter(datasets.load(name, "test", normalize=False)))
        assert xr.dtype == tf.uint8


def test_tfds_mock_classes(no_local_copies):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        _, y_all = datasets.load_arrays("mnist", "train")
        x, y = datasets.load_arrays("mnist", "train", classes=(7, 3), relabel=True)
        assert len(y) == np.isin(y_all, (3, 7)).sum()
        assert set(y.tolist()) <= {0, 1}
        np.testing.assert_array_equal(y, (y_all[np.isin(y_all, (3, 7))] == 3).astype(np.int32))
        _, yd = collect(datasets.load("mnist", "train", classes=(7, 3), relabel=True,
                                      shuffle=False))
        np.testing.assert_array_equal(yd, y)
        with pytest.raises(ValueError, match="select zero examples"):
            datasets.load("mnist", "train", classes=(10, 11))


def test_tfds_gets_the_split_string(no_local_copies, monkeypatch):
    # Named datasets are sliced by tensorflow-datasets itself (mock_data
    # ignores slicing, so check what tfds.load is asked for).
    import tensorflow_datasets as tfds

    calls = []
    real = tfds.load

    def spy(name, **kw):
        calls.append((name, kw["split"], kw.get("as_supervised")))
        return real(name, **kw)

    monkeypatch.setattr(tfds, "load", spy)
    with tfds.testing.mock_data(num_examples=10):
        datasets.load_arrays("fashion-mnist", "train[:90%]")
        datasets.load("Fashion_MNIST", "train[90%:]", batch_size=4)
    assert calls == [("fashion_mnist", "train[:90%]", True), ("fashion_mnist", "train[90%:]", True)]
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        datasets.load("fashion_mnist", "validation")


# ----------------------------------------------------------------------------
# local IDX folders


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(1)
    ref = write_idx_folder(str(tmp_path), rng, compress)
    src = datasets.info(tmp_path)
    assert src.kind == "idx" and src.path == str(tmp_path)
    assert datasets.describe(str(tmp_path)) == f"{tmp_path.name} (local IDX: {tmp_path})"
    for split in ("train", "test"):
        x_ref, y_ref = ref[split]
        x, y = datasets.load_arrays(str(tmp_path), split, normalize=False)
        np.testing.assert_array_equal(x, x_ref[..., None])
        np.testing.assert_array_equal(y, y_ref)
        assert x.dtype == np.uint8 and y.dtype == np.int32
        x, y = datasets.load_arrays(str(tmp_path), split)
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, x_ref[..., None].astype(np.float32) / 255)
        xd, yd = collect(datasets.load(str(tmp_path), split, shuffle=False))
        np.testing.assert_array_equal(xd, x)
        np.testing.assert_array_equal(yd, y_ref)


def test_idx_other_names(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    y = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "emnist-letters-train-images-idx3-ubyte.gz", x, compress=True)
    write_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte", y)
    write_idx(tmp_path / "emnist-letters-test-images-idx3-ubyte", x[:2])
    write_idx(tmp_path / "emnist-letters-test-labels-idx1-ubyte", y[:2])
    (tmp_path / "README.txt").write_text("not idx")
    xa, ya = datasets.load_arrays(tmp_path, "train", normalize=False)
    np.testing.assert_array_equal(xa[..., 0], x)
    np.testing.assert_array_equal(ya, y)
    _, yt = datasets.load_arrays(tmp_path, "test")
    np.testing.assert_array_equal(yt, [0, 1])
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte"), y)


def test_error_idx_other_dtypes(tmp_path):
    # Only uint8 IDX files (MNIST, Fashion-MNIST, EMNIST) are read; other type
    # codes raise naming the file and the code instead of being parsed.
    f = tmp_path / "floats-idx"
    write_idx(f, np.linspace(0, 1, 12).reshape(3, 4))
    with pytest.raises(ValueError, match=r"Unsupported IDX file .*floats-idx: type code 0x0e"):
        datasets.read_idx(f)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 3, 3), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(2).astype(">i4"))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: type code 0x0c.*\.npz"):
        datasets.load_arrays(tmp_path, "train")


def test_local_classes_relabel_limit(idx_dir):
    folder, ref = idx_dir
    x_ref, y_ref = ref["train"]
    keep = np.isin(y_ref, (4, 2))
    x, y = datasets.load_arrays(folder, "train", classes=(4, 2), normalize=False)
    np.testing.assert_array_equal(y, y_ref[keep])
    np.testing.assert_array_equal(x[..., 0], x_ref[keep])
    _, y = datasets.load_arrays(folder, "train", classes=(4, 2), relabel=True)
    np.testing.assert_array_equal(y, np.where(y_ref[keep] == 4, 0, 1))
    # limit keeps the first N of the selection, before shuffling
    _, y = datasets.load_arrays(folder, "train", classes=(4, 2), limit=3)
    np.testing.assert_array_equal(y, y_ref[keep][:3])
    _, y = datasets.load_arrays(folder, "train", limit=7)
    np.testing.assert_array_equal(y, y_ref[:7])
    _, yd = collect(datasets.load(folder, "train", limit=7, shuffle=True, seed=3))
    assert sorted(yd.tolist()) == sorted(y_ref[:7].tolist())
    _, yd = collect(datasets.load(folder, "train", classes=[4, 2], relabel=True))
    assert set(yd.tolist()) == {0, 1} and len(yd) == keep.sum()
    # local slicing
    _, y = datasets.load_arrays(folder, "train[10:20]")
    np.testing.assert_array_equal(y, y_ref[10:20])
    _, y = datasets.load_arrays(folder, "train[:50%]")
    np.testing.assert_array_equal(y, y_ref[:15])


def test_local_validation_carved_from_train(idx_dir):
    folder, ref = idx_dir
    x_ref, y_ref = ref["train"]
    x_fit, y_fit = datasets.load_arrays(folder, "train[:80%]", normalize=False)
    x_val, y_val = datasets.load_arrays(folder, "train[80%:]", normalize=False)
    assert len(y_fit) == 24 and len(y_val) == 6
    np.testing.assert_array_equal(np.concatenate([x_fit, x_val])[..., 0], x_ref)
    np.testing.assert_array_equal(np.concatenate([y_fit, y_val]), y_ref)
    _, yd = collect(datasets.load(folder, "train[80%:]", shuffle=False))
    np.testing.assert_array_equal(yd, y_ref[24:])
    # tensorflow-datasets slicing semantics locally too: negative and fractional bounds
    _, y = datasets.load_arrays(folder, "train[-5:]")
    np.testing.assert_array_equal(y, y_ref[-5:])
    _, y = datasets.load_arrays(folder, "train[:12.5%]")
    np.testing.assert_array_equal(y, y_ref[:4])
    with pytest.raises(ValueError, match="Carve a validation set.*train\\[90%:\\]"):
        datasets.load_arrays(folder, "validation")
    with pytest.raises(ValueError, match="Unknown split 'train\\+test'"):
        datasets.load_arrays(folder, "train+test")
    with pytest.raises(ValueError, match="incompatible with 12 examples"):
        datasets.load_arrays(folder, "test[100:200]")


def test_local_files_reread_after_change(tmp_path):
    # No cache: a rewritten file is read afresh by the next call.
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((3, 2, 2), np.uint8), y_train=np.arange(3))
    _, y = datasets.load_arrays(path, "train")
    np.testing.assert_array_equal(y, [0, 1, 2])
    np.savez(path, x_train=np.zeros((2, 2, 2), np.uint8), y_train=[5, 6])
    _, y = datasets.load_arrays(path, "train")
    np.testing.assert_array_equal(y, [5, 6])


def test_local_shuffle_batch(idx_dir):
    folder, ref = idx_dir
    y_ref = ref["train"][1]
    ds = datasets.load(folder, "train", batch_size=8, drop_remainder=True)
    shapes = [tuple(x.shape) for x, _ in ds]
    assert shapes == [(8, 7, 5, 1)] * 3
    ds = datasets.load(folder, "train", batch_size=8)
    _, y1 = zip(*[(x, y.numpy()) for x, y in ds])
    y1 = np.concatenate(y1)
    assert sorted(y1.tolist()) == sorted(y_ref.tolist())
    assert not np.array_equal(y1, y_ref)  # train split is shuffled by default
    y2 = np.concatenate([y.numpy() for _, y in datasets.load(folder, "train", batch_size=8)])
    np.testing.assert_array_equal(y1, y2)  # same seed, same order
    # test split not shuffled by default; as_numpy gives numpy batches
    it = datasets.load(folder, "test", batch_size=5, as_numpy=True)
    assert len(it) == 3
    batches = list(it)
    assert isinstance(batches[0][0], np.ndarray) and batches[0][0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ref["test"][1])


# ----------------------------------------------------------------------------
# npz


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    xtr, ytr = make_split(rng, 20)
    xte = rng.random((8, 6, 6, 3), dtype=np.float32)
    yte = np.arange(8).reshape(8, 1)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    assert datasets.describe(path) == f"toy (local npz: {path})"
    x, y = datasets.load_arrays(path, "train")
    np.testing.assert_array_equal(x, xtr[..., None].astype(np.float32) / 255)
    np.testing.assert_array_equal(y, ytr)
    x, y = datasets.load_arrays(path, "test")
    np.testing.assert_array_equal(x, xte)
    np.testing.assert_array_equal(y, np.arange(8))
    xd, yd = collect(datasets.load(str(path), "test"))
    np.testing.assert_array_equal(xd, xte)
    assert yd.dtype == np.int32
    # float images stored as 0..255 are rescaled
    np.savez(path, x_train=xtr.astype(np.float64), y_train=ytr)
    x, _ = datasets.load_arrays(path, "train")
    np.testing.assert_allclose(x, xtr[..., None] / 255, rtol=1e-6)


def test_env_data_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    ref = write_idx_folder(str(tmp_path / "mnist"), rng, compress=False)
    xtr, ytr = make_split(rng, 10)
    np.savez(tmp_path / "cifar10.npz", x_train=xtr, y_train=ytr)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    assert datasets.describe("mnist") == f"mnist (local IDX: {tmp_path / 'mnist'})"
    assert datasets.describe("CIFAR10") == f"cifar10 (local npz: {tmp_path / 'cifar10.npz'})"
    _, y = datasets.load_arrays("mnist", "test")
    np.testing.assert_array_equal(y, ref["test"][1])


# ----------------------------------------------------------------------------
# errors


def test_error_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such dataset file or folder: .*nope"):
        datasets.load(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="No such dataset file or folder"):
        datasets.load_arrays("missing.npz", "train")


def test_error_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IDX files found in"):
        datasets.load_arrays(tmp_path, "train")


def test_error_split_files_missing(tmp_path):
    rng = np.random.default_rng(6)
    write_idx_folder(str(tmp_path), rng, compress=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="no test labels IDX file found"):
        datasets.load_arrays(tmp_path, "test")


def test_error_npz_missing_keys(tmp_path):
    path = tmp_path / "part.npz"
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="missing key.*x_test, y_test"):
        datasets.load_arrays(path, "test")
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="missing key.*y_train"):
        datasets.load(path, "train")


def test_error_mismatched_counts(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((5, 3, 3), np.uint8), y_train=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="Mismatched image/label counts.*5 images but 4 labels"):
        datasets.load_arrays(path, "train")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        datasets.load(tmp_path, "train")


def test_error_corrupt_idx(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="Corrupt IDX file .*bad magic number"):
        datasets.load_arrays(tmp_path, "train")
    write_idx(bad, np.zeros((3, 2, 2), np.uint8))
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match="Corrupt IDX file .*header says shape"):
        datasets.load_arrays(tmp_path, "train")
    gz = tmp_path / "other" / "train-images-idx3-ubyte.gz"
    gz.parent.mkdir()
    gz.write_bytes(b"\x1f\x8b" + b"garbage" * 5)
    with pytest.raises(ValueError, match="Corrupt IDX file"):
        datasets.read_idx(gz)


def test_error_unknown_split(idx_dir):
    folder, _ = idx_dir
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        datasets.load_arrays(folder, "validation")
    with pytest.raises(ValueError, match="Unknown split"):
        datasets.load("mnist", "valid[:10%]")


def test_error_unknown_name():
    with pytest.raises(ValueError, match="Unknown dataset name 'imagenet'.*mnist, fashion_mnist, cifar10"):
        datasets.load("imagenet")


def test_error_classes_zero_examples(idx_dir):
    folder, _ = idx_dir
    with pytest.raises(ValueError, match=r"classes=\(42, 43\) select zero examples"):
        datasets.load(folder, "train", classes=(42, 43))
    with pytest.raises(ValueError, match="classes is empty"):
        datasets.load_arrays(folder, "train", classes=())


# ----------------------------------------------------------------------------
# real Fashion-MNIST from Debian's dataset-fashion-mnist


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    assert datasets.describe("fashion_mnist") == f"fashion_mnist (local IDX: {FASHION_DIR})"
    assert datasets.describe("Fashion-MNIST") == datasets.describe("fashion_mnist")
    x, y = datasets.load_arrays("fashion_mnist", "train")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    x, y = datasets.load_arrays("fashion_mnist", "test")
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    xb, yb = next(iter(datasets.load("fashion_mnist", batch_size=256, classes=range(5))))
    assert xb.shape == (256, 28, 28, 1) and int(tf.reduce_max(yb)) <= 4


# ----------------------------------------------------------------------------
# reliability: corrupt inputs name the file and the problem


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_error_npz_non_finite_pixel(tmp_path, bad):
    x = np.random.default_rng(5).random((4, 3, 3), dtype=np.float32)
    x[2, 1, 0] = bad     # one bad pixel must not make the split look like 0..255
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=np.arange(4))
    with pytest.raises(ValueError, match=r"nan\.npz.*non-finite.*\(2, 1, 0"):
        datasets.load_arrays(path, "train")
    with pytest.raises(ValueError, match=r"nan\.npz.*non-finite"):
        datasets.load(path, "train")


def test_error_truncated_npz_names_file(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez(path, x_train=np.zeros((4, 3, 3), np.uint8), y_train=np.arange(4))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut\.npz.*(corrupt|truncated)"):
        datasets.load_arrays(path, "train")


def test_error_idx_header_dimensions_overflow(tmp_path):
    # 2^31 * 2^31 * 4 elements: an int64 product wraps to 0 bytes of data
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(ValueError, match=r"Corrupt IDX file .*train-images-idx3-ubyte.*"
                                         r"header says shape"):
        datasets.read_idx(path)


def test_random_flips_mirror_about_half_the_images_and_keep_labels():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 5, 7, 2)).astype("float32")
    y = np.arange(64, dtype="int32")
    for ds in (tf.data.Dataset.from_tensor_slices((x, y)).batch(16),   # batches
               tf.data.Dataset.from_tensor_slices((x, y))):            # single images
        out = list(datasets.random_flips(ds, seed=3).unbatch().as_numpy_iterator()
                   if ds.element_spec[0].shape.rank == 4
                   else datasets.random_flips(ds, seed=3).as_numpy_iterator())
        xs = np.stack([a for a, _ in out])
        np.testing.assert_array_equal([b for _, b in out], y)
        same = np.array([np.array_equal(a, b) for a, b in zip(xs, x)])
        mirrored = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(xs, x)])
        assert np.all(same ^ mirrored)           # each image kept or mirrored, never both
        assert 16 <= mirrored.sum() <= 48, mirrored.sum()


def test_random_flips_reject_other_ranks():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4)))
    with pytest.raises(ValueError, match="random_flips needs images"):
        datasets.random_flips(ds)


def _shift_of(shifted, image, max_shift):
    """The (dy, dx) that moves ``image`` onto ``shifted`` with zero fill, or None."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            window = padded[max_shift - dy:max_shift - dy + h, max_shift - dx:max_shift - dx + w]
            if np.array_equal(window, shifted):
                return dy, dx
    return None


def _augmented_pairs(augment, x, y, batch):
    """``augment`` applied to batches and to single images of ``(x, y)``: for
    each, the list of ``(image, label)`` pairs it gives, one per example."""
    for ds in (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch),
               tf.data.Dataset.from_tensor_slices((x, y))):
        out = augment(ds)
        if ds.element_spec[0].shape.rank == 4:
            out = out.unbatch()
        yield list(out.as_numpy_iterator())


def test_random_shifts_move_images_by_whole_pixels_and_keep_labels():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, size=(64, 12, 10, 2)).astype("float32")  # no zeros inside
    y = np.arange(64, dtype="int32")
    for pairs in _augmented_pairs(lambda ds: datasets.random_shifts(ds, max_shift=2, seed=3),
                                  x, y, batch=16):
        np.testing.assert_array_equal([b for _, b in pairs], y)
        shifts = [_shift_of(a, img, 2) for (a, _), img in zip(pairs, x)]
        assert all(s is not None for s in shifts), shifts
        assert len(set(shifts)) > 5, shifts                    # the shifts vary
        assert sum(s != (0, 0) for s in shifts) > 32, shifts   # most images move


def test_random_shifts_reject_bad_input():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4)))
    with pytest.raises(ValueError, match="random_shifts needs images"):
        datasets.random_shifts(ds)
    images = tf.data.Dataset.from_tensor_slices((np.zeros((4, 5, 5, 1), "float32"), np.zeros(4)))
    with pytest.raises(ValueError, match="max_shift >= 0"):
        datasets.random_shifts(images, max_shift=-1)


def test_random_erasing_zeroes_one_rectangle_of_some_images_and_keeps_labels():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 1.0, size=(200, 12, 12, 1)).astype("float32")   # no zeros inside
    y = np.arange(200, dtype="int32")
    for pairs in _augmented_pairs(lambda ds: datasets.random_erasing(ds, 0.5, seed=2),
                                  x, y, batch=25):
        np.testing.assert_array_equal([b for _, b in pairs], y)
        erased = 0
        for (a, _), img in zip(pairs, x):
            zero = a[..., 0] == 0
            np.testing.assert_array_equal(a[~zero], img[~zero])      # the rest untouched
            if zero.any():
                erased += 1
                rows, cols = np.nonzero(zero)                        # one filled rectangle
                assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
                assert zero.mean() < 0.75
        assert 60 < erased < 140, erased                             # about half the images
    none = datasets.random_erasing(tf.data.Dataset.from_tensor_slices((x, y)).batch(50), 0.0)
    np.testing.assert_array_equal(np.concatenate([a for a, _ in none.as_numpy_iterator()]), x)


def test_random_erasing_rejects_bad_input():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4)))
    with pytest.raises(ValueError, match="random_erasing needs images"):
        datasets.random_erasing(ds)
    images = tf.data.Dataset.from_tensor_slices((np.zeros((4, 5, 5, 1), "float32"), np.zeros(4)))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
            datasets.random_erasing(images, bad)
