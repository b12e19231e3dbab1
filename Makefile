# The README's two commands: `make demo` and `make test`. Each installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-fast test-slow bench bench-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	# torch first, pinned: the CPU build on this disk/registry, never a CUDA wheel.
	$(PY) -m pip install $(PIP_FLAGS) "torch==2.13.0"
	$(PY) -m pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/flagstream demo

test: install
	@if [ -x scripts/install-test-deps.sh ]; then scripts/install-test-deps.sh; fi
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m "not slow"
	# The long fault-suite cases, in their own step (exit 5 = none selected is fine).
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m slow || [ $$? -eq 5 ]

bench: install
	HF_HUB_OFFLINE=1 $(PY) bench/run.py

bench-smoke: install
	HF_HUB_OFFLINE=1 $(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .pytest_cache
