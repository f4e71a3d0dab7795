# Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow fuzz serve lint format layout bench bench-large bench-load bench-10m clean psl-age

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/scrapy crawl pages -a start=examples/pages -s LOG_LEVEL=INFO
	$(BIN)/scrapy search "chair yoga"

# Two workers, one test file each: most tests wait on crawler and server processes.
test: install
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

test-slow: install
	$(BIN)/python -m pytest -m slow

# The property tests (parse_page on bytes, normalizers, search on any query, the fast
# search path against Whoosh) with FUZZ_EXAMPLES examples each instead of make test's few
# dozen to a few hundred (every test whose count is conftest.fuzz(N) is selected here).
# `arbitrary` also selects the normalizers' timing fuzzer (tests/test_normalize_timing.py:
# any repeated unit of syntax must cost linear time in captions, bodies and URLs).
FUZZ_EXAMPLES ?= 20000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -m "not slow" \
		-k "arbitrary or never_raises or any_query or idempotent or generated_queries \
		or fast_equals_markdown_it or image_line_pairs or without_suffixes or never_words \
		or not_touched or two_words_of_a_caption or pack_and_unpack"

# The Public Suffix List shipped in the publicsuffixlist wheel: its date and age in days
# (upgrade the package to get a newer list; nothing is ever downloaded at run time).
psl-age: install
	$(BIN)/python -m pipeline.normalize.domains

serve: install
	$(BIN)/python -m index serve

# The README's layout map, made from the packages' and modules' docstrings.
layout: install
	$(BIN)/python tests/layout.py --write

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The small preset, then the load benchmark on an index of the same corpus (issue 30 asks
# for both in `make bench`).
bench: install
	$(BIN)/python -m bench.run --preset small
	$(MAKE) bench-load

bench-large: install
	$(BIN)/python -m bench.run --preset large

# 20 clients for 20 s (3/4 cheap, 1/4 expensive) against `serve --workers 2`: the cheap
# probe's p50/p99 alone and under the crowd, and the server's memory (bench/load.py).
LOAD_INDEX ?= bench/work/load-index
bench-load: install
	test -d $(LOAD_INDEX) || { $(BIN)/python -m bench.corpus --pages 1250 --out bench/work/corpus-1250 && \
		$(BIN)/scrapy crawl pages -a start=bench/work/corpus-1250 -s INDEX_DIR=$(LOAD_INDEX) -s LOG_LEVEL=WARNING; }
	$(BIN)/python -m bench.load --index $(LOAD_INDEX)

# Issue 30's figures at 10M documents on a replicated index (bench/tenmillion.py): about
# 40 min to build (11 GB under bench/work/tenmillion, 6 GB more while merging), then each step a few minutes.
bench-10m: install
	$(BIN)/python -m bench.tenmillion build
	$(BIN)/python -m bench.tenmillion inproc
	$(BIN)/python -m bench.tenmillion inproc --facet
	$(BIN)/python -m bench.tenmillion http
	$(BIN)/python -m bench.tenmillion http --facet
	$(BIN)/python -m bench.tenmillion cold
	$(BIN)/python -m bench.tenmillion report

clean:
	rm -rf data bench/work .pytest_cache .ruff_cache
