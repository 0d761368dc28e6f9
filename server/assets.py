"""The wheels the page installs into Pyodide: the pinned pure-Python wheels and pysync itself.

The page does not install them with micropip: `site_packages_bundle` unpacks every wheel
(except micropip's own, which nothing needs at run time any more) into one bundle, written
straight into Pyodide's site-packages by boot.js before Python starts (web/app/boot.js,
docs/server.md "Boot and offline open"). One request instead of ten, and no installer to
import: the wheels are pure Python, pinned, and their dependencies are all here.

`python -m server.assets` (part of `make setup`) (re)builds pysync's browser wheel from the
source when the source is newer than the wheel; the server serves whatever is in
web/build/wheels and never builds it itself (it only checks at start that one is there).

The browser's wheel is not the one published for `pip install 'pysync[server]'` (hatchling
builds that one from pyproject.toml, with the server and its `pysync-server` script): it holds
the `pysync` package only, and its metadata names no server dependency, so the page downloads
no server code and micropip is never asked for boto3. Its name, version, summary, Python
requirement and dependencies are read from pyproject.toml and `pysync.__version__`, so there is
nothing to keep in step by hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import tomllib
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from pysync import __version__
from server.paths import PYPROJECT, PYSYNC_SRC, WHEELS_DIR

# A fixed date for every member, as hatchling does: the same source gives the same bytes.
_ZIP_DATE = (2020, 2, 2, 0, 0, 0)
_TAG = "py3-none-any"


def browser_files() -> list[Path]:
    """Every file the browser's wheel ships: the modules and the package data (idb_helper.js)."""
    return sorted([*PYSYNC_SRC.rglob("*.py"), *PYSYNC_SRC.rglob("*.js")])


def wheel_name() -> str:
    """The browser wheel's file name, from `pysync.__version__`."""
    return f"pysync-{__version__}-{_TAG}.whl"


def pysync_wheel(wheels_dir: Path = WHEELS_DIR) -> Path | None:
    found = sorted(wheels_dir.glob("pysync-*.whl"))
    return found[-1] if found else None


def wheel_is_current(wheel: Path) -> bool:
    """True if `wheel` carries pysync's version and is newer than every file it is built from."""
    newest_source = max(f.stat().st_mtime for f in [PYPROJECT, *browser_files()])
    return wheel.name == wheel_name() and wheel.stat().st_mtime >= newest_source


def _metadata(project: dict[str, Any], version: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project['description']}",
        f"License: {project['license']}",
        f"Requires-Python: {project['requires-python']}",
        # The client's own dependencies only: the extras (server, dev) stay out.
        *(f"Requires-Dist: {dep}" for dep in project["dependencies"]),
    ]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_browser_wheel(wheels_dir: Path = WHEELS_DIR) -> Path:
    """Write the browser's wheel of pysync into `wheels_dir`, replacing any older one."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    dist_info = f"{project['name']}-{__version__}.dist-info"
    members: list[tuple[str, bytes]] = [
        (f"pysync/{f.relative_to(PYSYNC_SRC).as_posix()}", f.read_bytes())
        for f in browser_files()
    ]
    members.append((f"{dist_info}/METADATA", _metadata(project, __version__).encode()))
    members.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: server.assets\nRoot-Is-Purelib: true\n"
        f"Tag: {_TAG}\n").encode()))
    record = [_record_line(name, data) for name, data in members] + [f"{dist_info}/RECORD,,"]
    members.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    wheels_dir.mkdir(parents=True, exist_ok=True)
    for old in wheels_dir.glob("pysync-*.whl"):
        old.unlink()
    target = wheels_dir / wheel_name()
    partial = target.with_suffix(".part")  # never a half-written wheel under the served name
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members:
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data)
    partial.replace(target)
    return target


def ensure_pysync_wheel(wheels_dir: Path = WHEELS_DIR) -> Path:
    """Build pysync's browser wheel unless a current one exists (see wheel_is_current)."""
    current = pysync_wheel(wheels_dir)
    if current is not None and wheel_is_current(current):
        return current
    return build_browser_wheel(wheels_dir)


def wheel_manifest(wheels_dir: Path = WHEELS_DIR) -> list[str]:
    """File names of the wheels the page installs: micropip first (it installs the rest)."""
    names = sorted(p.name for p in wheels_dir.glob("*.whl"))
    return sorted(names, key=lambda n: (not n.startswith("micropip-"), n))


# Wheels the page does not need at run time (the bundle replaces the installer).
_NOT_BUNDLED = ("micropip-",)


def bundled_wheels(wheels_dir: Path = WHEELS_DIR) -> list[Path]:
    """The wheels whose files go into site-packages: every one but the installer's."""
    return [p for p in sorted(wheels_dir.glob("*.whl")) if not p.name.startswith(_NOT_BUNDLED)]


def site_packages_bundle(wheels_dir: Path = WHEELS_DIR) -> bytes:
    """Every file of the bundled wheels, as boot.js writes them into site-packages.

    The format (read by boot.js's `writeBundle`): a little-endian uint32 N, then N bytes of
    UTF-8 JSON, a list of [path, size] (paths relative to site-packages), then the files'
    bytes one after the other in that order. Uncompressed: it is served from our own origin
    and cached, and the browser writes it without decompressing anything.
    """
    wheels = bundled_wheels(wheels_dir)
    # Built once per set of wheels (a rebuilt pysync wheel has a new mtime or size).
    return _bundle(tuple((w, w.stat().st_mtime_ns, w.stat().st_size) for w in wheels))


@lru_cache(maxsize=2)
def _bundle(wheels: tuple[tuple[Path, int, int], ...]) -> bytes:
    index: list[tuple[str, int]] = []
    blobs: list[bytes] = []
    for path, _, _ in wheels:
        with zipfile.ZipFile(path) as wheel:
            for info in wheel.infolist():
                if info.is_dir():
                    continue
                data = wheel.read(info)
                index.append((info.filename, len(data)))
                blobs.append(data)
    header = json.dumps(index, separators=(",", ":")).encode()
    return b"".join([struct.pack("<I", len(header)), header, *blobs])


if __name__ == "__main__":
    print(ensure_pysync_wheel())
