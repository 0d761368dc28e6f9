"""How pysync ships: the published wheel (`pip install 'pysync[server]'`, built by hatchling from
pyproject.toml) carries the server and its `pysync-server` script; the browser's wheel
(server/assets.py) carries pysync only; both carry the one version, `pysync.__version__`; and
the server's start serves the browser wheel the set-up built, never building one itself.

The wheels are built for real into temporary folders, and the script is the one pip
generates from the published wheel.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import pysync
from server.__main__ import WheelMissing, check_browser_wheel
from server.assets import build_browser_wheel, ensure_pysync_wheel, wheel_is_current
from server.paths import PYPROJECT, ROOT


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


@pytest.fixture(scope="module")
def published_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)], check=True, timeout=120)
    (wheel,) = out.glob("pysync-*.whl")
    return wheel


@pytest.fixture(scope="module")
def browser_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_browser_wheel(tmp_path_factory.mktemp("browser"))


def test_the_browser_wheel_holds_pysync_and_no_server_code(browser_wheel: Path) -> None:
    dist_info = f"pysync-{pysync.__version__}.dist-info/"
    assert all(n.startswith(("pysync/", dist_info)) for n in names(browser_wheel))
    assert not any(n.startswith("server/") for n in names(browser_wheel))


def test_the_browser_wheel_requires_the_client_dependencies_only(browser_wheel: Path) -> None:
    requires = metadata(browser_wheel).get_all("Requires-Dist") or []
    assert requires == tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert not any("boto3" in r or "extra" in r for r in requires)


def test_the_browser_wheel_ships_the_same_pysync_files_as_the_published_wheel(
        browser_wheel: Path, published_wheel: Path) -> None:
    def pysync_files(wheel: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(wheel) as z:
            return {n: z.read(n) for n in z.namelist() if n.startswith("pysync/")}

    assert pysync_files(browser_wheel) == pysync_files(published_wheel)


def test_the_browser_wheel_installs_with_pip_and_reports_the_version(
        browser_wheel: Path, tmp_path: Path) -> None:
    # pip checks the wheel's layout and metadata; micropip reads the same files in the page.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(tmp_path), str(browser_wheel)], check=True, timeout=120)
    code = ("import importlib.metadata as m; d = m.distribution('pysync'); "
            "print(d.version, d.locate_file('pysync/__init__.py'))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True, timeout=60)
    assert r.stdout.split() == [pysync.__version__, str(tmp_path / "pysync" / "__init__.py")]


def test_the_version_is_pysync_version_in_both_wheels_and_their_names(
        browser_wheel: Path, published_wheel: Path) -> None:
    version = pysync.__version__
    assert browser_wheel.name == f"pysync-{version}-py3-none-any.whl"
    assert published_wheel.name == f"pysync-{version}-py3-none-any.whl"
    assert metadata(browser_wheel)["Version"] == version
    assert metadata(published_wheel)["Version"] == version
    assert "version" not in tomllib.loads(PYPROJECT.read_text())["project"]  # written once


def test_a_browser_wheel_of_another_version_is_replaced(tmp_path: Path) -> None:
    old = tmp_path / "pysync-0.0.0-py3-none-any.whl"
    old.write_bytes(build_browser_wheel(tmp_path).read_bytes())  # newer than the source
    (tmp_path / f"pysync-{pysync.__version__}-py3-none-any.whl").unlink()
    built = ensure_pysync_wheel(tmp_path)
    assert built.name == f"pysync-{pysync.__version__}-py3-none-any.whl"
    assert sorted(p.name for p in tmp_path.glob("pysync-*")) == [built.name]


def test_the_published_wheel_holds_the_server(published_wheel: Path) -> None:
    shipped = names(published_wheel)
    assert "server/__main__.py" in shipped
    assert "server/app.py" in shipped
    assert "pysync/__init__.py" in shipped


def test_the_published_wheel_declares_the_pysync_server_script(published_wheel: Path) -> None:
    with zipfile.ZipFile(published_wheel) as z:
        entry_points = z.read(f"pysync-{pysync.__version__}.dist-info/entry_points.txt")
    assert "[console_scripts]\npysync-server = server.__main__:script" in entry_points.decode()


def test_the_published_wheel_requires_boto3_only_with_the_server_extra(
        published_wheel: Path) -> None:
    requires = metadata(published_wheel).get_all("Requires-Dist") or []
    boto3 = [r for r in requires if r.startswith("boto3>")]
    assert "boto3>=1.40; extra == 'server'" in boto3
    assert all("extra ==" in r for r in boto3)


def test_pysync_server_has_the_options_of_python_m_server(
        published_wheel: Path, tmp_path: Path) -> None:
    # The script pip writes for the published wheel, running the server code of that wheel.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(tmp_path), str(published_wheel)], check=True, timeout=120)
    env = {**os.environ, "COLUMNS": "100"}
    script = subprocess.run([str(tmp_path / "bin" / "pysync-server"), "--help"],
                            env={**env, "PYTHONPATH": str(tmp_path)},
                            capture_output=True, text=True, check=True, timeout=60).stdout
    module = subprocess.run([sys.executable, "-m", "server", "--help"],
                            env={**env, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert script.startswith("usage: pysync-server ")
    assert module.startswith("usage: python -m server ")
    # The usage line wraps after the program's name; the options section is the same text.
    assert script.partition("\noptions:\n")[2] == module.partition("\noptions:\n")[2] != ""
    assert set(re.findall(r"--[\w-]+", script)) == set(re.findall(r"--[\w-]+", module))


def test_the_server_start_serves_an_old_wheel_as_it_is_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = build_browser_wheel(tmp_path)
    os.utime(wheel, (0, 0))  # older than every source file: a stale wheel
    before = wheel.read_bytes()
    assert not wheel_is_current(wheel)
    assert check_browser_wheel(tmp_path) == wheel
    assert wheel.stat().st_mtime == 0
    assert wheel.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [wheel]
    assert "python -m server.assets" in capsys.readouterr().err


def test_the_server_start_without_a_wheel_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(WheelMissing, match=r"make setup.*python -m server\.assets"):
        check_browser_wheel(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing built
