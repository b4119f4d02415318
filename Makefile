# mmsam: the two commands a newcomer needs.
#   make demo   set up everything (idempotent), then segment demo/demo.jpg with MobileSAM
#               (the lightest model: a 40 MB download, a few seconds on a CPU); SAM ViT-B:
#               make demo DEMO_MODEL=sam_vit-base-p16_3rdparty_sa1b-1024px
#   make test   set up everything (idempotent) and run the test suite
#   make test-fast   the inner loop: the suite without lint, packaging, set-up and
#               subprocess tests (the outer_loop marker), no set-up step
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
DEMO_MODEL ?= mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px
export MMSAM_VENV := $(VENV)

.PHONY: setup demo test test-fast lint format bench

setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) demo/image_demo.py demo/demo.jpg --points 260,170 --out-dir outputs/demo --model $(DEMO_MODEL)

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-fast:
	$(PY) -m pytest -q tests --fast $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check mmsam tools tests demo configs setup.py
	$(PY) -m ruff format --check mmsam tools tests demo configs setup.py

format: setup
	$(PY) -m ruff format mmsam tools tests demo configs setup.py
	$(PY) -m ruff check --fix mmsam tools tests demo configs setup.py
