"""The jti replay store is the database: two instances of the service on one PostgreSQL refuse each
other's replays; with the database unreachable a token is not accepted (503, never a silent pass)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from flask import Flask
from sqlalchemy import create_engine, select
from support.jwt_tools import Client
from support.scratch_db import scratch_postgres

from service.app import create_app
from service.auth.replay import ReplayStore, ReplayStoreUnavailable
from service.db import used_jtis

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
BASE = "https://cds.example.org"
DISCOVERY = f"{BASE}/cds-services"
ISS = "https://ehr.example.org"


@pytest.fixture(scope="module")
def own_database() -> Iterator[str]:
    """A database of this module's own on the real PostgreSQL, dropped afterwards."""
    with scratch_postgres("spinecds_auth") as url:
        yield url


def _app(tmp_path: Path, database_url: str, client: Client, name: str) -> Flask:
    (tmp_path / f"{name}.json").write_text(json.dumps(client.jwks()))
    issuers = tmp_path / f"{name}-issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": client.iss, "jwks_file": f"{name}.json"}]}))
    return create_app(
        {"database_url": database_url, "public_base_url": BASE, "auth": "required", "issuers_file": str(issuers)},
        clock=lambda: NOW,
    )


def _discover(app: Flask, token: str) -> int:
    status: int = app.test_client().get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code
    return status


def test_a_replay_on_another_instance_is_refused(tmp_path: Path, own_database: str) -> None:
    ehr = Client.generated(ISS, "ES384")
    first, second = _app(tmp_path, own_database, ehr, "a"), _app(tmp_path, own_database, ehr, "b")
    token = ehr.mint(DISCOVERY, T)
    assert _discover(first, token) == 200
    assert _discover(second, token) == 401
    assert _discover(second, ehr.mint(DISCOVERY, T)) == 200  # a fresh jti is fine there


def test_jti_rows_expire_with_the_token_and_are_purged(own_database: str) -> None:
    db = create_engine(own_database)
    store = ReplayStore(db)
    old, live = f"old-{uuid.uuid4()}", f"live-{uuid.uuid4()}"
    assert store.first_use(ISS, old, int(T) - 10, T - 1000)  # expired long ago (the purge is not due yet)
    assert not store.first_use(ISS, old, int(T) - 10, T - 1000)
    later = ReplayStore(db)  # a fresh process: its first use purges
    assert later.first_use(ISS, live, int(T) + 300, T)
    with db.connect() as conn:
        jtis = set(conn.scalars(select(used_jtis.c.jti).where(used_jtis.c.jti.in_([old, live]))))
    assert jtis == {live}


def test_unreachable_database_gives_503_not_a_pass(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ehr = Client.generated(ISS, "ES384")
    app = _app(tmp_path, f"sqlite:///{tmp_path / 'ok.db'}", ehr, "down")
    verifier = app.extensions["spinecds.auth"]
    # the same app, its replay store now on a PostgreSQL port where nothing listens
    verifier._replay = ReplayStore(create_engine("postgresql+psycopg2://x:y@127.0.0.1:9/none"))
    caplog.set_level(logging.INFO)
    feedback = "/cds-services/spine-metastasis-review/feedback"
    token = ehr.mint(DISCOVERY + feedback.removeprefix("/cds-services"), T)
    response = app.test_client().post(feedback, json={"feedback": []}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert any("replay store unavailable" in r.getMessage() for r in caplog.records)
    # discovery (no patient data) passes a token verified in every other respect, and says so in the log
    response = app.test_client().get("/cds-services", headers={"Authorization": f"Bearer {ehr.mint(DISCOVERY, T)}"})
    assert response.status_code == 200
    assert any("replay not checked for discovery" in r.getMessage() for r in caplog.records)


def test_replay_store_reports_an_unreachable_database() -> None:
    store = ReplayStore(create_engine("postgresql+psycopg2://x:y@127.0.0.1:9/none"))
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use(ISS, "j", int(T) + 60, T)
