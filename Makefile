# The two commands a new user runs: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# PLAL with stochastic Sobolev learning (the default `sobolev`) on the pendulum swing-up, with the
# settings that work best there so far (README: "neighbour_restarts"; 41.6% median over 3 seeds
# against J*, 51% of the test instances within 1%), then seed 002's Figs. 6 and 7.
DEMO_OPTIONS := -o mu_scale=curvature -o refresh=32 -o to_max_iter=10 -o epochs=40 \
	-o learning_rate_half_life=3000 -o neighbour_restarts=8 -o 'hidden=[128,128]'

demo: $(STAMP)
	$(VENV)/bin/rlto train pendulum --algo plal --seconds 60 --seed 0 $(DEMO_OPTIONS) \
		--out runs/demo-pendulum-plal
	$(VENV)/bin/rlto eval runs/demo-pendulum-plal --warmstart

lint: $(STAMP)
	$(VENV)/bin/ruff check rlto tests benchmarks

test: lint
	$(PY) -m pytest -q -m "not slow" --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/solver.py

clean:
	rm -rf $(VENV) runs .pytest_cache
