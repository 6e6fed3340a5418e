# Two commands do all set-up on a fresh machine:  make demo   and   make test
# (make demo-det runs the MMDetection story; it and make test also install the [mmdet] extra)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.autobin-installed
MMDET_STAMP := $(VENV)/.autobin-mmdet-installed
DEMO_DET := runs/demo-det

# mmcv 2.1.0 has no wheel here and builds from source (about 14 minutes once; pip caches the
# wheel, so later installs take seconds): its setup imports pkg_resources (build without
# isolation, with the venv's setuptools >=77,<81), forces -std=c++17 while torch's headers need
# C++20 (tools/cxx20 appends -std=c++20 to compile commands), and needs MMCV_WITH_OPS=1 for the
# compiled ops mmdet imports. The versions are the [mmdet] extra of pyproject.toml.
MMCV_BUILD_ENV := CC=$(CURDIR)/tools/cxx20 CXX=$(CURDIR)/tools/cxx20 MMCV_WITH_OPS=1 MAX_JOBS=2

.PHONY: demo demo-det test mmdet lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77,<81" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(MMDET_STAMP): $(STAMP)
	@echo "installing the [mmdet] extra (mmcv 2.1.0 builds from source once: ~15 minutes on 2 cores)"
	$(MMCV_BUILD_ENV) $(BIN)/python -m pip install --quiet --no-build-isolation -e ".[dev,mmdet]"
	$(BIN)/python -c "import mmcv.ops, mmdet.models"
	touch $(MMDET_STAMP)

mmdet: $(MMDET_STAMP)

demo: $(STAMP)
	$(BIN)/autobin demo

demo-det: $(MMDET_STAMP)
	$(BIN)/python benchmarks/detection.py --demo --out $(DEMO_DET)

test: $(MMDET_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
