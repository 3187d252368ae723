# Yinxin: `make run` starts a demo instance, `make test` runs the test suite.

PYTHON ?= python3
VENV ?= .venv
INSTANCE ?= instance
HOST ?= 127.0.0.1
PORT ?= 8000
# Written into the demo's certificates (AIA, CRL DP, OCSP): where relying parties reach it.
PUBLIC_URL ?= http://$(HOST):$(PORT)
PYTEST_ARGS ?=

BIN := $(VENV)/bin
# Each stamp records that the venv holds the project as pyproject.toml describes it.
RUN_STAMP := $(VENV)/.yinxin-installed
DEV_STAMP := $(VENV)/.yinxin-installed-dev

# Debian packages, each as package:probe. The probe is a command on PATH, or an
# absolute path to a file the package installs; a package whose probe is missing gets
# installed (as root) or named (for anyone else). Add a tool by adding one word.
# What a running node needs: CJK fonts for seal images (AR PL UMing, WenQuanYi Zen Hei).
DEBIAN_RUNTIME ?= \
	fonts-arphic-uming:/usr/share/fonts/truetype/arphic/uming.ttc \
	fonts-wqy-zenhei:/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
# What the tests use on top: openssl (verify, ocsp, ts), pdfsig and pdftoppm, qpdf,
# zbarimg, SoftHSMv2 and OpenSC's pkcs11-tool, and Noto CJK (a CFF-outline font that
# seal images must refuse).
DEBIAN_TOOLS ?= $(DEBIAN_RUNTIME) \
	fonts-noto-cjk:/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc \
	openssl:openssl \
	poppler-utils:pdfsig poppler-utils:pdftoppm \
	qpdf:qpdf \
	zbar-tools:zbarimg \
	softhsm2:softhsm2-util \
	opensc:pkcs11-tool

.PHONY: run test debian-runtime debian-tools clean-instance

run: $(RUN_STAMP) debian-runtime
	@if [ ! -f "$(INSTANCE)/yinxin.toml" ]; then \
		$(BIN)/yinxin init --demo --home "$(INSTANCE)" \
			--public-url "$(PUBLIC_URL)"; \
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

# $(call install-debian,package:probe list,make target to run again)
define install-debian
	@missing=""; \
	for entry in $(1); do \
		package="$${entry%%:*}"; probe="$${entry#*:}"; \
		case " $$missing " in *" $$package "*) continue ;; esac; \
		case "$$probe" in \
			/*) [ -e "$$probe" ] || missing="$$missing $$package" ;; \
			*) command -v "$$probe" >/dev/null 2>&1 || missing="$$missing $$package" ;; \
		esac; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: missing Debian packages:$$missing" >&2; \
		echo "make: install them as root, then run make $(2) again:" >&2; \
		echo "    sudo apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "Installing Debian packages:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing
endef

debian-runtime:
	$(call install-debian,$(DEBIAN_RUNTIME),run)

debian-tools:
	$(call install-debian,$(DEBIAN_TOOLS),test)

clean-instance:
	rm -rf "$(INSTANCE)"
