"""The fallback path against a real FHIR server on loopback: fetch, paging, token, faults -> 412."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import load_json
from support.cases import CASES_DIR
from support.cds_checker import check_cards_response, check_operation_outcome, errors_only
from support.fhir_server import FhirTestServer, fhir_server_request

CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
TOKEN = "opaque-test-token"


@pytest.fixture()
def ehr() -> Iterator[FhirTestServer]:
    with FhirTestServer(resources=CASE["resources"], page_size=2, require_token=TOKEN, slow_seconds=4) as server:
        yield server


def _request(server: FhirTestServer, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return fhir_server_request(server.base_url, TOKEN, patient_id="worked", prefetch=prefetch)


def _rules(response: Any) -> set[str]:
    return {r for c in response.get_json()["cards"] for r in c["extension"]["org.spinecds.trace"]["rules"]}


def test_everything_fetched_with_token_and_paging(client: Any, ehr: FhirTestServer) -> None:
    response = client.post("/cds-services/spine-metastasis-review", json=_request(ehr))
    assert response.status_code == 200, response.get_json()
    assert errors_only(check_cards_response(response.get_json(), require_uuids=True)) == []
    assert {"VA-22", "RT-01"} <= _rules(response)
    assert all(r.authorization == f"Bearer {TOKEN}" for r in ehr.requests)
    assert any("_offset" in r.path for r in ehr.requests), "next links were followed"


def test_null_prefetch_is_not_refetched(client: Any, ehr: FhirTestServer) -> None:
    response = client.post("/cds-services/spine-metastasis-review", json=_request(ehr, {"allergies": None}))
    assert response.status_code == 200
    assert not any("/AllergyIntolerance" in r.path for r in ehr.requests)


@pytest.mark.parametrize("fault", ["500", "garbage", "html", "slow", "404", "bundle-of-wrong-type", "redirect"])
def test_required_data_fault_gives_412_never_500(client: Any, ehr: FhirTestServer, fault: str) -> None:
    ehr.redirect_to = "http://127.0.0.1:9/elsewhere"
    ehr.set_fault(fault, "Condition")  # type: ignore[arg-type]
    response = client.post("/cds-services/spine-metastasis-review", json=_request(ehr))
    assert response.status_code == 412, response.get_json()
    assert check_operation_outcome(response.get_json()) == []


def test_fault_mid_pagination_is_evaluated_as_incomplete(client: Any, ehr: FhirTestServer) -> None:
    for i in range(3):  # enough Conditions for a second page
        ehr.add(
            {
                "resourceType": "Condition",
                "id": f"extra{i}",
                "subject": {"reference": "Patient/worked"},
                "code": {"text": "hypertension"},
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
            }
        )
    ehr.fail_on_page = 2
    ehr.set_fault("500", "Condition")
    response = client.post("/cds-services/spine-metastasis-review", json=_request(ehr))
    # Was 412 (the Sandbox shows that as "All clear"). Safety: what the first page holds is known and
    # is evaluated; only the problem list's negatives are unknown, so never "criteria met" (VA-22).
    assert response.status_code == 200, response.get_json()
    assert "VA-22" not in _rules(response)
    gaps = [g for c in response.get_json()["cards"] for g in c["extension"]["org.spinecds.trace"].get("dataGaps", [])]
    assert {"key": "conditions", "partial": True} in gaps


EMERGENCY = load_json(CASES_DIR / "cat-neu-01-unrelated-order-emergency.json")


def _emergency_first() -> list[dict[str, Any]]:
    """The emergency patient with the metastasis and the cord compression first: page one of the Conditions."""
    first = {"emerg1-cond2": 0, "emerg1-cond11": 1}
    return sorted(EMERGENCY["resources"], key=lambda r: first.get(r["id"], 2))


@pytest.mark.parametrize("where", ["fetched", "prefetch"])
def test_emergency_on_the_pages_received_shows_when_a_later_page_fails(client: Any, where: str) -> None:
    """Issue 16: a cord compression on page one is known even when page two cannot be fetched (was 412)."""
    with FhirTestServer(resources=_emergency_first(), page_size=2, require_token=TOKEN) as server:
        server.fail_on_page = 2
        server.set_fault("500", "Condition")
        prefetch = None
        if where == "prefetch":  # the EHR sent page one of the problem list; following next fails
            page_one = requests.get(
                f"{server.base_url}/Condition?patient=emerg1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
            ).json()
            assert any(link["relation"] == "next" for link in page_one["link"])
            prefetch = {"conditions": page_one}
        body = fhir_server_request(server.base_url, TOKEN, patient_id="emerg1", prefetch=prefetch)
        response = client.post("/cds-services/spine-metastasis-review", json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert cards and cards[0]["indicator"] == "critical" and "NEU-01" in _rules(response)
    gaps = cards[0]["extension"]["org.spinecds.trace"]["dataGaps"]
    assert {"key": "conditions", "partial": True} in gaps


def test_optional_category_fault_makes_facts_unknown(client: Any, ehr: FhirTestServer) -> None:
    ehr.set_fault("500", "AllergyIntolerance")
    response = client.post("/cds-services/spine-metastasis-review", json=_request(ehr))
    assert response.status_code == 200
    rules = _rules(response)
    assert "VA-22" not in rules and "VA-24" in rules  # allergy unknown: needs data, never eligible


def test_wrong_token_gives_412(client: Any, ehr: FhirTestServer) -> None:
    body = _request(ehr)
    body["fhirAuthorization"]["access_token"] = "wrong"
    response = client.post("/cds-services/spine-metastasis-review", json=body)
    assert response.status_code == 412


def test_huge_response_is_refused(app: Any, ehr: FhirTestServer) -> None:
    ehr.huge_bytes = 30_000_000
    ehr.set_fault("huge", "Condition")
    response = app.test_client().post("/cds-services/spine-metastasis-review", json=_request(ehr))
    assert response.status_code == 412
