# Lightbox — `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := dcmtk chromium nodejs
MYPY_PATHS := backend worker

.PHONY: run test lint format bench-ingest bench-dimse bench-dimse-floor bench-dicomweb bench-worklist bench-viewer install clean system-packages ohif

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Lightbox needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py serve

# Debian/Ubuntu tools the tests drive (dcmtk peers, headless Chromium); installed when root.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing"; apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "not root: tests needing$$missing will skip"; fi; \
	fi

# The real OHIF viewer (npm registry) for tests/e2e/test_ohif.py, which skips without it.
OHIF_VERSION := 3.13.2
OHIF_CACHE := .cache/ohif
ohif:
	@[ -f $(OHIF_CACHE)/ohif-app-$(OHIF_VERSION).tgz ] || { command -v npm >/dev/null && \
		mkdir -p $(OHIF_CACHE) && cd $(OHIF_CACHE) && \
		timeout 300 npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null; } || \
		echo "OHIF $(OHIF_VERSION) not downloaded: tests/e2e/test_ohif.py will skip"

# pytest-xdist: two test processes, each with its own test database, Redis database, data
# dirs and ports; a module's tests stay in one process (its module-scoped servers start once).
# PYTEST_XDIST="-n 0" runs everything in one process.
PYTEST_XDIST ?= -n 2 --dist loadfile

test: $(VENV)/.installed system-packages ohif
	$(PY) -m ruff check .
	$(PY) -m mypy $(MYPY_PATHS)
	LIGHTBOX_DATA_DIR=$${LIGHTBOX_DATA_DIR:-$$(mktemp -d)} \
	LIGHTBOX_OHIF_DIST=$${LIGHTBOX_OHIF_DIST:-$(CURDIR)/$(OHIF_CACHE)} \
		$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy $(MYPY_PATHS)

format: $(VENV)/.installed
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench-ingest: $(VENV)/.installed
	$(PY) bench/ingest.py

# The DIMSE benchmark compares with Orthanc (Debian package), installed here when root.
bench-dimse: $(VENV)/.installed
	@command -v Orthanc >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq orthanc >/dev/null; } || true
	$(PY) bench/dimse.py

# pynetdicom's own cost: the CT to SCPs that answer every C-STORE and keep nothing.
bench-dimse-floor: $(VENV)/.installed
	$(PY) bench/dimse_floor.py

# Needs PostgreSQL and Redis on 127.0.0.1 (database lightbox_bench_dicomweb, Redis db 13).
bench-dicomweb: $(VENV)/.installed
	$(PY) bench/dicomweb.py

# Needs PostgreSQL and Redis on 127.0.0.1 (database lightbox_bench_worklist, Redis db 13).
bench-worklist: $(VENV)/.installed
	$(PY) bench/worklist.py

# Headless Chromium (Debian package chromium) on loopback and on a 20 Mbit/s link; the
# kernel-shaped link (tc, network namespace) is measured only when run as root.
bench-viewer: $(VENV)/.installed
	$(PY) bench/viewer.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
