# Fresh-machine entry points (see README.md). Everything installs into .venv in the repo root.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-long demo-grounding test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first, pinned: ms-swift's Qwen-VL path needs torchvision
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plates demo

# the demo that also reads the plate characters (about 17 minutes on 2 cores)
demo-long: $(STAMP)
	$(VENV)/bin/plates demo --long --workdir plates-demo-long

# the demo that also locates the plate (its box; about 12 minutes on 2 cores)
demo-grounding: $(STAMP)
	$(VENV)/bin/plates demo --grounding --workdir plates-demo-grounding

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m 'not slow'

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
