# Two commands do everything on a fresh clone:
#   make demo   set up (venv, install, build the op) and run the main job
#   make test   set up and run the test suite (what .ci/run calls)
# Both are idempotent. Optional, and not part of `make test`:
#   make bazel  build and test the framework-free native targets
#               (kernels/BUILD, tests/kernels/BUILD) with Debian's
#               bazel-bootstrap 4.2.3, offline (installs it first when root
#               with apt-get)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hyperkeras-installed
KERNEL_SOURCES := $(shell find kernels -type f \( -name '*.cc' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \) 2>/dev/null)
DATASET ?= fashion_mnist
OUT ?= runs/gauge_entropy
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test data hypergan-demo bench bazel clean

setup: $(STAMP) data

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt setup.py $(KERNEL_SOURCES)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

# Offline, MNIST cannot be downloaded: Debian ships Fashion-MNIST as IDX files.
data:
	@if [ ! -d $(FASHION_MNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "note: could not install dataset-fashion-mnist; tfds or a local path is needed"; \
	fi

demo: setup
	$(PY) examples/mnist_gauge_entropy.py --dataset $(DATASET) --out $(OUT)

hypergan-demo: setup
	$(PY) examples/hypergan_mnist.py --dataset $(DATASET) --out runs/hypergan_mnist

# The suite runs with TensorFlow's oneDNN kernels OFF (the strict setting: as
# on AVX2-only CPUs, where some TF CPU kernels, e.g. grouped-convolution
# gradients, do not exist), then the training tests again with oneDNN ON.
test: setup
	bash kernels/check_nvcc.sh
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest tests -q -p no:cacheprovider
	TF_ENABLE_ONEDNN_OPTS=1 $(PY) -m pytest tests/models tests/ops -q -p no:cacheprovider -m "not slow"

bench: setup
	$(PY) benchmarks/batched_conv.py

# Bazel build of the framework-free targets (no TensorFlow / CUDA / pybind11;
# those are in BUILD.tensorflow, not built). WORKSPACE + .bazelrc keep it
# offline and at two jobs; outputs live in Bazel's output base
# (~/.cache/bazel), the bazel-* symlinks here are git-ignored.
BAZEL ?= bazel
BAZEL_FLAGS ?=
BAZEL_TARGETS := //kernels/... //tests/kernels/...
bazel:
	@if ! command -v $(BAZEL) >/dev/null 2>&1; then \
	  if [ "$(BAZEL)" = bazel ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "make bazel: installing Debian's bazel-bootstrap"; \
	    (apt-get update -qq && apt-get install -y -qq bazel-bootstrap) || exit 1; \
	  else \
	    echo "make bazel: '$(BAZEL)' not found. Install Debian's bazel-bootstrap (4.2.3):" \
	         "as root, apt-get install bazel-bootstrap (or set BAZEL=/path/to/bazel)." >&2; \
	    exit 1; \
	  fi; \
	fi
	$(BAZEL) build $(BAZEL_FLAGS) $(BAZEL_TARGETS)
	$(BAZEL) test $(BAZEL_FLAGS) $(BAZEL_TARGETS)

clean:
	rm -rf build *.egg-info hyperkeras/ops/*.so
