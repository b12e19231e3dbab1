# The README's two commands: `make demo` and `make test`. Each installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-fast test-slow bench bench-smoke lock clean

install: $(VENV)/.installed

# Every package comes from requirements.lock: exact versions, SHA-256 hashes (pip refuses anything
# else), runtime + the train and dev extras. torch is pinned there as the CPU build 2.13.0+cpu by the
# hash of its local wheel (found through --find-links; see scripts/lock.sh), never a CUDA build.
# The project itself is then installed without dependencies, so nothing outside the lock gets in.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --require-hashes -r requirements.lock
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/flagstream demo

# scripts/install-test-deps.sh puts stunnel4 + openssl in place for the TLS suite; in CI (CI=true)
# it fails the build when it cannot, and the TLS tests fail instead of skipping.
test: install
	scripts/install-test-deps.sh
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m "not slow"
	# The long fault-suite cases, in their own step (exit 5 = none selected is fine).
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m slow || [ $$? -eq 5 ]

# Regenerate requirements.lock after changing dependencies in pyproject.toml (tests/test_lock.py
# fails until it is current). Takes a few minutes: it resolves against PyPI.
lock:
	scripts/lock.sh

bench: install
	HF_HUB_OFFLINE=1 $(PY) bench/run.py

bench-smoke: install
	HF_HUB_OFFLINE=1 $(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache
