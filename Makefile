# mono_depth_ros developer entry points. `make test` works on a fresh machine:
# it creates .venv with everything pinned in constraints.txt, then runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# The editable install goes through PEP 660 (--use-pep517), whose finder maps the folder training/ to
# mono_depth_ros_training (setup.py's package_dir); pip's legacy `setup.py develop` path, taken when
# the wheel package is present, would not. Changing setup.py re-runs this recipe.
$(STAMP): requirements.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest test -q -rs --timeout=600

# A developer's quick loop: everything except the ros and slow tiers (test/conftest.py), on two
# processes with one thread each (OpenMP threads of two processes would wait for each other).
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest test -q -rs --timeout=600 -m "not ros and not slow" -n 2

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) benchmarks/bench_node.py

clean:
	rm -rf $(VENV) build install log *.egg-info
