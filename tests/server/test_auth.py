"""--api-auth: every route answers 401 without valid credentials; --listen refuses to start without it."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from typer.testing import CliRunner

from loradeck.errors import InvalidRequest
from loradeck.server import create_app, parse_credentials
from tests.server.helpers import running_server

CREDS = {"alice": "s3cret", "bob": "pw:with:colons"}


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    from loradeck.services.studio import Studio

    studio = Studio(home=tmp_path_factory.mktemp("authhome"))
    app = create_app(studio, auth=CREDS)
    with running_server(app) as url:
        yield app, url


def _requests(app):
    """(method, path) for every route the app has, path parameters filled with a dummy value: the API routes as the
    OpenAPI schema lists them (FastAPI nests included routers, so ``app.routes`` alone does not show them) plus the
    plain routes (docs, schema)."""
    pairs = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    for route in app.routes:
        if getattr(route, "path", None):
            pairs |= {(m, route.path) for m in (getattr(route, "methods", None) or {"GET"})}
    return sorted((m, re.sub(r"\{[^}]+\}", "x", path)) for m, path in pairs if m != "HEAD")


def test_every_route_requires_credentials(locked):
    app, url = locked
    requests = _requests(app)
    assert len(requests) >= 25
    assert ("POST", "/sdapi/v1/refresh-loras") in requests and ("GET", "/sdapi/v1/loras") in requests
    wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
    with httpx.Client(base_url=url) as http:
        for method, path in requests + [("GET", "/no/such/route"), ("GET", "/")]:
            for headers in ({}, {"Authorization": wrong}, {"Authorization": "Bearer s3cret"}):
                response = http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"].startswith("Basic")


def test_valid_credentials_pass(locked):
    _app, url = locked
    for user, password in CREDS.items():
        response = httpx.get(f"{url}/sdapi/v1/samplers", auth=(user, password))
        assert response.status_code == 200 and response.json()
    assert httpx.get(f"{url}/sdapi/v1/samplers", auth=("alice", "pw:with:colons")).status_code == 401


def test_parse_credentials():
    assert parse_credentials("a:b, c:d:e") == {"a": "b", "c": "d:e"}
    for bad in ("", "nopassword", "user:", ":pass"):
        with pytest.raises(InvalidRequest):
            parse_credentials(bad)


def test_listen_without_auth_refuses_to_start():
    from loradeck.cli import app

    result = CliRunner().invoke(app, ["serve", "--listen"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidRequest) and "--api-auth" in str(result.exception)
