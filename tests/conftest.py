"""Test-wide setup: shared helper modules importable, GPU tests skipped
without a GPU, and every test seeded (Python, NumPy, TensorFlow and Keras)
from its own name, so a failing test fails again the same way."""

import os
import sys
import zlib

import keras
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    if tf.config.list_physical_devices("GPU"):
        return
    skip = pytest.mark.skip(reason="no GPU visible to TensorFlow")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything(request):
    keras.utils.set_random_seed(zlib.crc32(request.node.nodeid.encode()))
