"""``import hyperkeras`` with a Keras backend other than TensorFlow fails clearly."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_hyperkeras(env_backend, patch_backend=None):
    code = "import hyperkeras"
    if patch_backend:
        # Keras itself stays on TensorFlow; only what it reports is changed, so
        # the check runs even where no other backend is installed.
        code = textwrap.dedent(f"""
            import keras
            keras.backend.backend = lambda: {patch_backend!r}
            import hyperkeras
        """)
    env = {**os.environ, "KERAS_BACKEND": env_backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, cwd=ROOT, env=env)


def test_other_backend_reported_by_keras_raises_import_error():
    res = _import_hyperkeras("tensorflow", patch_backend="jax")
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "KERAS_BACKEND" in res.stderr
    assert "must be tensorflow" in res.stderr or "KERAS_BACKEND=tensorflow" in res.stderr


@pytest.mark.parametrize("backend, module", [("jax", "jax"), ("torch", "torch"),
                                             ("numpy", "jax")])
def test_real_other_backend_raises_import_error(backend, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"Keras backend {backend!r} needs {module}, not installed")
    res = _import_hyperkeras(backend)
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "KERAS_BACKEND=tensorflow" in res.stderr
