"""Every CDS Hooks request in ../shared/fixtures goes through the app with the spec's status,
and every response passes the response checker (ported invariants cds-r-*, cds-resp-*, cds-fb-*)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, load_json
from support.cds_checker import check_cards_response, check_discovery, check_operation_outcome, errors_only

from service.cds.request_builder import SERVICE_FOR_HOOK

AHRQ = FIXTURES / "ahrq_cql_services"
SPEC = FIXTURES / "cds_hooks_examples"

# file -> (expected status, why)
EXPECTED: dict[str, tuple[int, str]] = {
    "patient_view_requests/Adolfo777_Braun514.json": (
        412,
        "prefetch keys are AHRQ's, fhirServer example.org unreachable",
    ),
    "patient_view_requests/Adrian111_Wunsch504.json": (412, "as above"),
    "patient_view_requests/Cher186_Crooks415.json": (412, "as above"),
    "patient_view_requests/Debora709_Mayer370.json": (412, "as above"),
    "patient_view_requests/unhealthy_patient.json": (412, "as above"),
    "edge_case_requests/active_person_invocation.json": (412, "our keys absent, fhirServer test:9080 unreachable"),
    "edge_case_requests/lazy_person_invocation.json": (412, "as above"),
    "edge_case_requests/missing_prefetch_keys_invocation.json": (412, "as above"),
    "edge_case_requests/null_prefetch_values_invocation.json": (412, "AHRQ keys null; ours absent and unfetchable"),
    "hl7_spec/hook-request-patient-view-with-prefetch.json": (412, "only patientToGreet sent; server unreachable"),
    "hl7_spec/hook-request-paginated-prefetch.json": (
        412,
        "valid order-sign; patient and conditions absent and ehr.example.org unreachable",
    ),
    "hl7_spec/hook-request-with-extension.json": (400, "patient-view without context.patientId"),
    "cds_hooks_org_examples/opioid-cdc-request-order-sign.json": (400, "order-sign without context.draftOrders"),
    "cds_hooks_org_examples/radiology-appropriateness-request-order-select.json": (
        412,
        "no prefetch, server unreachable",
    ),
}


def _path(rel: str) -> Path:
    folder, name = rel.split("/", 1)
    base = AHRQ if folder in {"patient_view_requests", "edge_case_requests"} else SPEC
    return base / folder / name


def _check_response(status: int, body: Any) -> None:
    if status == 200:
        assert errors_only(check_cards_response(body, require_uuids=True)) == []
    else:
        assert errors_only(check_operation_outcome(body)) == []


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_fixture_request_status(client: Any, rel: str) -> None:
    body = load_json(_path(rel))
    service = SERVICE_FOR_HOOK[body["hook"]]
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == EXPECTED[rel][0], response.get_json()
    _check_response(response.status_code, response.get_json())


def test_every_fixture_request_is_listed() -> None:
    found = {
        f"{p.parent.name}/{p.name}"
        for p in (AHRQ / "patient_view_requests").glob("*.json")
        if p.name != "feedback.json"
    }
    found |= {f"{p.parent.name}/{p.name}" for p in (AHRQ / "edge_case_requests").glob("*.json")}
    found |= {f"{p.parent.name}/{p.name}" for p in SPEC.glob("*/*request*.json")}
    assert found == set(EXPECTED)


REKEY = {
    "Patient": "patient",
    "Condition": "conditions",
    "MedicationRequest": "meds",
    "MedicationStatement": "medstatements",
    "Procedure": "procedures",
}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (AHRQ / "patient_view_requests").glob("*.json") if p.name != "feedback.json")
)
def test_ahrq_requests_rekeyed_to_our_templates(client: Any, name: str) -> None:
    """Derived from the AHRQ fixtures: the same data under our prefetch keys, no fhirServer."""
    body = load_json(AHRQ / "patient_view_requests" / name)
    body["prefetch"] = {REKEY[k]: v for k, v in body["prefetch"].items() if k in REKEY}
    body.pop("fhirServer")
    patient_id = body["prefetch"]["patient"]["id"]
    if body["context"]["patientId"] != patient_id:
        # Some AHRQ requests name context.patientId "2-1" while their prefetch is Synthea patient <uuid>:
        # another patient's data never count (docs/security.md, patient mixing), so as sent: 400.
        mixed = client.post("/cds-services/spine-metastasis-review", json=body)
        assert mixed.status_code == 400
        _check_response(400, mixed.get_json())
        body["context"]["patientId"] = patient_id  # the request the EHR meant: the data's own patient
    response = client.post("/cds-services/spine-metastasis-review", json=body)
    assert response.status_code == 200
    _check_response(200, response.get_json())
    # Synthea patients without spinal disease get no routine spine advice
    rules = {r for c in response.get_json()["cards"] for r in c["extension"]["org.spinecds.trace"]["rules"]}
    assert not rules & {"VA-22", "VA-23", "NEU-01", "RT-01"}


def test_feedback_fixtures_are_stored(client: Any) -> None:
    for path in [
        AHRQ / "patient_view_requests" / "feedback.json",
        *sorted((SPEC / "hl7_spec").glob("feedback-*.json")),
    ]:
        response = client.post("/cds-services/spine-metastasis-review/feedback", json=load_json(path))
        assert response.status_code == 200, (path.name, response.get_json())


def test_discovery_passes_checker(client: Any) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert check_discovery(response.get_json()) == []
    hooks = {s["hook"] for s in response.get_json()["services"]}
    assert hooks == {"patient-view", "order-select", "order-sign"}


def test_unknown_service_is_404_operation_outcome(client: Any) -> None:
    response = client.post("/cds-services/nope", json={})
    assert response.status_code == 404
    assert check_operation_outcome(response.get_json()) == []
