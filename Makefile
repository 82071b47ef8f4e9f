# Two commands for a learner: `make lab` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test unit notebooks bench serve demo execute-notebooks clean venv

venv: $(STAMP)

# (Re)install only when the dependency list or the package metadata changed: a second run is instant.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]' \
	  || { echo "error: $(PYTHON) is older than 3.11; run e.g. 'make lab PYTHON=python3.12'"; exit 1; }
	@echo "Setting up $(VENV) (the first time takes a minute or two; later runs skip this)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip twice quiet: errors only (its warnings are about the machine's own pip configuration, such as
	@# an extra index that is not there: nothing about this lab)
	@$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check -r requirements.txt
	@$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@# labkit itself, editable so that changes to labkit/ take effect; setuptools' boxed notice about
	@# editable installs is for package authors, so its warnings are silenced here (errors still show)
	@PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)
	@echo "Setup done."

# Jupyter's start-up log is for administrators: warnings and errors only, and the link to open.
lab: $(STAMP)
	@echo "Starting JupyterLab on chapter 00 (it opens in your browser; if not, open the link below). Ctrl+C stops it."
	@$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.log_level=WARN --LabApp.log_level=WARN notebooks/00_orientation.ipynb

# One file per worker at a time (--dist loadfile): a notebook's cells must stay in one kernel. Three
# workers on two cores: most tests wait (on servers, browsers, the simulated model's pace), and with two
# the cores were half idle (measured: 8 min 49 s with 2 workers, 6 min 27 s with 3, same 793 tests).
test: $(STAMP)
	@echo "Running the unit tests and every notebook (a few minutes)..."
	@$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider -n 3 --dist loadfile

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest -q notebooks --nbval-lax --nbval-current-env

serve: $(STAMP)
	$(BIN)/python -m labkit serve

# Classroom mode: the lab on the local network with a fresh class token; prints the join link and a QR code.
demo: $(STAMP)
	$(BIN)/python -m labkit classroom

bench: $(STAMP)
	$(BIN)/python -m labkit bench transports --json bench-transports.json
	$(BIN)/python -m labkit bench vad --json bench-vad.json
	$(BIN)/python -m labkit bench realtime --json bench-realtime.json
	$(BIN)/python -m labkit bench latency --json bench-latency.json
	$(BIN)/python -m labkit bench load --json bench-load.json

# Run every chapter offline and store fresh outputs: do this before committing a notebook.
# (nbval compares cells marked NBVAL_CHECK_OUTPUT with these stored outputs.)
execute-notebooks: $(STAMP)
	$(BIN)/python -m labkit notebooks execute notebooks/*.ipynb notebooks/solutions/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache
