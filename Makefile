# Yinxin: `make run` starts a demo instance, `make test` runs the test suite.

PYTHON ?= python3
VENV ?= .venv
INSTANCE ?= instance
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

BIN := $(VENV)/bin
# Each stamp records that the venv holds the project as pyproject.toml describes it.
RUN_STAMP := $(VENV)/.yinxin-installed
DEV_STAMP := $(VENV)/.yinxin-installed-dev

# Debian packages the tests use, each as package:probe. The probe is a command on PATH,
# or an absolute path to a file the package installs; a package whose probe is missing
# gets installed. Add a tool by adding one word.
DEBIAN_TOOLS ?= softhsm2:softhsm2-util

.PHONY: run test debian-tools clean-instance

run: $(RUN_STAMP)
	@if [ ! -f "$(INSTANCE)/yinxin.toml" ]; then \
		$(BIN)/yinxin init --demo --home "$(INSTANCE)"; \
	fi
	$(BIN)/yinxin serve --home "$(INSTANCE)" --host "$(HOST)" --port "$(PORT)"

test: $(DEV_STAMP) debian-tools
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv "$(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch "$@"

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch "$@" "$(RUN_STAMP)"

debian-tools:
	@missing=""; \
	for entry in $(DEBIAN_TOOLS); do \
		package="$${entry%%:*}"; probe="$${entry#*:}"; \
		case "$$probe" in \
			/*) [ -e "$$probe" ] || missing="$$missing $$package" ;; \
			*) command -v "$$probe" >/dev/null 2>&1 || missing="$$missing $$package" ;; \
		esac; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: missing Debian packages:$$missing" >&2; \
		echo "make: install them as root, then run make test again:" >&2; \
		echo "    sudo apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "Installing Debian packages:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

clean-instance:
	rm -rf "$(INSTANCE)"
