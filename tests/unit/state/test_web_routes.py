"""The page's routes (state/web_routes.py) on the real app: what is served, what never is, and that it ships as package data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from state.http_api import create_app
from state.memory_store import MemoryStore
from state.query import QueryService
from state.web_routes import ASSETS, PAGE

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(QueryService(MemoryStore())))


def test_the_page_and_its_files_are_served_with_their_types(client: TestClient) -> None:
    """Scenario: GET / and each static file. We expect 200, the right media type, a strict CSP, and the page naming its files."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name, media_type in ASSETS.items():
        assert f"/static/{name}" in page.text
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == media_type, name
        assert response.content == (ROOT / "state" / "web" / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/static/index.html", "/static/web_routes.py", "/static/%2e%2e/http_api.py", "/static/..%2Fhttp_api.py",
    "/static/..%5Chttp_api.py", "/static/app.js%00", "/static/APP.JS", "/static/app.js/x", "/index.html", "/state/web/app.js",
])
def test_nothing_else_is_served(client: TestClient, path: str) -> None:
    """Scenario: other files, encoded dot segments, case games, a NUL. We expect the API's one-line JSON 404 each time."""
    response = client.get(path)
    assert response.status_code == 404, path
    body = response.json()
    assert body["error"] == "NotFound" and "\n" not in body["detail"], body


def test_the_page_ships_as_package_data() -> None:
    """Scenario: a non-editable install. We expect pyproject's package-data for `state` to take every file the routes serve."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["state"]
    for name in (PAGE, *ASSETS):
        assert any(fnmatch.fnmatch(f"web/{name}", pattern) for pattern in patterns), name
        assert (ROOT / "state" / "web" / name).is_file()
