# mannequin: every target installs what it needs first, so any one works on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := libusb-1.0-0 libgomp1

.PHONY: install test test-fast lint bench studies apt clean demo all-videos mc

# Re-install only when setup.py changes; the apt packages are checked on every `make install` and
# every target that depends on it (fast: a dpkg query).  After pip, the Numba cache warm-up
# (mannequin/warmup.py) compiles every kernel signature a run uses into Numba's on-disk cache
# (mannequin/**/__pycache__, git-ignored), so the first `mannequin run` compiles nothing.  Its
# output goes to $(VENV)/warmup.log; if it fails the stamp is not written and the next
# `make install` runs again.
install: $(STAMP)
	@$(MAKE) --no-print-directory apt

$(STAMP): setup.py
	@$(MAKE) --no-print-directory apt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,batch,bench]'
	@echo "warming the Numba cache (compiles the kernels once: about a minute)"
	@$(BIN)/python -m mannequin.warmup -v > $(VENV)/warmup.log 2>&1 || { tail -n 15 $(VENV)/warmup.log; \
	  echo "Numba cache warm-up failed (log: $(VENV)/warmup.log); install not marked done"; exit 1; }
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

# The demo: 9 real views of Middlebury "Cones" (data/samples/middlebury_cones) through the whole
# pipeline (SfM included), then the labels against the structured-light ground truth.
DEMO := data/samples/middlebury_cones
DEMO_WS := data/work/demo
demo: install
	$(MANNEQUIN) run $(DEMO)/images --out $(DEMO_WS) --config $(DEMO)/config.json
	$(MANNEQUIN) eval $(DEMO_WS) --gt-depth $(DEMO)/gt > $(DEMO_WS)/eval.json
	@echo "details: $(DEMO_WS)/eval.json; plots: $(DEMO_WS)/preview/eval_per_frame.png"

# Every test (under 10 minutes on 2 cores); test-fast leaves out those marked slow (under 3 minutes).
# The slow ones are listed in tests/conftest.py (SLOW); setup.cfg sets a per-test timeout.
# Two pytest-xdist workers, one test file each at a time (module fixtures stay in one process); the
# heaviest file (tests/sfm/test_sfm.py, single-threaded COLMAP) then overlaps the rest.
# PYTEST_PAR= runs serially.
PYTEST_PAR ?= -n 2 --dist loadfile
test: install
	$(BIN)/python -m pytest -q $(PYTEST_PAR) tests

test-fast: install
	$(BIN)/python -m pytest -q $(PYTEST_PAR) -m "not slow" tests

# ruff (rule sets in ruff.toml) and mypy (settings in setup.cfg [mypy]); both run, either failing fails.
# The same two checks run as pre-commit hooks (.pre-commit-config.yaml; `$(BIN)/pre-commit install`).
lint: install
	@rc=0; \
	echo "$(BIN)/ruff check mannequin tests benchmarks"; $(BIN)/ruff check mannequin tests benchmarks || rc=1; \
	echo "$(BIN)/mypy"; $(BIN)/mypy || rc=1; \
	exit $$rc

BENCHES := sfm stereo labels tum_oracle pipeline batch mc
bench: install
	@set -e; for b in $(BENCHES); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py; done
	$(BIN)/python benchmarks/summary.py

# Longer diagnostic studies (about 25 minutes together), run by hand; RESULTS.md lists them when present.
STUDIES := sfm_global tum_readout tum_windows
studies: install
	@set -e; for b in $(STUDIES); do echo "== benchmarks/studies/$$b.py"; $(BIN)/python benchmarks/studies/$$b.py; done
	$(BIN)/python benchmarks/summary.py

clean:
	rm -rf $(VENV) build *.egg-info

# --- a Mannequin Challenge / RealEstate10K dataset: make mc CAMERAS=dir-or-files VIDEOS=dir-or-csv OUT=root ----
# Every sequence (camera file) through `mannequin mc` (PRESET=, CONFIG=; MC_ARGS=--refine-poses or --sfm,
# --workers N, --scheduler ADDRESS); ROOT/index.csv, frames.csv, missing_videos.txt. Re-running skips finished ones.
mc: install
	@test -n "$(CAMERAS)" -a -n "$(VIDEOS)" -a -n "$(OUT)" || { echo "usage: make mc CAMERAS=... VIDEOS=... OUT=... [PRESET=] [CONFIG=] [MC_ARGS=]"; exit 2; }
	$(MANNEQUIN) mc $(CAMERAS) --videos "$(VIDEOS)" --out "$(OUT)" --preset $(PRESET) $(if $(CONFIG),--config "$(CONFIG)") $(MC_ARGS)

# --- per video: data/videos/NAME.<ext>  ->  make data/work/NAME/labels ----------------------------
# The stage stamps (WS/stamps/<stage>.json) are the targets in between, so make re-runs only what
# changed; mannequin itself also skips a stage whose stamp matches its options.  A camera file
# data/videos/NAME.txt (MC/RealEstate10K format), when present, replaces SfM.
# The options (PRESET, CONFIG and the CONFIG file's content) are recorded in WORK_DIR/.options/NAME,
# rewritten only when they change (when make reads this file): then every stage rule runs again, mannequin skips the stages whose
# options are unchanged, and each rule touches its stamp so that make sees it up to date.
PRESET ?= default
MANNEQUIN = $(BIN)/mannequin
STAGE_ARGS = --preset $(PRESET) $(if $(CONFIG),--config $(CONFIG)) --quiet
VIDEO_DIR ?= data/videos
WORK_DIR ?= data/work
VIDEOS := $(sort $(filter-out %.txt %.md,$(wildcard $(VIDEO_DIR)/*.*)))
VIDEO_NAMES := $(basename $(notdir $(VIDEOS)))

OPTIONS = --preset $(PRESET) $(if $(CONFIG),--config $(CONFIG) $(shell sha1sum < "$(CONFIG)" 2>/dev/null | cut -c1-16))

# (written when the Makefile is read, for every clip in VIDEO_DIR, so that `make -q`/`-n` see it too)
$(foreach n,$(VIDEO_NAMES),$(shell mkdir -p $(WORK_DIR)/.options && { echo '$(OPTIONS)' | cmp -s - \
  "$(WORK_DIR)/.options/$(n)" || echo '$(OPTIONS)' > "$(WORK_DIR)/.options/$(n)"; }))
$(WORK_DIR)/.options/%:
	@mkdir -p $(@D); echo '$(OPTIONS)' > $@

.SECONDEXPANSION:
$(WORK_DIR)/%/stamps/frames.json: $$(firstword $$(filter-out %.txt %.md,$$(wildcard $(VIDEO_DIR)/$$*.*))) $$(wildcard $(VIDEO_DIR)/$$*.txt) $(WORK_DIR)/.options/% | $(STAMP)
	@test -n "$<" || { echo "no video $(VIDEO_DIR)/$*.<ext>"; exit 1; }
	$(MANNEQUIN) frames "$<" --out $(WORK_DIR)/$* $(STAGE_ARGS) $(if $(wildcard $(VIDEO_DIR)/$*.txt),--poses $(VIDEO_DIR)/$*.txt)
	@touch $@
$(WORK_DIR)/%/stamps/sfm.json: $(WORK_DIR)/%/stamps/frames.json $$(wildcard $(VIDEO_DIR)/$$*.txt)
	$(MANNEQUIN) sfm $(WORK_DIR)/$* $(STAGE_ARGS) $(if $(wildcard $(VIDEO_DIR)/$*.txt),--poses $(VIDEO_DIR)/$*.txt)
	@touch $@
$(WORK_DIR)/%/stamps/stereo.json: $(WORK_DIR)/%/stamps/sfm.json
	$(MANNEQUIN) stereo $(WORK_DIR)/$* $(STAGE_ARGS)
	@touch $@
$(WORK_DIR)/%/stamps/fuse.json: $(WORK_DIR)/%/stamps/stereo.json
	$(MANNEQUIN) fuse $(WORK_DIR)/$* $(STAGE_ARGS)
	@touch $@
$(WORK_DIR)/%/stamps/labels.json: $(WORK_DIR)/%/stamps/fuse.json
	$(MANNEQUIN) labels $(WORK_DIR)/$* $(STAGE_ARGS)
	@touch $@
$(WORK_DIR)/%/labels: $(WORK_DIR)/%/stamps/labels.json
	@touch $@
	@echo "labels: $@  report: $(WORK_DIR)/$*/preview/report.html"

all-videos: $(addsuffix /labels,$(addprefix $(WORK_DIR)/,$(VIDEO_NAMES)))
	@test -n "$(VIDEO_NAMES)" || echo "no videos in $(VIDEO_DIR)/"

.PRECIOUS: $(WORK_DIR)/.options/% $(WORK_DIR)/%/stamps/frames.json $(WORK_DIR)/%/stamps/sfm.json $(WORK_DIR)/%/stamps/stereo.json \
	$(WORK_DIR)/%/stamps/fuse.json $(WORK_DIR)/%/stamps/labels.json
