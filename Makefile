# mannequin: every target installs what it needs first, so any one works on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := libusb-1.0-0 libgomp1

.PHONY: install test lint bench apt clean

install: $(STAMP)

# Re-install only when setup.py changes; apt packages are checked every time (fast: dpkg query).
$(STAMP): setup.py
	@$(MAKE) --no-print-directory apt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,batch,bench]'
	touch $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing apt packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing apt packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check mannequin tests benchmarks

bench: install
	@set -e; for b in benchmarks/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
