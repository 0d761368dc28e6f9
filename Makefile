# The two commands a newcomer needs (see README.md):
#   make demo   - DynamoDB Local + the sync server + the web app on http://127.0.0.1:8000
#   make test   - the lint, then the whole test suite (unit, server on DynamoDB Local, the
#                 simulation's fast tier, end to end in Chromium)
# Both install what they need first; re-running them is fast when nothing changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WHEELS := web/build/wheels
PORT ?= 8000

.PHONY: setup demo test bench sim sim-browser reliability lint chromium pysync-wheel build-FeedFunction

setup: $(VENV)/.installed chromium web/node_modules/.installed $(WHEELS)/.installed pysync-wheel

# The venv is rebuilt only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Playwright cannot download browsers here: use Debian's chromium.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Pyodide and DynamoDB Local, pinned by web/package-lock.json.
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Pure-Python wheels for Pyodide (Python 3.14), served by our own server.
$(WHEELS)/.installed: web/pyodide-requirements.txt $(VENV)/.installed
	mkdir -p $(WHEELS)
	$(PY) -m pip download -q --only-binary=:all: --python-version 3.14 --no-deps \
	  -d $(WHEELS) -r web/pyodide-requirements.txt
	touch $@

# pysync's browser wheel (pysync only, no server code), built from the source; rebuilt only
# when the source changed. The server serves it and never builds it (docs/server.md).
pysync-wheel: $(VENV)/.installed
	$(PY) -m server.assets

demo: setup
	$(PY) -m server --dev --port $(PORT) --data-dir data/dynamodb

# The lint runs first: ruff, and mypy --strict over pysync, server, tests and the demo.
test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m tests.bench

# The long tier of the seeded simulation (docs/reliability.md): SEEDS=first-last (1,000 by
# default), one line per seed and the totals, also written to data/sim-<seeds>.json.
# One seed with its history: $(PY) -m tests.sim --seed N
SEEDS ?= 1000-1999
sim: setup
	mkdir -p data
	$(PY) -m tests.sim --seeds $(SEEDS) --json data/sim-$(SEEDS).json

# The browser tier's long run (docs/reliability.md, "Browser tier"): BROWSER_SEEDS=first-last
# (100-129 by default), 3 Chromium contexts; totals also in data/sim-browser-<seeds>.json.
# One seed with its history: $(PY) -m tests.sim --browser --seed N
BROWSER_SEEDS ?= 100-129
sim-browser: setup
	mkdir -p data
	$(PY) -m tests.sim --browser --seeds $(BROWSER_SEEDS) \
	  --json data/sim-browser-$(BROWSER_SEEDS).json

# docs/reliability.md's figures and chart in one go: the simulation's long tier (SEEDS), its
# browser tier (BROWSER_SEEDS), the load benchmark (200 clients for 60 s, then push
# throughput at 1, 4 and 16 clients next to raw TransactWriteItems; LOAD_ARGS adds options),
# then docs/reliability.png from their JSON (tests/bench/report.py). The chart is drawn even when histories failed (it shows them);
# the target then still fails, like `make sim`.
LOAD_ARGS ?=
reliability: setup
	mkdir -p data
	status=0; \
	$(PY) -m tests.sim --seeds $(SEEDS) --json data/sim-$(SEEDS).json || status=$$?; \
	$(PY) -m tests.sim --browser --seeds $(BROWSER_SEEDS) \
	  --json data/sim-browser-$(BROWSER_SEEDS).json || status=$$?; \
	$(PY) -m tests.bench.load_bench --json data/load.json $(LOAD_ARGS) && \
	$(PY) -m tests.bench.report --sim data/sim-$(SEEDS).json --load data/load.json \
	  --out docs/reliability.png && exit $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# `sam build` (deploy/template.yaml, BuildMethod makefile) calls this with ARTIFACTS_DIR: the
# feed Lambda's code is pysync's pure core and server/ as they are; boto3 comes with the
# Lambda runtime. tests/deploy checks that the result handles a real stream event.
build-FeedFunction:
	test -n "$(ARTIFACTS_DIR)"
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -r pysync server "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +
