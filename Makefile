# Every target that runs code first brings .venv up to date with the pinned requirements,
# so a fresh clone needs nothing but python3 (3.11) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := False
# Only used when no `campaign_store` Airflow connection is configured.
export CAMPAIGNS_EMBEDDED_STORE ?= $(CURDIR)/.campaign-store

.PHONY: help venv test chaos demo up shell bench validate schema lock stop clean

help:
	@echo "make demo      fresh clone -> demo data -> three campaigns sent to a local mailbox"
	@echo "make test      the test suite (needs PostgreSQL on 127.0.0.1:5432 or uses the embedded one)"
	@echo "make chaos     fault tests: killed send tasks, store restarts, dropped SMTP, throttling"
	@echo "make up        Airflow standalone with the campaigns, UI on http://localhost:8080"
	@echo "make shell     a shell with the venv active and make's settings: campaigns, airflow dags test …"
	@echo "make bench     benchmarks, with bare baselines measured in the same run (BENCH_ARGS='--only run,parse')"
	@echo "make validate  campaigns validate"
	@echo "make schema    regenerate dags/campaigns/campaign.schema.json"
	@echo "make lock      recompile requirements*.txt from requirements*.in"
	@echo "make stop      stop the embedded PostgreSQL"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest

# Kept out of `make test` (pyproject's --ignore): a few minutes of killed and retried sends.
chaos: venv
	$(BIN)/python -m pytest tests/chaos

demo: venv
	$(BIN)/python -m campaign_orchestrator.devtools.demo

up: venv
	$(BIN)/python -m campaign_orchestrator.devtools.standalone

# The venv's `campaigns` and `airflow` on PATH, with the variables above and the local
# unsubscribe secret (`campaigns env` prints them for a shell of your own). `exit` leaves.
shell: venv
	@echo "(campaigns) venv active, Airflow home $(AIRFLOW_HOME); 'exit' to leave"
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; . $(BIN)/activate; eval "$$($(BIN)/campaigns env)"; PS1="(campaigns) $${PS1:-\$$ }"') -i

bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

validate: venv
	$(BIN)/campaigns validate

schema: venv
	$(BIN)/campaigns schema -o dags/campaigns/campaign.schema.json

lock: venv
	$(BIN)/uv pip compile requirements.in -o requirements.txt --python-version 3.11 --quiet --no-header
	$(BIN)/uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 --quiet --no-header

stop: venv
	-$(BIN)/campaigns store stop

clean: stop
	rm -rf $(VENV) .airflow .campaign-store .mailbox test-artifacts
