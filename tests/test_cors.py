"""CORS for browser-based CDS clients (the CDS Hooks sandbox calls from another origin)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CASE_NOW

from service.app import create_app

SANDBOX = "https://sandbox.cds-hooks.org"
PATHS = ["/cds-services", "/cds-services/spine-metastasis-review", "/cds-services/spine-metastasis-review/feedback"]


@pytest.mark.parametrize("path", PATHS)
def test_preflight_allows_the_sandbox(client: Any, path: str) -> None:
    r = client.options(
        path,
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX)
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed


def test_actual_response_carries_cors_headers(client: Any) -> None:
    r = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX)


def test_error_responses_carry_cors_headers(client: Any) -> None:
    """A browser must be able to read our OperationOutcome, not a CORS failure."""
    r = client.post("/cds-services/no-such-service", json={}, headers={"Origin": SANDBOX})
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX)


def test_configured_origins_only(tmp_path: Any) -> None:
    app = create_app(
        {"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "cors_origins": SANDBOX}, clock=lambda: CASE_NOW
    )
    with app.test_client() as c:
        ok = c.get("/cds-services", headers={"Origin": SANDBOX})
        assert ok.headers["Access-Control-Allow-Origin"] == SANDBOX
        assert "Origin" in ok.headers.get("Vary", "")
        other = c.get("/cds-services", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200
        assert "Access-Control-Allow-Origin" not in other.headers
