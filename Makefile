# Counting Arguments, Counted: the two commands a reader needs are `make book` and `make test`.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= standard
JOBS    ?= 2

.PHONY: book test env vendor chromium rebuild render quick clean

## make book: set everything up, execute every notebook (default profile), render _build/html
book: env vendor
	$(BIN)/python -m countingargs build --profile $(PROFILE) --jobs $(JOBS)

## make test: set everything up and run the whole test suite (unit, runner, quick book, browser)
test: env vendor chromium
	$(BIN)/python -m pytest -v -rs

## make quick: the quick profile of the whole book, rebuilt and rendered
quick:
	$(MAKE) book PROFILE=quick

env: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

vendor: vendor/mathjax/tex-mml-chtml.js
vendor/mathjax/tex-mml-chtml.js: tools/mathjax/package-lock.json
	cd tools/mathjax && npm ci --no-audit --no-fund --loglevel=error
	rm -rf vendor/mathjax && mkdir -p vendor
	cp -r tools/mathjax/node_modules/mathjax/es5 vendor/mathjax
	touch $@

chromium:
	bash scripts/ensure-chromium.sh

rebuild: env
	$(BIN)/python -m countingargs rebuild --profile $(PROFILE) --jobs $(JOBS)

render: env vendor
	$(BIN)/python -m countingargs render

clean:
	rm -rf _build book/generated book/figures results failures .rebuild-tmp
