"""Hostile inputs against the real server (gunicorn, auth required, PostgreSQL): a 4xx, never a 500.

One server for the table: ``SPINECDS_AUTH=required`` with a generated EHR key on file, the console
enabled, a scratch PostgreSQL database, and a scripted FHIR server on the allowlist that answers
JSON nested 100,000 deep. Each row sends one attack and names the status it must get.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support.fhir_server import fhir_server_request
from support.gunicorn import SpinecdsServer
from support.hostile_http import ScriptedServer, json_answer
from support.jwt_tools import Client
from support.scratch_db import scratch_postgres

SERVICE = "spine-metastasis-review"
CALL = f"/cds-services/{SERVICE}"
FEEDBACK = f"{CALL}/feedback"
ISS = "https://ehr.hostile.example"
DEEP = 100_000


@pytest.fixture(scope="module")
def ehr() -> Client:
    return Client.generated(ISS)


@pytest.fixture(scope="module")
def deep_fhir() -> Iterator[ScriptedServer]:
    body = b'{"resourceType": "Bundle", "entry": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    with ScriptedServer({"/fhir/*": json_answer(body)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(
    ehr: Client, deep_fhir: ScriptedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpinecdsServer]:
    tmp = tmp_path_factory.mktemp("hostile-statuses")
    (tmp / "jwks.json").write_text(json.dumps(ehr.jwks()))
    issuers = tmp / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks_file": str(tmp / "jwks.json")}]}))
    with scratch_postgres("spinecds_hostile") as url:
        srv = SpinecdsServer(
            {
                "SPINECDS_AUTH": "required",
                "SPINECDS_ISSUERS_FILE": str(issuers),
                "SPINECDS_DATABASE_URL": url,
                "SPINECDS_FHIR_SERVER_ALLOWLIST": deep_fhir.host,
                "SPINECDS_CONSOLE": "enabled",
            }
        )
        srv.env["SPINECDS_PUBLIC_BASE_URL"] = srv.base_url
        with srv:
            yield srv


def _token(ehr: Client, server: SpinecdsServer, path: str, **claims: Any) -> str:
    return ehr.mint(server.url(path), time.time(), **claims)


def _feedback_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": "not now"},
        "outcomeTimestamp": "2026-06-01T12:00:00Z",
    }
    item.update(overrides)
    return item


def _raw_json(obj: Any) -> bytes:
    # json.dumps writes a lone surrogate as the escape \ud800 (valid JSON text, invalid Unicode)
    return json.dumps(obj).encode()


Attack = Callable[[Client, SpinecdsServer], requests.Response]


def _jwt_claim(**claims: Any) -> Attack:
    def attack(ehr: Client, server: SpinecdsServer) -> requests.Response:
        token = _token(ehr, server, "/cds-services", **claims)
        return requests.get(server.url("/cds-services"), headers={"Authorization": f"Bearer {token}"}, timeout=30)

    return attack


def _feedback(body: bytes) -> Attack:
    def attack(ehr: Client, server: SpinecdsServer) -> requests.Response:
        headers = {"Authorization": f"Bearer {_token(ehr, server, FEEDBACK)}", "Content-Type": "application/json"}
        return requests.post(server.url(FEEDBACK), data=body, headers=headers, timeout=30)

    return attack


def _deep_fhir_server(ehr: Client, server: SpinecdsServer) -> requests.Response:
    fhir = server.env["SPINECDS_FHIR_SERVER_ALLOWLIST"]
    body = fhir_server_request(f"http://{fhir}/fhir", "fhir-token", patient_id="p1")
    headers = {"Authorization": f"Bearer {_token(ehr, server, CALL)}"}
    return requests.post(server.url(CALL), json=body, headers=headers, timeout=60)


def _console(body: bytes, token: bool = True) -> Attack:
    def attack(ehr: Client, server: SpinecdsServer) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {_token(ehr, server, '/console/api/requests')}"
        return requests.post(server.url("/console/api/requests"), data=body, headers=headers, timeout=60)

    return attack


BIG = 10**400
ATTACKS: dict[str, tuple[Attack, int]] = {
    "jwt exp 10^400": (_jwt_claim(exp=BIG), 401),
    "jwt iat 10^400": (_jwt_claim(iat=BIG), 401),
    "jwt nbf 10^400": (_jwt_claim(nbf=BIG), 401),
    "jwt exp -10^400": (_jwt_claim(exp=-BIG), 401),
    "jwt jti lone surrogate": (_jwt_claim(jti="abc\ud800"), 401),
    "jwt jti NUL": (_jwt_claim(jti="abc\x00def"), 401),
    "feedback userComment lone surrogate": (
        _feedback(_raw_json({"feedback": [_feedback_item(overrideReason={"userComment": "x\udc00y"})]})),
        400,
    ),
    "feedback card lone surrogate": (_feedback(_raw_json({"feedback": [_feedback_item(card="\ud83d")]})), 400),
    "feedback suggestion id lone surrogate": (
        _feedback(
            _raw_json(
                {
                    "feedback": [
                        _feedback_item(outcome="accepted", overrideReason=None, acceptedSuggestions=[{"id": "\udfff"}])
                    ]
                }
            )
        ),
        400,
    ),
    "FHIR server JSON nested 100,000 deep": (_deep_fhir_server, 412),
    "console JSON nested 100,000 deep": (_console(b'{"data": ' + b"[" * DEEP + b"]" * DEEP + b"}"), 400),
    "console JSON nested 200 deep": (_console(b'{"data": ' + b"[" * 200 + b"]" * 200 + b"}"), 400),
    "console body over the request limit": (_console(b'{"data": "' + b"x" * 26_000_000 + b'"}'), 413),
    "console without a token when auth is required": (_console(b'{"data": {}}', token=False), 401),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_hostile_input_gets_its_4xx_never_a_500(name: str, ehr: Client, server: SpinecdsServer) -> None:
    attack, status = ATTACKS[name]
    response = attack(ehr, server)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_no_traceback_and_no_unhandled_error_in_the_log(server: SpinecdsServer) -> None:
    """Runs after the table (same module server): what it sent left no trace and no 500 behind."""
    log = server.output()
    assert "unhandled error" not in log
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip()]
    assert all(line.startswith("{") or line.startswith("spinecds:") for line in lines), [
        line for line in lines if not line.startswith("{")
    ][:5]


def test_the_attacks_did_not_reach_the_database_as_rows(server: SpinecdsServer, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, func, select

    from service.db import feedback_items

    engine = create_engine(server.env["SPINECDS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(feedback_items)).scalar_one() == 0
    finally:
        engine.dispose()
