"""No patient data in the logs: every fixture patient goes through the app with logging at DEBUG, and no
name, identifier value, birth date, address, phone or resource id from their data shows up in the output.

Also: every line is one JSON object, and a request's lines carry its request id.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, FIXTURES, load_json
from support.cases import build_request, load_cases
from support.fhir_server import FhirTestServer, fhir_server_request

from service.app import create_app
from service.ops.logging import json_handler

BULK = FIXTURES / "smart_bulk_10_patients"
CORE = FIXTURES / "fhir_r4_core_examples"
SERVICE = "spine-metastasis-review"
# ids that are ordinary words, found in non-patient text (URLs such as cds.example.org)
WORD_IDS = {"example"}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def sensitive_values(resources: list[dict[str, Any]]) -> set[str]:
    """What identifies a patient: names, identifiers, birth dates, addresses, telecom, resource ids."""
    found: set[str] = set()
    for r in resources:
        if isinstance(r.get("id"), str):
            found.add(r["id"])
        for ident in r.get("identifier", []) or []:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                found.add(ident["value"])
        if r.get("resourceType") == "Patient":
            for name in r.get("name", []):
                found.update(_strings({k: v for k, v in name.items() if k in {"given", "family", "text"}}))
            if isinstance(r.get("birthDate"), str):
                found.add(r["birthDate"])
            for address in r.get("address", []):
                found.update(
                    _strings({k: v for k, v in address.items() if k in {"line", "city", "postalCode", "text"}})
                )
            for telecom in r.get("telecom", []):
                if isinstance(telecom.get("value"), str):
                    found.add(telecom["value"])
    return {v for v in found if len(v) >= 3 and v.lower() not in WORD_IDS}


def _occurs(value: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(value)}(?![A-Za-z0-9_-])", text) is not None


@pytest.fixture()
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = json_handler(buffer)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _bulk_patients() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (BULK / "Patient.000.ndjson").read_text().splitlines() if line.strip()]


def test_no_patient_data_in_debug_logs(tmp_path: Path, captured: io.StringIO) -> None:
    all_resources: list[dict[str, Any]] = []
    with FhirTestServer(page_size=20) as ehr:
        for name in ("Patient", "Condition", "Procedure"):
            ehr.load_ndjson(BULK / f"{name}.000.ndjson")
        ehr.set_fault("500", "AllergyIntolerance")  # an error path too
        app = create_app(
            {
                "database_url": f"sqlite:///{tmp_path / 'phi.db'}",
                "log_level": "DEBUG",
                "fhir_server_allowlist": f"127.0.0.1:{ehr.port}",
            },
            clock=lambda: CASE_NOW,
        )
        assert logging.getLogger().isEnabledFor(logging.DEBUG)
        client = app.test_client()
        statuses: list[int] = []
        for _name, case in load_cases():
            all_resources += case["resources"]
            service, body = build_request(case)
            response = client.post(f"/cds-services/{service}", json=body)
            statuses.append(response.status_code)
            cards = response.get_json().get("cards", []) if response.status_code == 200 else []
            if cards:
                feedback = {
                    "card": cards[0]["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-06-01T12:00:00Z",
                }
                assert (
                    client.post(f"/cds-services/{service}/feedback", json={"feedback": [feedback]}).status_code == 200
                )
        for patient in _bulk_patients():  # Synthea patients fetched through the fallback path
            body = fhir_server_request(ehr.base_url, "tok-secret-123456", patient_id=patient["id"])
            statuses.append(client.post(f"/cds-services/{SERVICE}", json=body).status_code)
        for line in (BULK / "Condition.000.ndjson").read_text().splitlines()[:200]:
            all_resources.append(json.loads(line))
        all_resources += _bulk_patients()
        for path in sorted(CORE.glob("*.json")):  # HL7 examples as prefetch: names, identifiers, addresses
            resource = load_json(path)
            all_resources.append(resource)
            if resource["resourceType"] == "Patient":
                body = {
                    "hook": "patient-view",
                    "hookInstance": "c1d2e3f4-0000-4000-8000-000000000001",
                    "context": {"userId": "Practitioner/x", "patientId": resource["id"]},
                    "prefetch": {"patient": resource, "conditions": {"resourceType": "Bundle", "type": "searchset"}},
                }
                statuses.append(client.post(f"/cds-services/{SERVICE}", json=body).status_code)
                bad = {
                    **body,
                    "context": {"patientId": resource["id"], "userId": resource["name"][0].get("family", "x")},
                }
                statuses.append(client.post(f"/cds-services/{SERVICE}", json={**bad, "hook": 7}).status_code)
    assert 200 in statuses and 412 in statuses and 400 in statuses, sorted(set(statuses))
    output = captured.getvalue()
    lines = output.splitlines()
    assert len(lines) > 100, "the app did log at DEBUG"
    assert all(isinstance(json.loads(line), dict) for line in lines), "one JSON object per line"
    secrets = sensitive_values(all_resources) | {"tok-secret-123456"}
    assert len(secrets) > 300
    leaked = sorted(v for v in secrets if _occurs(v, output))
    where = [line for line in lines if leaked and _occurs(leaked[0], line)][:3]
    assert leaked == [], f"patient data in logs: {leaked[:10]}; e.g. {where}"


def test_request_lines_carry_the_request_id(tmp_path: Path, captured: io.StringIO) -> None:
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'rid.db'}"}, clock=lambda: CASE_NOW)
    name, case = load_cases()[0]
    service, body = build_request(case)
    response = app.test_client().post(f"/cds-services/{service}", json=body, headers={"X-Request-Id": "trace-77"})
    assert response.headers["X-Request-Id"] == "trace-77"
    mine = [json.loads(line) for line in captured.getvalue().splitlines() if "trace-77" in line]
    assert {entry["logger"] for entry in mine} >= {"spinecds.access", "spinecds.cds"}, name
    assert all(entry["request_id"] == "trace-77" for entry in mine)
