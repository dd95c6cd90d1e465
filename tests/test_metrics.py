"""/metrics moves with real calls: latency per service and hook, cards per rule and indicator, prefetch
fallbacks, auth failures, feedback; and aggregates across gunicorn workers (multiprocess mode)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CASE_NOW, load_json
from prometheus_client.parser import text_string_to_metric_families
from support.cases import CASES_DIR, build_request, fired_rules
from support.fhir_server import FhirTestServer
from support.gunicorn import SpinecdsServer

from service.app import create_app

CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
SERVICE = "spine-metastasis-review"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def total(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in scrape.items() if n == name and want <= set(lbl))


@pytest.fixture()
def ehr() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        server.add_many(CASE["resources"])
        yield server


@pytest.fixture()
def metrics_app(tmp_path: Path, ehr: FhirTestServer) -> Any:
    return create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'm.db'}",
            "fhir_server_allowlist": f"127.0.0.1:{ehr.port}",
            "fhir_read_timeout": 5.0,
        },
        clock=lambda: CASE_NOW,
    )


def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def test_service_call_moves_latency_and_card_counters(metrics_app: Any) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    service, body = build_request(CASE)
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    after = scrape(client)
    latency = ("spinecds_cds_service_duration_seconds_count", {"service": service, "hook": "patient-view"})
    assert value(after, latency[0], **latency[1]) - value(before, latency[0], **latency[1]) == 1
    for rule in fired_rules(cards):
        indicators = {c["indicator"] for c in cards if rule in c["extension"]["org.spinecds.trace"]["rules"]}
        moved = sum(
            value(after, "spinecds_cards_total", rule=rule, indicator=i)
            - value(before, "spinecds_cards_total", rule=rule, indicator=i)
            for i in indicators
        )
        assert moved == sum(rule in c["extension"]["org.spinecds.trace"]["rules"] for c in cards), rule
    route = {"method": "POST", "route": "/cds-services/<service_id>", "status": "200"}
    assert (
        value(after, "spinecds_http_requests_total", **route) - value(before, "spinecds_http_requests_total", **route)
        == 1
    )


def test_prefetch_fallback_fetches_are_counted_and_timed(metrics_app: Any, ehr: FhirTestServer) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    patient = next(r for r in CASE["resources"] if r["resourceType"] == "Patient")
    body = {
        "hook": "patient-view",
        "hookInstance": "0b8a5a49-5d0e-4a53-9d43-3c8b2f0a9f11",
        "fhirServer": ehr.base_url,
        "context": {"userId": "Practitioner/x", "patientId": patient["id"]},
        "prefetch": {"patient": patient},
    }
    ehr.set_fault("500", "AllergyIntolerance")
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    assert response.status_code == 200, response.get_json()
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("spinecds_prefetch_fallback_fetches_total", key="conditions", result="ok") == 1
    assert moved("spinecds_prefetch_fallback_fetches_total", key="allergies", result="failed") == 1
    assert moved("spinecds_prefetch_fallback_fetches_total", key="patient", result="ok") == 0, "sent, not fetched"
    assert moved("spinecds_prefetch_fallback_fetch_duration_seconds_count", key="conditions") == 1
    assert moved("spinecds_prefetch_fallback_fetch_duration_seconds_sum", key="conditions") > 0


def test_412_is_counted_without_latency(metrics_app: Any) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    body = {
        "hook": "patient-view",
        "hookInstance": "1b8a5a49-5d0e-4a53-9d43-3c8b2f0a9f12",
        "context": {"userId": "Practitioner/x", "patientId": "nobody"},
        "prefetch": {},
    }
    assert client.post(f"/cds-services/{SERVICE}", json=body).status_code == 412
    after = scrape(client)
    key = {"service": SERVICE, "hook": "patient-view", "result": "412"}
    assert (
        value(after, "spinecds_cds_service_calls_total", **key)
        - value(before, "spinecds_cds_service_calls_total", **key)
        == 1
    )


def test_feedback_is_counted_by_outcome(metrics_app: Any) -> None:
    client = metrics_app.test_client()
    before = scrape(client)
    items = [
        {
            "card": "c1",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "s"}],
            "outcomeTimestamp": "2026-06-01T12:00:00Z",
        },
        {"card": "c2", "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"},
        {"card": "c3", "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"},
    ]
    assert client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": items}).status_code == 200
    assert client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [{"card": "x"}]}).status_code == 400
    after = scrape(client)
    for outcome, n in (("accepted", 1), ("overridden", 2)):
        labels = {"service": SERVICE, "outcome": outcome}
        assert (
            value(after, "spinecds_feedback_items_total", **labels)
            - value(before, "spinecds_feedback_items_total", **labels)
            == n
        )


def test_auth_failures_are_counted_by_reason(tmp_path: Path) -> None:
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    jwks_uri: https://ehr.example.org/jwks\n")
    app = create_app(
        {"database_url": f"sqlite:///{tmp_path / 'a.db'}", "auth": "required", "issuers_file": str(issuers)}
    )
    client = app.test_client()
    before = scrape(client)
    assert client.post(f"/cds-services/{SERVICE}", json={}).status_code == 401
    assert (
        client.post(f"/cds-services/{SERVICE}", json={}, headers={"Authorization": "Bearer not-a-jwt"}).status_code
        == 401
    )
    after = scrape(client)
    assert total(after, "spinecds_auth_failures_total") - total(before, "spinecds_auth_failures_total") == 2
    reasons = {dict(lbl)["reason"] for (n, lbl), v in after.items() if n == "spinecds_auth_failures_total" and v}
    assert all("not-a-jwt" not in r for r in reasons), "reasons are fixed codes, not token text"


def test_metrics_aggregate_across_gunicorn_workers() -> None:
    calls = 40
    with SpinecdsServer(workers=2, threads=2) as srv:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: requests.get(srv.url("/rules/VA-22"), timeout=30).status_code, range(calls))
            )
        assert statuses == [200] * calls
        scrapes = [samples(requests.get(srv.url("/metrics"), timeout=10).text) for _ in range(6)]
    route = {"method": "GET", "route": "/rules/<rule_id>", "status": "200"}
    # whichever worker answers the scrape reports the sum over both workers
    assert {value(s, "spinecds_http_requests_total", **route) for s in scrapes} == {calls}
