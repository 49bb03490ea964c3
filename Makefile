# Two commands on a fresh machine with Python >= 3.11: `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test install bench faults clean

dev: $(STAMP)
	$(BIN)/goldenroute dev

test: $(STAMP)
	$(BIN)/python -m pytest

# The six benchmarks and issue 14's targets (bench/README.md); `make bench BENCH_ARGS=--quick` for the one-minute run.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Fault runs that print their counts: Temporal down for a minute during a stream of 1,000 members;
# 1,000 first touches through the LINE, SMTP and SMS stand-ins failing at random, the worker
# killed -9 midway, then LINE down for a minute (CHANNEL_FAULT_ARGS=--quick: 200, 20 s); two workers
# on one task queue, one killed -9 in a storm of 1,000 members (SCALE_OUT_ARGS=--quick: 200); a broadcast
# to 1,000 members, the worker killed -9 half-way (BROADCAST_FAULT_ARGS="--members 200" for a short one).
faults: $(STAMP)
	$(BIN)/python -m bench.faults $(FAULT_ARGS)
	$(BIN)/python -m bench.channel_faults $(CHANNEL_FAULT_ARGS)
	$(BIN)/python -m bench.scale_out $(SCALE_OUT_ARGS)
	$(BIN)/python -m bench.broadcast_faults $(BROADCAST_FAULT_ARGS)
	FUZZ_EXAMPLES=1800 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/ingress/test_http_fuzz.py
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .goldenroute .pytest_cache .hypothesis
