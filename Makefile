# agkit: `make course` runs the whole course, `make test` runs the gates (`make lint`) and the
# test suite; `make format` fixes what ruff can fix by itself.
# Both create a virtual environment in .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.agkit-installed
PROFILE ?= workshop
# Defined before any rule names it: make expands a rule's prerequisites where it reads them.
SLIDES_VENDOR := tools/slides/node_modules/.installed

.PHONY: setup lint format test test-fast course slides site cache course-time benchmarks stamp student clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,browser]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# The gates CI runs before the tests: ruff's lint and format checks over the whole tree
# (notebooks included) and mypy over the method modules (pyproject.toml configures all three).
RUFF := $(VENV)/bin/ruff
FIX_HINT := run 'make format' (ruff check --fix . && ruff format .), then fix what remains
lint: $(STAMP)
	@$(RUFF) check . || { echo "ruff check failed: $(FIX_HINT)."; exit 1; }
	@$(RUFF) format --check . || { echo "ruff format --check failed: $(FIX_HINT)."; exit 1; }
	@$(VENV)/bin/mypy || { echo "mypy failed: fix the types it names."; exit 1; }

format: $(STAMP)
	$(RUFF) check --fix --exit-zero .
	$(RUFF) format .
	@$(RUFF) check . || { echo "ruff cannot fix the problems above: fix them by hand."; exit 1; }

test: lint $(SLIDES_VENDOR)
	$(PY) -m pytest

# AHEAD=0: no background trainer (agkit/course/train_ahead.py), so that every notebook takes
# the time a student meets (benchmarks/notebook_times.py --from-log needs that).
AHEAD ?= 1
course: $(STAMP)
	$(PY) -m agkit.course.run_all --profile $(PROFILE) --out build/course $(if $(filter 0,$(AHEAD)),--no-ahead)

# A short deck per notebook from the executed copies of `make course` (reveal.js). The decks
# work without network: reveal.js and the scripts it needs come from npm (pinned in
# tools/slides/package-lock.json) and are copied next to them, into build/slides/vendor/.
$(SLIDES_VENDOR): tools/slides/package-lock.json
	cd tools/slides && npm ci --no-audit --no-fund --loglevel=error
	touch $(SLIDES_VENDOR)

slides: $(STAMP) $(SLIDES_VENDOR)
	test -d build/course || $(MAKE) course PROFILE=$(PROFILE)
	$(PY) tools/make_slides.py build/course build/slides

# The course as a website (Sphinx + myst-nb) from the executed copies of `make course`, with
# README, docs/method.md and docs/architecture.md; open build/site/index.html. The exercises
# show their blanks and the answers stay out; `make site ANSWERS=1` is the instructors' site,
# with the solutions and the answer key. The site's packages are the `site` extra (in `dev`).
SITE_STAMP := $(VENV)/.agkit-site-installed
$(SITE_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[site]"
	touch $(SITE_STAMP)

site: $(SITE_STAMP)
	test -d build/course || $(MAKE) course PROFILE=$(PROFILE)
	$(PY) tools/make_site.py build/course build/site $(if $(filter 1,$(ANSWERS)),--answers)

# Train every run of a profile (those not in runs/ yet) and pack them into one archive that
# students unpack with agkit.experiments.use_cache("build/agkit-runs-workshop.tar.gz").
cache: $(STAMP)
	$(PY) -m agkit.course.run_all --profile $(PROFILE) --runs runs --pack build/agkit-runs-$(PROFILE).tar.gz

# Time of each notebook's training relative to a plain PyTorch loop (see the script).
course-time: $(STAMP)
	$(PY) benchmarks/course_time.py --profile $(PROFILE)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not notebooks and not browser"

benchmarks: $(STAMP)
	$(PY) benchmarks/step_ratio.py

# Write agkit.course.colab's REPOSITORY and REF into every notebook's Colab badge and install cell
# and README's badges (after changing them for a fork or a release).
stamp: $(STAMP)
	$(PY) -m agkit.course.stamp stamp .

clean:
	rm -rf build runs .pytest_cache

# Student versions of the notebooks (exercise solutions blanked), written to notebooks/student/.
student: $(STAMP)
	$(PY) -m agkit.course.student
