"""The grading data and the shared MNIST loader, as the parent uses them.

The loader is ``starter/mnist_loader.py`` (numpy only, no TensorFlow), the same
file students and the sandboxed child use; it is imported here under a private
name.  The grading data is read once per process and shared between batch
worker threads.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path

from . import config
from .errors import UngradableError

PROJECT_ROOT = config.CONFIG.project_root
LOADER_PATH = config.CONFIG.loader
_LOCK = threading.RLock()
_DATA: dict = {}


def load_loader():
    """The shared MNIST loader, imported from starter/ (numpy only, no TensorFlow)."""
    name = "_grader_mnist_loader"
    with _LOCK:  # batch grades from several threads
        if name in sys.modules:
            return sys.modules[name]
        path = config.CONFIG.loader
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or not path.is_file():
            raise UngradableError(f"{path}: the MNIST loader is missing")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look the module up while it loads
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def grading_data(source: str | None):
    """(x_train, y_train, x_test, y_test, description) for the model item, read once."""
    with _LOCK:
        if source not in _DATA:
            _DATA[source] = _read_grading_data(source)
        return _DATA[source]


def _read_grading_data(source: str | None):
    loader = load_loader()
    try:
        if source in (None, "offline"):
            return loader.load_offline_subset()  # never the Keras cache: reproducible
        if source == "keras":
            cache = os.path.expanduser(os.path.join("~", ".keras", "datasets", "mnist.npz"))
            return loader.load_arrays(cache, download=False)
        path = Path(source)
        if not path.is_absolute():
            path = config.CONFIG.project_root / path
        return loader.load_arrays(path, download=False)
    except loader.DataError as exc:
        raise UngradableError(f"grading data: {exc}") from None


