# The README's commands. `make test` and `make demo` install the environment first (idempotent).
PY := .venv/bin/python
SIZE ?= default

.PHONY: install demo test test-all lint clean-env

install:
	bash tools/install.sh

demo: install
	cd egs/mini && ./run.sh --size $(SIZE)

test: install
	$(PY) -m pytest -m "not slow" -q

test-all: install
	$(PY) -m pytest -q

# ruff (ruff.toml) on the package and tests; shellcheck (.shellcheckrc) on every tracked shell
# script of utils/, egs/, ci/ and tools/ (not recipe outputs; links such as the recipes'
# pipeline.sh are checked once, as their target).
SHELL_SCRIPTS = $(shell git ls-files -s utils egs ci tools | awk '$$1 != "120000" && $$4 ~ /\.sh$$/ {print $$4}')

lint: install
	$(PY) -m ruff check dualspeech test
	.venv/bin/shellcheck $(SHELL_SCRIPTS)

clean-env:
	rm -rf .venv
