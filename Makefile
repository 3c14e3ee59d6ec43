# clips-llava: the two commands a new user runs are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DS_ACCELERATOR=cpu
DEMO_OUT ?= runs/demo

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[test]" "torch==2.14.1" "torchvision==0.29.1"
	touch $(STAMP)

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q tests

demo: install
	$(OFFLINE) $(BIN)/clips-llava demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) runs
