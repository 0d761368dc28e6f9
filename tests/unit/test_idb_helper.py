"""The IndexedDB helper's JavaScript (pysync/idb_helper.js): a real file, checked here by node
and shipped in the wheel the page installs. tests/e2e runs it in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from pysync import idb
from server.assets import ensure_pysync_wheel

NODE = shutil.which("node")
# What idb.py calls on the helper's value.
EXPORTS = ["Tx", "channel", "checkedWrite", "deleteDatabase", "open", "setDone"]


@pytest.fixture(scope="module")
def node() -> str:
    assert NODE is not None, "node is needed to check pysync/idb_helper.js (make setup)"
    return NODE


def test_the_helper_is_valid_javascript(node: str, tmp_path: Path) -> None:
    source = tmp_path / "idb_helper.js"
    source.write_text(idb.helper_source(), encoding="utf-8")
    r = subprocess.run([node, "--check", str(source)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def test_the_helper_evaluates_to_the_functions_idb_calls(node: str) -> None:
    # Evaluated as run_js does (the script's completion value), in strict mode's own checks;
    # nothing browser-only runs until a function is called.
    script = ("const vm = require('vm'); const src = require('fs').readFileSync(0, 'utf8');"
              "const h = vm.runInNewContext(src, {});"
              "console.log(JSON.stringify(Object.keys(h).sort().map("
              "k => [k, typeof h[k]])));")
    r = subprocess.run([node, "-e", script], input=idb.helper_source(), capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [[name, "function"] for name in EXPORTS]


def test_the_wheel_ships_the_helper() -> None:
    with zipfile.ZipFile(ensure_pysync_wheel()) as wheel:
        shipped = wheel.read(f"pysync/{idb.HELPER_FILE}").decode("utf-8")
    assert shipped == idb.helper_source()
