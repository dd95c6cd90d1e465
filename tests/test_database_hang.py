"""A database that hangs or is down never hangs the service (real gunicorn, private PostgreSQL).

Frozen (SIGSTOP: connections stay open, the port accepts, nothing answers): feedback and readiness
answer 503 with Retry-After within the database timeout; liveness and discovery keep answering at
once; service calls still return cards (the issued-card audit is skipped and counted). Down at
start: the server starts anyway, logs JSON lines only, is not ready until the database is up, then
creates its tables and stores feedback.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from conftest import load_json
from support.cases import CASES_DIR, build_request
from support.gunicorn import SpinecdsServer
from support.private_pg import PrivateCluster, private_cluster

FEEDBACK = "/cds-services/{}/feedback"
DB_TIMEOUT = 2  # SPINECDS_DATABASE_TIMEOUT for these servers
FAST = 1.0  # what liveness and discovery must answer within, whatever the database does
BOUNDED = 2 * DB_TIMEOUT + 2  # a request that touches the frozen database: a pre-ping and a reconnect, each bounded


@pytest.fixture()
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as pg:
        yield pg


def _feedback_body() -> dict[str, Any]:
    item = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": "database test"},
        "outcomeTimestamp": "2026-06-01T12:00:00Z",
    }
    return {"feedback": [item]}


def _timed(method: str, url: str, **kwargs: Any) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def _assert_503(response: requests.Response, seconds: float, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text[:200]}"
    assert int(response.headers["Retry-After"]) > 0, what
    assert response.json()["resourceType"] == "OperationOutcome", what
    assert seconds < BOUNDED, f"{what} took {seconds:.1f}s"


def _metric(server: SpinecdsServer, name: str) -> float:
    text = requests.get(server.url("/metrics"), timeout=10).text
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values)


def _only_json_lines(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]
    strays = [line for line in output.splitlines() if line.strip() and not line.startswith(("{", "spinecds:"))]
    assert not strays, strays[:5]


def test_a_frozen_database_gives_fast_503s_while_liveness_discovery_and_cards_go_on(cluster: PrivateCluster) -> None:
    service, call = build_request(load_json(CASES_DIR / "va-22-worked-example-eligible.json"))
    env = {"SPINECDS_DATABASE_URL": cluster.url, "SPINECDS_DATABASE_TIMEOUT": str(DB_TIMEOUT)}
    with SpinecdsServer(env, workers=1, threads=4) as server:
        feedback = server.url(FEEDBACK.format(service))
        assert requests.post(server.url(f"/cds-services/{service}"), json=call, timeout=30).json()["cards"]
        assert requests.post(feedback, json=_feedback_body(), timeout=30).status_code == 200
        missed_before = _metric(server, "spinecds_issued_card_audit_missed_total")

        pids = cluster.freeze()
        try:
            for _ in range(2):  # the second round meets the connections the first one gave up on
                response, seconds = _timed("POST", feedback, json=_feedback_body())
                _assert_503(response, seconds, "feedback")
                response, seconds = _timed("GET", server.url("/health/ready"))
                _assert_503(response, seconds, "readiness")

            def probe(path: str) -> tuple[int, float]:
                response, seconds = _timed("GET", server.url(path))
                return response.status_code, seconds

            def service_call(_: int) -> tuple[int, float, int]:
                response, seconds = _timed("POST", server.url(f"/cds-services/{service}"), json=call)
                cards = len(response.json().get("cards", [])) if response.status_code == 200 else 0
                return response.status_code, seconds, cards

            with ThreadPoolExecutor(8) as pool:
                # feedback keeps the workers' threads busy with the frozen database meanwhile
                blockers = [pool.submit(requests.post, feedback, json=_feedback_body(), timeout=30) for _ in range(3)]
                calls = list(pool.map(service_call, range(4)))
                probes = [probe(p) for p in ("/health/live", "/cds-services", "/health/live", "/cds-services")]
                assert all(b.result().status_code == 503 for b in blockers)
            assert all(status == 200 and cards > 0 for status, _, cards in calls), calls
            assert max(seconds for _, seconds, _ in calls) < BOUNDED, calls
            assert all(status == 200 for status, _ in probes), probes
            assert max(seconds for _, seconds in probes) < FAST + DB_TIMEOUT, probes
            live, seconds = _timed("GET", server.url("/health/live"))
            assert live.status_code == 200 and seconds < FAST, seconds
        finally:
            cluster.thaw(pids)

        deadline = time.monotonic() + 30
        while requests.get(server.url("/health/ready"), timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the database came back"
            time.sleep(0.2)
        assert requests.post(feedback, json=_feedback_body(), timeout=30).status_code == 200
        assert _metric(server, "spinecds_issued_card_audit_missed_total") >= missed_before + 1
        output = server.output()
    _only_json_lines(output)


def test_a_database_down_at_start_is_waited_for_without_a_traceback(cluster: PrivateCluster) -> None:
    cluster.stop()
    env = {"SPINECDS_DATABASE_URL": cluster.url, "SPINECDS_DATABASE_TIMEOUT": str(DB_TIMEOUT)}
    server = SpinecdsServer(env, workers=1, wait_for="/health/live")
    with server:
        for _ in range(3):
            response, seconds = _timed("GET", server.url("/health/ready"))
            _assert_503(response, seconds, "readiness while the database is down")
            time.sleep(0.3)
        assert requests.get(server.url("/cds-services"), timeout=10).status_code == 200
        cluster.start()
        deadline = time.monotonic() + 45  # back-off is capped well below this
        while requests.get(server.url("/health/ready"), timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "never ready after the database came up:\n" + server.output()[-2000:]
            time.sleep(0.5)
        # development database: the tables were created once it was reachable
        response = requests.post(
            server.url(FEEDBACK.format("spine-metastasis-review")), json=_feedback_body(), timeout=30
        )
        assert response.status_code == 200, response.text
        assert server.process is not None and server.process.poll() is None
        output = server.output()
    _only_json_lines(output)
    assert "database" in output and "retry" in output.lower()


def test_with_auth_required_a_frozen_database_leaves_discovery_up_and_calls_fast_503(
    cluster: PrivateCluster, tmp_path: Any
) -> None:
    """Tokens cannot be checked for replay while the database hangs: service calls and feedback answer
    503 at once (never a silent acceptance); discovery, which holds no patient data, keeps answering."""
    import json

    import yaml
    from support.jwt_tools import Client

    ehr = Client.generated("https://ehr.frozen.example")
    (tmp_path / "jwks.json").write_text(json.dumps(ehr.jwks()))
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ehr.iss, "jwks_file": str(tmp_path / "jwks.json")}]}))
    service, call = build_request(load_json(CASES_DIR / "va-22-worked-example-eligible.json"))
    env = {
        "SPINECDS_DATABASE_URL": cluster.url,
        "SPINECDS_DATABASE_TIMEOUT": str(DB_TIMEOUT),
        "SPINECDS_AUTH": "required",
        "SPINECDS_ISSUERS_FILE": str(issuers),
    }
    server = SpinecdsServer(env, workers=1, threads=4)
    server.env["SPINECDS_PUBLIC_BASE_URL"] = server.base_url

    def bearer(path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ehr.mint(server.url(path), time.time())}"}

    with server:
        assert requests.get(server.url("/cds-services"), headers=bearer("/cds-services"), timeout=30).status_code == 200
        pids = cluster.freeze()
        try:
            for _ in range(2):
                response, seconds = _timed("GET", server.url("/cds-services"), headers=bearer("/cds-services"))
                assert response.status_code == 200 and seconds < BOUNDED, (response.status_code, seconds)
                path = f"/cds-services/{service}"
                response, seconds = _timed("POST", server.url(path), json=call, headers=bearer(path))
                _assert_503(response, seconds, "service call (replay store unavailable)")
            unsigned, _ = _timed("GET", server.url("/cds-services"))
            assert unsigned.status_code == 401  # a token is still required, and verified
        finally:
            cluster.thaw(pids)
        output = server.output()
    _only_json_lines(output)
