# The whole set-up: `make demo` and `make test` create or reuse .venv and install what they need.
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.minenegs-installed
SHARED ?= ../shared/data

.PHONY: install demo test test-fast test-repeat bench-encode bench-index bench-mine bench-scale bench-ray bench-dropin bench-finetune bench-llm-judge clean

install: $(STAMP)

# torch goes in first with its pin, so sentence-transformers finds it and pip takes the CPU wheel.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/minenegs encode data_samples --split train --output build/demo/embeddings --cache-dir build/cache --force
	$(BIN)/minenegs mine build/demo/embeddings --output build/demo/negatives.parquet --force  # the default recipe (configs/default.toml)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# flake check, not in CI: `make test` three times in a fresh clone (committed HEAD, no .venv), one core kept busy
test-repeat:
	bash .ci/repeat

BENCH_STAMP := $(VENV)/.minenegs-bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ray,bench]'
	touch $(BENCH_STAMP)

bench-encode: $(STAMP)
	$(BIN)/python benchmarks/encode.py --data $(SHARED)/scifact

bench-index: $(STAMP)
	$(BIN)/python benchmarks/index_recall.py --data $(SHARED)/scifact

bench-mine: $(BENCH_STAMP)
	$(BIN)/python benchmarks/mine_vs_st.py --data $(SHARED)/scifact

# synthetic vectors, no model and no shared data: 1M documents x 100k queries (a few minutes, ~5 GB of disk)
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py --docs 1000000 --queries 100000

# SciFact encoded locally, then on a local Ray cluster with 1 and 2 model actors, in rounds (about 15 minutes)
bench-ray: $(STAMP)
	$(BIN)/python benchmarks/ray_encode.py --data $(SHARED)/scifact --rounds 2

# minenegs.mine_hard_negatives against sentence-transformers' own in one process (about 8 minutes)
bench-dropin: $(BENCH_STAMP)
	$(BIN)/python benchmarks/dropin_vs_st.py --data $(SHARED)/scifact --rounds 5

# every recipe not yet in benchmarks/results/finetune.json (about 5-15 minutes per recipe and seed)
bench-finetune: $(BENCH_STAMP)
	$(BIN)/python benchmarks/finetune.py --data $(SHARED)/scifact --skip-done
	$(BIN)/python benchmarks/finetune.py --report --plot benchmarks/results/finetune.png

# opt-in: an LLM judge against llama.cpp's server with Gemma 3 270M on 127.0.0.1, end to end on the sample data
# (the mechanics, not judgement); the first install builds llama.cpp from source (about 5 minutes on 2 cores)
JUDGE_STAMP := $(VENV)/.minenegs-judge-server-installed
$(JUDGE_STAMP): $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip install --quiet -e '.[test,ray,judge-server]'
	touch $(JUDGE_STAMP)

bench-llm-judge: $(JUDGE_STAMP)
	$(BIN)/python benchmarks/llm_judge_server.py

clean:
	rm -rf build .pytest_cache
