"""JWKS under attack, through the real server (gunicorn) and a scripted JWKS endpoint on loopback.

* Unauthenticated tokens with random ``kid``s must not use up the refresh that a genuine key
  rotation needs: the rotated key is accepted within seconds, not after a minute's lockout.
* A JWKS endpoint that drips its body one byte a second holds a request only until the fetch's
  overall deadline, not for the sum of per-read timeouts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support.gunicorn import SpinecdsServer
from support.hostile_http import ScriptedServer, drip, json_answer
from support.jwt_tools import Client

ISS = "https://ehr.rotating.example"
FETCH_DEADLINE_SECONDS = 5.0  # service.auth.jwks.FETCH_DEADLINE_SECONDS (docs/security.md)


def _serve(tmp: Path, jwks_url: str) -> SpinecdsServer:
    issuers = tmp / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks_uri": jwks_url}]}))
    server = SpinecdsServer({"SPINECDS_AUTH": "required", "SPINECDS_ISSUERS_FILE": str(issuers)}, workers=1)
    server.env["SPINECDS_PUBLIC_BASE_URL"] = server.base_url
    return server


def _discover(server: SpinecdsServer, client: Client, timeout: float = 30) -> int:
    token = client.mint(server.url("/cds-services"), time.time())
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(server.url("/cds-services"), headers=headers, timeout=timeout).status_code


@pytest.fixture()
def keys() -> dict[str, Any]:
    return {"keys": []}


@pytest.fixture()
def jwks_endpoint(keys: dict[str, Any]) -> Iterator[ScriptedServer]:
    with ScriptedServer({"/jwks.json": json_answer(lambda: json.dumps(keys).encode(), "application/json")}) as srv:
        yield srv


def test_random_kids_do_not_lock_out_a_rotated_key(
    tmp_path: Path, keys: dict[str, Any], jwks_endpoint: ScriptedServer
) -> None:
    old = Client.generated(ISS)
    keys["keys"] = [old.public_jwk()]
    with _serve(tmp_path, jwks_endpoint.url("/jwks.json")) as server:
        assert _discover(server, old) == 200
        for _ in range(6):  # an attacker: well-formed tokens naming kids nobody published
            assert _discover(server, Client.generated(ISS, kid=str(uuid.uuid4()))) == 401
        new = Client.generated(ISS)
        keys["keys"] = [old.public_jwk(), new.public_jwk()]  # the EHR rotates
        started = time.monotonic()
        statuses = []
        while time.monotonic() - started < 10:
            statuses.append(_discover(server, new))
            if statuses[-1] == 200:
                break
            time.sleep(0.25)
        waited = time.monotonic() - started
        assert statuses[-1] == 200, f"rotated key still refused after {waited:.1f}s: {statuses}"
        assert waited < 5, waited
        fetches = sum(1 for hit in jwks_endpoint.hits if hit.startswith("/jwks.json"))
        assert fetches <= 5, f"{fetches} JWKS fetches for 6 random kids and one rotation"
        # a successful verification resets the back-off: the next rotation is picked up at once
        newer = Client.generated(ISS)
        keys["keys"] = [new.public_jwk(), newer.public_jwk()]
        assert _discover(server, newer) == 200


def test_a_dripping_jwks_endpoint_holds_a_request_only_until_the_fetch_deadline(tmp_path: Path) -> None:
    ehr = Client.generated(ISS)
    body = json.dumps(ehr.jwks()).encode()  # ~300 bytes at one a second: five minutes
    with (
        ScriptedServer({"/jwks.json": drip(body, 1.0)}) as endpoint,
        _serve(tmp_path, endpoint.url("/jwks.json")) as srv,
    ):
        started = time.monotonic()
        status = _discover(srv, ehr, timeout=FETCH_DEADLINE_SECONDS + 20)
        seconds = time.monotonic() - started
        assert status == 401
        assert seconds < FETCH_DEADLINE_SECONDS + 3, seconds
        live = requests.get(srv.url("/health/live"), timeout=5)
        assert live.status_code == 200
