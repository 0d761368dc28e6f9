"""Only the browser edge touches `js` / `pyodide` (design.md section 2): idb.py (IndexedDB,
BroadcastChannel), transport.py (fetch) and browser.py (online state, Web Locks, events).
Everything else in pysync runs unchanged on CPython."""

from __future__ import annotations

import ast
from pathlib import Path

import pysync

EDGE = {"idb.py", "transport.py", "browser.py"}
BROWSER_MODULES = {"js", "pyodide", "pyodide_js"}


def browser_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in BROWSER_MODULES]
    return found


def test_only_the_browser_edge_imports_js_or_pyodide() -> None:
    package = Path(pysync.__file__).parent
    offenders = {p.name: browser_imports(p) for p in sorted(package.glob("*.py"))
                 if p.name not in EDGE}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_scan_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pyodide.ffi import create_proxy\n    import js\n")
    assert browser_imports(module) == ["pyodide.ffi", "js"]
