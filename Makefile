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

# ruff (ruff.toml) on the package and tests; shellcheck (.shellcheckrc) on every shell script
# of utils/, egs/, ci/ and tools/ (each file once: the recipes' pipeline.sh are links).
SHELL_SCRIPTS = $(shell find utils egs ci tools -name '*.sh' -type f | sort)

lint: install
	$(PY) -m ruff check dualspeech test
	.venv/bin/shellcheck $(SHELL_SCRIPTS)

clean-env:
	rm -rf .venv
