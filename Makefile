# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck localstack localstack-stop clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "goraxfast needs Python 3.11+, found " + sys.version.split()[0] + " (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## run: start a local SQS server, provision queues, publish a demo workload, run the engine on it
run: $(STAMP)
	$(PY) -m goraxfast.cli.demo

## test: lint, type-check and the whole test suite (real moto server on loopback, real forks)
test: $(STAMP) lint typecheck
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check goraxfast tests bench profiles
	$(VENV)/bin/ruff format --check goraxfast tests bench profiles

typecheck: $(STAMP)
	$(VENV)/bin/mypy goraxfast

## localstack: LocalStack on the host (own Python 3.13 venv), SQS only, bound to 127.0.0.1
localstack: $(STAMP)
	$(PY) -m goraxfast.cli.localstack start

localstack-stop: $(STAMP)
	$(PY) -m goraxfast.cli.localstack stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks

## bench: micro benches + end-to-end contenders on LocalStack and fauxqs + scaling + publish (~15 min)
bench: $(STAMP) bench-deps
	$(PY) -m bench --all $(BENCH_ARGS)

## profile: py-spy records the engine's parent and one worker during an end-to-end run
profile: $(STAMP) bench-deps
	$(PY) -m profiles.run $(PROFILE_ARGS)

bench-deps: $(STAMP)
	@$(PY) -c 'import matplotlib, tqdm' 2>/dev/null && test -x $(VENV)/bin/py-spy \
		|| $(PY) -m pip install --quiet -e '.[bench]'
.PHONY: bench profile bench-deps
