# The README's two commands: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
DATA ?= ../shared/data
# Full environment (training, export, tests): torch pinned to the CPU build.
VENV ?= .venv
# Runtime-only environment (numpy, opencv, onnxruntime, typer): what goes on a rover.
RUNTIME_VENV ?= .venv-runtime
DEMO_OUT ?= out/demo

.PHONY: setup setup-runtime demo test lint unit integration clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[train,dev,sim]'
	touch $@

$(RUNTIME_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install -q --disable-pip-version-check -e .
	touch $@

setup: $(VENV)/.installed

setup-runtime: $(RUNTIME_VENV)/.installed

## demo: classify the real Navcam frames with the bundled default model (no torch installed).
demo: setup-runtime
	@test -d $(DATA)/ai4mars-msl-ncam-256/images || \
		{ echo "error: $(DATA)/ai4mars-msl-ncam-256/images not found (set DATA=...)" >&2; exit 1; }
	$(RUNTIME_VENV)/bin/python -c "import importlib.util as u, sys; \
		sys.exit('torch is installed in the runtime venv' if u.find_spec('torch') else 0)"
	$(RUNTIME_VENV)/bin/edge classify $(DATA)/ai4mars-msl-ncam-256/images --out $(DEMO_OUT) --overwrite
	@echo "outputs: $$(wc -l < $(DEMO_OUT)/frames.jsonl) frame records, \
	$$(wc -l < $(DEMO_OUT)/tiles.jsonl) tile records in $(DEMO_OUT)/"

## test: lint, then the whole suite (integration tests skip when $(DATA) is absent).
test: setup lint
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	$(VENV)/bin/pytest -q -m "not integration"

integration: setup
	$(VENV)/bin/pytest -q -m integration

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) out .pytest_cache .ruff_cache
