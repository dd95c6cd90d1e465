"""JWK Sets from a real HTTP endpoint on loopback: cached, refreshed on an unknown kid (rate-limited),
and still verifying with cached keys while the endpoint is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from support.fhir_server import FhirTestServer
from support.jwt_tools import Client

from service.app import create_app
from service.auth.jwks import KeySource, parse_jwks

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
BASE = "https://cds.example.org"
DISCOVERY = f"{BASE}/cds-services"
ISS = "https://ehr.example.org"


@pytest.fixture()
def jwks() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


def _app(tmp_path: Path, server: FhirTestServer) -> Flask:
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks_uri": server.url("/jwks.json")}]}))
    return create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'jwks.db'}",
            "public_base_url": BASE,
            "auth": "required",
            "issuers_file": str(issuers),
        },
        clock=lambda: NOW,
    )


def _discover(app: Flask, client: Client, **header: Any) -> int:
    token = client.mint(DISCOVERY, T, header=header or None)
    status: int = app.test_client().get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code
    return status


def _fetches(server: FhirTestServer) -> int:
    return sum(1 for r in server.requests if r.path == "/jwks.json")


def test_keys_are_fetched_once_and_cached(tmp_path: Path, jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", ehr.jwks())
    app = _app(tmp_path, jwks)
    assert [_discover(app, ehr) for _ in range(5)] == [200] * 5
    assert _fetches(jwks) == 1


def test_rotated_key_is_picked_up_on_unknown_kid(tmp_path: Path, jwks: FhirTestServer) -> None:
    old = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", old.jwks())
    app = _app(tmp_path, jwks)
    assert _discover(app, old) == 200
    new = Client.generated(ISS, "RS384")
    jwks.serve_json("/jwks.json", {"keys": [old.public_jwk(), new.public_jwk()]})
    assert _discover(app, new) == 200
    assert _fetches(jwks) == 2


def test_unknown_kids_refresh_at_most_once_per_interval(tmp_path: Path, jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", ehr.jwks())
    app = _app(tmp_path, jwks)
    assert _discover(app, ehr) == 200
    statuses = [_discover(app, ehr, kid=f"random-{i}") for i in range(10)]
    assert statuses == [401] * 10
    assert _fetches(jwks) == 2  # the first load, then one refresh for ten unknown kids


def test_cached_keys_keep_working_while_the_endpoint_fails_or_is_gone(tmp_path: Path, jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", ehr.jwks())
    app = _app(tmp_path, jwks)
    assert _discover(app, ehr) == 200
    jwks.set_fault("500", "/jwks.json")
    assert _discover(app, ehr, kid="rotated-away") == 401  # a refresh is tried, fails, keys are kept
    assert _discover(app, ehr) == 200
    jwks.stop()
    assert _discover(app, ehr) == 200


def test_first_fetch_failing_refuses_then_recovers_after_the_interval(tmp_path: Path, jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", ehr.jwks())
    jwks.set_fault("garbage", "/jwks.json")
    clock = [1000.0]
    source = KeySource.for_url(jwks.url("/jwks.json"), min_refresh=60, monotonic=lambda: clock[0])
    assert source.key(ehr.kid) is None
    jwks.set_fault(None, "/jwks.json")
    assert source.key(ehr.kid) is None  # within the interval: no new fetch
    clock[0] += 61
    assert source.key(ehr.kid) is not None
    assert _fetches(jwks) == 2


def test_stale_keys_are_used_and_refreshed_in_the_background(jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", ehr.jwks())
    clock = [1000.0]
    source = KeySource.for_url(jwks.url("/jwks.json"), ttl=300, min_refresh=60, monotonic=lambda: clock[0])
    assert source.key(ehr.kid) is not None
    jwks.stop()  # the endpoint is down from now on
    clock[0] += 301  # keys are stale
    started = time.monotonic()
    assert source.key(ehr.kid) is not None  # answered from the cache at once
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 10
    while source.fetches < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.fetches == 2  # the background refresh ran (and failed)
    for _ in range(5):
        assert source.key(ehr.kid) is not None
    time.sleep(0.2)
    assert source.fetches == 2  # no refresh storm while the endpoint is down


def test_jwks_parsing_keeps_only_public_signature_keys() -> None:
    ec_client = Client.generated(ISS, "ES384", kid="ec")
    weak = Client.generated(ISS, "RS384", kid="weak", rsa_bits=1024)
    keys = parse_jwks(
        {
            "keys": [
                ec_client.public_jwk(),
                weak.public_jwk(),
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                ec_client.public_jwk(kid="enc", use="enc"),
                ec_client.public_jwk(kid="dup"),
                ec_client.public_jwk(kid="dup"),
                ec_client.public_jwk(kid="nokid") | {"kid": None},
                "not a key",
            ]
        }
    )
    assert set(keys) == {"ec"}
    assert keys["ec"].fits("ES384") and not keys["ec"].fits("ES256") and not keys["ec"].fits("RS384")


def test_oversized_jwks_is_refused(jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/jwks.json", {"keys": [ehr.public_jwk()], "padding": "x" * 300_000})
    source = KeySource.for_url(jwks.url("/jwks.json"))
    assert source.key(ehr.kid) is None


def test_jwks_redirect_is_not_followed(jwks: FhirTestServer) -> None:
    ehr = Client.generated(ISS, "ES384")
    jwks.serve_json("/elsewhere.json", ehr.jwks())
    jwks.serve_json("/jwks.json", {"keys": []})
    jwks.redirect_to = jwks.url("/elsewhere.json")
    jwks.set_fault("redirect", "/jwks.json")
    source = KeySource.for_url(jwks.url("/jwks.json"))
    assert source.key(ehr.kid) is None
    assert not any(r.path == "/elsewhere.json" for r in jwks.requests)


def test_jwks_file_is_reread_on_unknown_kid(tmp_path: Path) -> None:
    first, second = Client.generated(ISS, "ES384"), Client.generated(ISS, "ES384")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(first.jwks()))
    clock = [0.0]
    source = KeySource.for_file(path, min_refresh=60, monotonic=lambda: clock[0])
    assert source.key(first.kid) is not None
    path.write_text(json.dumps({"keys": [first.public_jwk(), second.public_jwk()]}))
    clock[0] += 61
    assert source.key(second.kid) is not None
