# The two commands of the README:
#   make run    set up, then run the main job (quick preset, built-in Fashion-MNIST)
#   make test   set up, then run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST  = /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup setup-test data run test lint clean gallery

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The tests also exercise the tfds path on tfds' mock data, which needs TensorFlow.
setup-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,tfds]"
	touch $@

# Real Fashion-MNIST, offline, from the Debian/Ubuntu package.
data: $(FMNIST)

$(FMNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

run: setup data
	$(BIN)/python -m experiments.alexnet_bs_sweep --preset quick

# Tests in parallel processes (pytest-xdist), one per core up to 4: most of a
# test's time is XLA compiling, one core per program.
test: setup-test data
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist worksteal

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache

# Every experiment's quick preset (python -m experiments.suite), then the README
# gallery from their headline figures (docs/gallery/).
gallery: setup data
	$(BIN)/python -m experiments.suite --preset quick --out runs/suite-gallery
	$(BIN)/python -m experiments.gallery runs/suite-gallery
