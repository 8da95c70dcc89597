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

lint: install
	$(PY) -m compileall -q dualspeech test
	bash -n utils/*.sh egs/*/run.sh

clean-env:
	rm -rf .venv
