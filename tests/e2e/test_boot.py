"""The page boots Pyodide and pysync from our own origin only."""

from playwright.sync_api import Page

from tests.e2e.conftest import run_py


def test_page_boots_pyodide_with_pysync_and_httpx(app_page: Page) -> None:
    code = "import sys, httpx, pysync\n[sys.version_info[:2], httpx.__version__]"
    result = run_py(app_page, code)
    assert result == [[3, 14], "0.28.1"]


def test_page_makes_no_request_to_another_origin(app_page: Page) -> None:
    app_page.reload()
    app_page.wait_for_function("window.pysyncTest !== undefined")
    app_page.evaluate("window.pysyncTest.ready")
    assert app_page.__dict__["foreign_requests"] == []
