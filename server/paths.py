"""Where the project's files live, resolved once from this package's location."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
APP_DIR = WEB / "app"
NODE_MODULES = WEB / "node_modules"
PYODIDE_DIR = NODE_MODULES / "pyodide"
WHEELS_DIR = WEB / "build" / "wheels"
PYSYNC_SRC = ROOT / "pysync"
PYPROJECT = ROOT / "pyproject.toml"
