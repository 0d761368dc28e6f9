"""The wheels the page installs into Pyodide: the pinned pure-Python wheels and pysync itself.

`python -m server.assets` (re)builds the pysync wheel from the source when the source is newer
than the wheel; the server serves whatever is in web/build/wheels.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server.paths import PYSYNC_SRC, ROOT, WHEELS_DIR


def _newest_source_mtime() -> float:
    # Every file the wheel ships: the modules and the package data (idb_helper.js).
    files = [ROOT / "pyproject.toml", *PYSYNC_SRC.rglob("*.py"), *PYSYNC_SRC.rglob("*.js")]
    return max(f.stat().st_mtime for f in files)


def pysync_wheel(wheels_dir: Path = WHEELS_DIR) -> Path | None:
    found = sorted(wheels_dir.glob("pysync-*.whl"))
    return found[-1] if found else None


def ensure_pysync_wheel(wheels_dir: Path = WHEELS_DIR) -> Path:
    """Build pysync's wheel unless one newer than every source file exists."""
    current = pysync_wheel(wheels_dir)
    if current is not None and current.stat().st_mtime >= _newest_source_mtime():
        return current
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for old in wheels_dir.glob("pysync-*.whl"):
        old.unlink()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels_dir), str(ROOT)],
        check=True,
    )
    built = pysync_wheel(wheels_dir)
    if built is None:
        raise RuntimeError("pip wheel produced no pysync wheel")
    return built


def wheel_manifest(wheels_dir: Path = WHEELS_DIR) -> list[str]:
    """File names of the wheels the page installs: micropip first (it installs the rest)."""
    names = sorted(p.name for p in wheels_dir.glob("*.whl"))
    return sorted(names, key=lambda n: (not n.startswith("micropip-"), n))


if __name__ == "__main__":
    print(ensure_pysync_wheel())
