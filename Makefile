# Two entry points (see README): `make run` and `make test`. Both create or reuse .venv/ and
# install pinned versions: `make run` the core (requirements.txt), `make test` the core, what
# the suite needs (requirements-test.txt) and the optional extras (requirements-airflow.txt,
# requirements-dist.txt, requirements-lab.txt). `make lab` opens the notebooks in JupyterLab.
# Nothing is installed by hand.
PYTHON ?= python3.11
# Python's bytecode is cached (__pycache__/, ignored by git) even where the environment says not
# to: the suite starts some hundreds of processes that import minilake, and compiling it took
# ~0.17 s of each
unexport PYTHONDONTWRITEBYTECODE
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
UV     := uv==0.13.9
# uv (pinned, installed into the venv by pip) installs the pinned sets: ~18 s for make test's,
# where pip took ~95 s. The same versions either way (all are pinned); pip does it if uv fails.
install = $(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode $(1) || $(PIP) $(1)
STAMP  := $(VENV)/.installed
TESTED := $(VENV)/.installed-test
LABBED := $(VENV)/.installed-lab

.PHONY: run test lint lab setup clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PIP) $(UV)
	$(call install,-r requirements.txt)
	$(PIP) --no-deps --no-build-isolation -e .     # pip: uv's build leaves a lock in /tmp
	touch $(STAMP)

$(TESTED): $(STAMP) requirements-test.txt requirements-airflow.txt requirements-dist.txt \
		requirements-lab.txt
	$(call install,-r requirements-test.txt -r requirements-airflow.txt \
		-r requirements-dist.txt -r requirements-lab.txt)
	touch $(TESTED) $(LABBED)

$(LABBED): $(STAMP) requirements-lab.txt
	$(call install,-r requirements-lab.txt)
	touch $(LABBED)

run: $(STAMP)
	$(PY) -m minilake workbook

lab: $(LABBED)
	$(VENV)/bin/minilake lab

# The run report's page test (tests/system/test_run_report.py) opens it in Debian's Chromium,
# driven through Debian's chromedriver: installed here (as root, as in CI) when missing.

test: $(TESTED)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium \
		chromium-driver)
	$(VENV)/bin/lint-imports --no-cache
	@# pytest's own folders in a temporary folder of this run's, removed after it (pytest would
	@# keep the last three sessions' under the system temp folder)
	base=$$(mktemp -d -t minilake-pytest-XXXXXX) && \
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 --basetemp=$$base; \
	status=$$?; rm -rf $$base; exit $$status

lint: $(TESTED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV)
