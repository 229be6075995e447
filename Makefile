# Every target creates .venv when missing, so a fresh clone needs only `make run` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
RUN_DIR ?= runs/demo

.PHONY: run test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/negspace train --config configs/demo.toml --out $(RUN_DIR) --overwrite
	$(BIN)/negspace recommend $(RUN_DIR) --user $$($(BIN)/python -c "import json;print(json.load(open('$(RUN_DIR)/ids.json'))['users'][0])") -k 10

test: $(STAMP_TEST)
	$(BIN)/python -m pytest

bench: $(STAMP_RUN)
	$(BIN)/python bench/samplers.py

clean:
	rm -rf $(VENV) runs
