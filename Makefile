# Every target creates .venv when missing, so a fresh clone needs only `make run` or `make test`.
# pyproject.toml declares compatible ranges; constraints.txt holds the exact versions installed
# here (and by CI), and a change to either reinstalls.
PY ?= python3
VENV ?= .venv
CONSTRAINTS := constraints.txt
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
RUN_DIR ?= runs/demo

.PHONY: run test bench results clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP_RUN): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[plot]"
	touch $@

$(STAMP_TEST): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/negspace train --config configs/demo.toml --out $(RUN_DIR) --overwrite
	$(BIN)/negspace recommend $(RUN_DIR) --user $$($(BIN)/python -c "import json;print(json.load(open('$(RUN_DIR)/ids.json'))['users'][0])") -k 10

test: $(STAMP_TEST)
	$(BIN)/python -m pytest

bench: $(STAMP_RUN)
	$(BIN)/python bench/samplers.py

# docs/results.md from bench/records/*.jsonl (standard library only: no venv needed)
results:
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) runs
