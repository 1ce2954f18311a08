# Contrastive Learning for Language Models — the executable companion.
#   make book   build the site into _build/html (Jupyter Book 1.x, warnings are errors)
#   make test   unit tests, every chapter under nbval (quick profile), and the built site in a browser
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MATHJAX_DIR := book/_mathjax/mathjax
NBVAL_TIMEOUT ?= 900

# Offline-friendly defaults; override on the command line or in the environment.
export CL_DATA_DIR ?= $(abspath ../shared/data)
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: book test unit notebooks site execute bench clean install figures colab

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

$(MATHJAX_DIR)/tex-mml-chtml.js:
	rm -rf .cache/npm && mkdir -p .cache/npm
	npm install --silent --no-audit --no-fund --prefix .cache/npm mathjax@3.2.2
	mkdir -p $(MATHJAX_DIR)/output/chtml/fonts $(MATHJAX_DIR)/input/tex
	cp .cache/npm/node_modules/mathjax/es5/tex-mml-chtml.js $(MATHJAX_DIR)/
	cp -r .cache/npm/node_modules/mathjax/es5/output/chtml/fonts/woff-v2 $(MATHJAX_DIR)/output/chtml/fonts/
	cp -r .cache/npm/node_modules/mathjax/es5/input/tex/extensions $(MATHJAX_DIR)/input/tex/

book: $(STAMP) $(MATHJAX_DIR)/tex-mml-chtml.js
	$(BIN)/jupyter-book build . -W --keep-going -n

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q --ignore=tests/test_site.py --ignore=tests/test_colab_install.py

# The chapters' install cell as Colab runs it, in fresh venvs (newest and oldest supported versions).
colab: $(STAMP)
	$(BIN)/python -m pytest tests/test_colab_install.py -q

# The landing page's figure, drawn by the book's own code.
figures: $(STAMP)
	$(BIN)/python tools/figures.py

notebooks: $(STAMP)
	CL_QUIET=1 CL_PROFILE=quick HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=$(NBVAL_TIMEOUT) -p no:cacheprovider chapters

site: book
	$(BIN)/python -m pytest tests/test_site.py -q

test: $(STAMP) $(MATHJAX_DIR)/tex-mml-chtml.js
	CL_QUIET=1 CL_PROFILE=quick HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=$(NBVAL_TIMEOUT) tests chapters

# Re-execute every chapter in the quick profile and store its outputs (what the site shows).
execute: $(STAMP)
	for nb in chapters/*.ipynb; do \
	  echo "== $$nb"; start=$$(date +%s); \
	  CL_QUIET=1 CL_PROFILE=quick HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	    $(BIN)/jupyter execute --inplace --timeout=1200 "$$nb" || exit 1; \
	  echo "   $$(( $$(date +%s) - start )) s"; \
	done

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_simcse.py

clean:
	rm -rf _build .cache book/_mathjax
