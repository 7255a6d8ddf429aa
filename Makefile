# agkit: `make course` runs the whole course, `make test` runs the test suite.
# Both create a virtual environment in .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.agkit-installed
PROFILE ?= workshop

.PHONY: setup test test-fast course benchmarks clean student

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,browser]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

course: $(STAMP)
	$(PY) -m agkit.run_course --profile $(PROFILE) --out build/course

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not notebooks and not browser"

benchmarks: $(STAMP)
	$(PY) benchmarks/step_ratio.py

clean:
	rm -rf build runs .pytest_cache

# Student versions of the notebooks (exercise solutions blanked), written to notebooks/student/.
student: $(STAMP)
	$(PY) -m agkit.student
