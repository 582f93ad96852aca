# Two commands on a fresh clone (Python >= 3.10):
#   make demo   create .venv, install, upscale the example photo (says where the output is)
#   make test   install what the tests need (chromium, chromedriver and g++ where missing; the test extra), run the suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml setup.py
	bash .ci/system-packages
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m accel.upscale accel/examples/photo_lr.jpg -o accel/examples/photo_lr_x2.png --force
	@echo "output: accel/examples/photo_lr_x2.png (from accel/examples/photo_lr.jpg)"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest
