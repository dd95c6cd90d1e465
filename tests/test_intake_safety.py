"""Intake safety: only the context patient's data count, partial data is never complete data.

Each test sends a patient case (tests/cases) changed the way a real EHR or a broken interface
changes it, and checks what a clinician would see: no other patient's emergency, no "criteria met"
over a list that could not be read, and the gap said in words on the card and in the trace.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from conftest import load_json
from support.cases import CASES_DIR, STANDARD_CASES_DIR, build_request, fired_rules, load_cases
from support.cds_checker import check_cards_response, check_operation_outcome, errors_only
from support.fhir_server import FhirTestServer, fhir_server_request

from service.cds.assemble import build_pipeline
from service.cds.definitions import SERVICES
from service.cds.prefetch import PrefetchUnavailable, resolve_template
from service.cds.request import HookRequest, parse_hook_request
from service.config import Settings

WORKED = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
EMERGENCY = load_json(CASES_DIR / "cat-neu-01-unrelated-order-emergency.json")
TRACE = "org.spinecds.trace"
FHIR_TOKEN = "opaque-test-token"


def _post(client: Any, case: dict[str, Any]) -> Any:
    service, body = build_request(case)
    return client.post(f"/cds-services/{service}", json=body)


def _cards(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert errors_only(check_cards_response(body, require_uuids=True)) == []
    cards: list[dict[str, Any]] = body["cards"]
    return cards


def _groups(cards: list[dict[str, Any]]) -> set[str]:
    return {c["extension"][TRACE]["card"] for c in cards}


def _as_patient(resources: list[dict[str, Any]], patient_ref: str, prefix: str) -> list[dict[str, Any]]:
    """The emergency patient's data as another patient's (ids prefixed, subject/patient = patient_ref)."""
    out = []
    for r in resources:
        if r["resourceType"] == "Patient":
            continue
        r = copy.deepcopy(r)
        r["id"] = prefix + r["id"]
        for k in ("subject", "patient"):
            if k in r:
                r[k] = {"reference": patient_ref}
        out.append(r)
    return out


# ----------------------------------------------------------------------------- 1. another patient's data


@pytest.mark.parametrize(
    "reference",
    ["Patient/other-b", "https://ehr.example.org/fhir/Patient/other-b", "Patient/other-b/_history/3", "Group/ward-7"],
)
def test_another_patients_emergency_is_not_given_to_the_context_patient(
    client: Any, reference: str, caplog: pytest.LogCaptureFixture
) -> None:
    case = {
        "resources": WORKED["resources"],
        "other_patient_resources": _as_patient(EMERGENCY["resources"], reference, "b-"),
    }
    with caplog.at_level(logging.WARNING, logger="spinecds"):
        cards = _cards(_post(client, case))
    rules = fired_rules(cards)
    assert "NEU-01" not in rules and "emergency-mscc" not in _groups(cards)
    cited = json.dumps([c["extension"][TRACE]["facts"] for c in cards]) + json.dumps([c["detail"] for c in cards])
    assert "b-emerg1" not in cited, "no card cites the other patient's resources"
    # the lists held another patient's data: not complete, so no "criteria met" over them
    assert "VA-22" not in rules
    gaps = cards[0]["extension"][TRACE]["dataGaps"]
    assert any(g.get("otherPatient") for g in gaps), gaps
    assert "another patient" in cards[0]["detail"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("not about the context patient" in m for m in warnings), warnings
    assert not any("other-b" in m or "b-emerg1" in m or "worked" in m for m in warnings), "no identifiers in logs"


def test_another_patients_resources_on_a_fetched_page_are_set_aside(client: Any) -> None:
    """A FHIR server that ignores ?patient= and answers with another patient's Conditions too."""
    other = _as_patient(EMERGENCY["resources"], "Patient/other-b", "b-")
    own = [r for r in WORKED["resources"] if r["resourceType"] == "Condition"]
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in [*own, *other] if r["resourceType"] == "Condition"],
    }
    with FhirTestServer(require_token=FHIR_TOKEN) as server:
        server.serve_json("/fhir/Condition", page)
        _, case_body = build_request(WORKED)
        prefetch = {k: v for k, v in case_body["prefetch"].items() if k != "conditions"}
        body = fhir_server_request(server.base_url, FHIR_TOKEN, patient_id="worked", prefetch=prefetch)
        response = client.post("/cds-services/spine-metastasis-review", json=body)
        assert any(r.path.startswith("/fhir/Condition?") for r in server.requests)
    cards = _cards(response)
    rules = fired_rules(cards)
    assert "NEU-01" not in rules and "VA-22" not in rules
    gaps = cards[0]["extension"][TRACE]["dataGaps"]
    assert {"key": "conditions", "otherPatient": 3} in gaps, gaps
    assert "b-emerg1" not in json.dumps(cards)


def test_the_context_patients_own_references_in_every_form_count(client: Any) -> None:
    """Relative, absolute, versioned and urn:uuid (resolved through the Bundle's fullUrl) references."""
    case = copy.deepcopy(EMERGENCY)
    case["hook"] = "patient-view"
    forms = [
        "Patient/emerg1",
        "https://ehr.example.org/fhir/Patient/emerg1",
        "Patient/emerg1/_history/2",
        "urn:uuid:emerg1",
    ]
    for i, r in enumerate(r for r in case["resources"] if r["resourceType"] != "Patient"):
        r["subject" if "subject" in r else "patient"] = {"reference": forms[i % len(forms)]}
    cards = _cards(_post(client, case))
    assert "NEU-01" in fired_rules(cards)
    assert all(not c["extension"][TRACE].get("dataGaps") for c in cards)


def test_urn_uuid_resolved_through_full_url(client: Any) -> None:
    case = copy.deepcopy(EMERGENCY)
    case["hook"] = "patient-view"
    service, body = build_request(case)
    uuid_ref = "urn:uuid:3f1c8f4e-0c61-4d8e-9b1a-6a9f1f4b2c10"
    conditions = body["prefetch"]["conditions"]
    conditions["entry"].append({"fullUrl": uuid_ref, "resource": body["prefetch"]["patient"]})
    for entry in conditions["entry"]:
        if entry["resource"]["resourceType"] == "Condition":
            entry["resource"]["subject"] = {"reference": uuid_ref}
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "NEU-01" in fired_rules(cards)


def test_prefetch_patient_of_another_patient_is_400(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["patient"] = {"resourceType": "Patient", "id": "other-b", "birthDate": "1950-01-01"}
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    outcome = response.get_json()
    assert check_operation_outcome(outcome) == []
    assert "prefetch.patient" in json.dumps(outcome)
    assert "other-b" not in json.dumps(outcome), "the other patient's id is not echoed"


def test_types_without_a_patient_element_are_not_checked() -> None:
    """A Medication or Practitioner (even if a later rule reads it) is not patient data; a Condition is."""
    from service.fhir.pool import PATIENT_ELEMENT, ResourcePool

    pool = ResourcePool(patient_id="A")
    assert pool.about_patient("Medication", {"resourceType": "Medication", "id": "m"})
    assert pool.about_patient("Practitioner", {"resourceType": "Practitioner", "id": "p"})
    assert not pool.about_patient("Condition", {"resourceType": "Condition", "id": "c"})
    assert not pool.about_patient(
        "AllergyIntolerance", {"resourceType": "AllergyIntolerance", "subject": {"reference": "Patient/A"}}
    )
    assert pool.about_patient(
        "AllergyIntolerance", {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/A"}}
    )
    assert PATIENT_ELEMENT["Observation"] == "subject"


def test_medication_without_patient_reference_is_fine(client: Any) -> None:
    """A Medication (no subject) sent with the medication list does not make anything incomplete."""
    service, body = build_request(WORKED)
    body["prefetch"]["meds"]["entry"].append(
        {"resource": {"resourceType": "Medication", "id": "m1", "code": {"text": "oxycodone 5 mg tablet"}}}
    )
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "VA-22" in fired_rules(cards)


# ----------------------------------------------------------------------------- 2. skipped resources


SEPSIS = load_json(CASES_DIR / "safety-unreadable-sepsis-condition.json")


def test_a_condition_that_cannot_be_read_makes_the_problem_list_incomplete(client: Any) -> None:
    cards = _cards(_post(client, SEPSIS))
    rules = fired_rules(cards)
    assert "VA-22" not in rules, "never 'criteria met' while a Condition could not be read"
    assert "VA-24" in rules
    va = next(c for c in cards if c["extension"][TRACE]["card"] == "va-eligibility")
    assert "1 Condition could not be read: the problem list is incomplete" in va["detail"]
    assert {"key": "conditions", "skipped": {"Condition": 1}} in va["extension"][TRACE]["dataGaps"]
    facts = {f["id"]: f["value"] for f in va["extension"][TRACE]["facts"]}
    assert facts.get("F-INFECT", "unknown") == "unknown"


def test_two_unreadable_conditions_are_counted_in_words(client: Any) -> None:
    case = copy.deepcopy(SEPSIS)
    second = copy.deepcopy(case["unreadable_resources"][0])
    second["id"] = "second-bad"
    case["unreadable_resources"].append(second)
    cards = _cards(_post(client, case))
    assert all("2 Conditions could not be read" in c["detail"] for c in cards)


def test_an_unreadable_patient_is_evaluated_not_412(client: Any) -> None:
    """The required Patient failing validation makes age unknown; the emergency that was read still shows."""
    case = copy.deepcopy(EMERGENCY)
    case["hook"] = "patient-view"
    patient = next(r for r in case["resources"] if r["resourceType"] == "Patient")
    patient["birthDate"] = "1960-02-30"
    cards = _cards(_post(client, case))
    assert "NEU-01" in fired_rules(cards)
    assert {"key": "patient", "skipped": {"Patient": 1}} in cards[0]["extension"][TRACE]["dataGaps"]


# ----------------------------------------------------------------------------- 3. medications


def test_medication_list_needs_requests_and_statements(client: Any) -> None:
    case = load_json(CASES_DIR / "safety-medication-statements-missing.json")
    cards = _cards(_post(client, case))
    assert "VA-22" not in fired_rules(cards)
    facts = {f["id"]: f for c in cards for f in c["extension"][TRACE]["facts"]}
    assert facts["F-ANTICOAG"]["value"] == "unknown"


def test_medication_statements_null_means_no_statements(client: Any) -> None:
    """null is the EHR saying 'none': with both keys the list is complete and the worked example stays eligible."""
    case = copy.deepcopy(WORKED)
    case["null_keys"] = ["medstatements"]
    assert "VA-22" in fired_rules(_cards(_post(client, case)))


# ----------------------------------------------------------------------------- 4. wrong-shaped prefetch


def _emergency_request() -> tuple[str, dict[str, Any]]:
    case = copy.deepcopy(EMERGENCY)
    case["hook"] = "patient-view"
    return build_request(case)


def test_a_patient_where_the_condition_searchset_belongs_is_400(client: Any) -> None:
    service, body = _emergency_request()
    body["prefetch"]["conditions"] = body["prefetch"]["patient"]
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    assert check_operation_outcome(response.get_json()) == []
    assert "prefetch.conditions" in json.dumps(response.get_json())


@pytest.mark.parametrize("bundle_type", ["history", "transaction", "document", "batch", "message", None])
def test_a_search_key_holding_a_bundle_of_another_type_is_400(client: Any, bundle_type: str | None) -> None:
    service, body = _emergency_request()
    if bundle_type is None:
        del body["prefetch"]["conditions"]["type"]
    else:
        body["prefetch"]["conditions"]["type"] = bundle_type
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    assert "prefetch.conditions" in json.dumps(response.get_json())


def test_a_batch_response_wrapping_the_searchset_is_unwrapped(client: Any) -> None:
    service, body = _emergency_request()
    searchset = body["prefetch"]["conditions"]
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": searchset, "response": {"status": "200 OK"}}],
    }
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "NEU-01" in fired_rules(cards)
    assert all(not c["extension"][TRACE].get("dataGaps") for c in cards)


def test_a_batch_response_with_a_failed_search_makes_the_category_unavailable(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["allergies"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "no access"}],
                },
                "response": {"status": "403 Forbidden"},
            }
        ],
    }
    rules = fired_rules(_cards(client.post(f"/cds-services/{service}", json=body)))
    assert "VA-22" not in rules and "VA-24" in rules


def test_a_batch_response_of_several_searches_is_400(client: Any) -> None:
    service, body = build_request(WORKED)
    searchset = body["prefetch"]["conditions"]
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": searchset, "response": {"status": "200 OK"}}] * 2,
    }
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    assert "prefetch.conditions" in json.dumps(response.get_json())


def test_a_searchset_of_the_wrong_resource_type_is_incomplete_not_empty(client: Any) -> None:
    """The labs sent under the conditions key: the problem list is not an empty list, it is unreadable."""
    service, body = build_request(WORKED)
    conditions = body["prefetch"]["conditions"]
    body["prefetch"]["conditions"] = copy.deepcopy(body["prefetch"]["labs"])
    body["prefetch"]["labs"]["entry"] += conditions["entry"]  # the Conditions are still there (in labs)
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "VA-22" not in fired_rules(cards)
    assert any("not Conditions" in c["detail"] and "problem list is incomplete" in c["detail"] for c in cards)


def test_included_resources_in_a_searchset_are_fine(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["conditions"]["entry"].append(
        {"resource": body["prefetch"]["patient"], "search": {"mode": "include"}}
    )
    assert "VA-22" in fired_rules(_cards(client.post(f"/cds-services/{service}", json=body)))


def test_a_patient_sent_as_a_searchset_of_one_is_read(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["patient"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": body["prefetch"]["patient"]}],
    }
    assert "VA-22" in fired_rules(_cards(client.post(f"/cds-services/{service}", json=body)))


def test_a_condition_bundle_in_the_patient_key_is_400(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["patient"] = body["prefetch"]["conditions"]
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    assert "prefetch.patient" in json.dumps(response.get_json())


# ----------------------------------------------------------------------------- 5. order hooks


DRAFTS: dict[str, dict[str, Any]] = {
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "id": "rx1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "dexamethasone 4 mg tablet"},
        "subject": {"reference": "Patient/emerg1"},
    },
    "NutritionOrder": {
        "resourceType": "NutritionOrder",
        "id": "diet1",
        "status": "draft",
        "intent": "order",
        "patient": {"reference": "Patient/emerg1"},
        "dateTime": "2026-06-01",
    },
    "DeviceRequest": {
        "resourceType": "DeviceRequest",
        "id": "brace1",
        "status": "draft",
        "intent": "order",
        "codeCodeableConcept": {"text": "thoracolumbar brace"},
        "subject": {"reference": "Patient/emerg1"},
    },
    "VisionPrescription": {
        "resourceType": "VisionPrescription",
        "id": "glasses1",
        "status": "draft",
        "created": "2026-06-01",
        "patient": {"reference": "Patient/emerg1"},
        "dateWritten": "2026-06-01",
        "prescriber": {"reference": "Practitioner/x"},
        "lensSpecification": [{"product": {"text": "lens"}, "eye": "right"}],
    },
    "CarePlan": {"resourceType": "CarePlan", "id": "cp1", "status": "draft", "intent": "proposal"},
}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("kind", sorted(DRAFTS))
def test_the_emergency_shows_whatever_is_being_ordered(client: Any, hook: str, kind: str) -> None:
    case = copy.deepcopy(EMERGENCY)
    case["hook"] = hook
    case["draft_orders"] = [DRAFTS[kind]]
    cards = _cards(_post(client, case))
    assert "emergency-mscc" in _groups(cards)
    assert cards[0]["indicator"] == "critical"
    assert _groups(cards) == {"emergency-mscc"}, "only what outranks everything at an unrelated order"


def test_order_select_with_a_medication_selected_beside_a_procedure_draft(client: Any) -> None:
    """Selections name a MedicationRequest while a vertebroplasty draft waits: the selection decides."""
    case = copy.deepcopy(load_json(CASES_DIR / "core-order-sign-vertebroplasty-eligible.json"))
    case["hook"] = "order-select"
    service, body = build_request(case)
    procedure = body["context"]["draftOrders"]["entry"][0]["resource"]
    rx = copy.deepcopy(DRAFTS["MedicationRequest"])
    rx["subject"] = procedure["subject"]
    body["context"]["draftOrders"]["entry"].append({"resource": rx})
    body["context"]["selections"] = ["MedicationRequest/rx1"]
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "va-order-review" not in _groups(cards) and "va-eligibility" not in _groups(cards)
    body["context"]["selections"] = [f"ServiceRequest/{procedure['id']}"]
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert _groups(cards) & {"va-eligibility", "va-order-review"}


def test_order_sign_with_no_draft_at_all_still_shows_the_emergency(client: Any) -> None:
    case = copy.deepcopy(EMERGENCY)
    case["draft_orders"] = []
    assert "emergency-mscc" in _groups(_cards(_post(client, case)))


# ----------------------------------------------------------------------------- 6. partial pagination


def test_partial_pagination_is_evaluated_and_said(client: Any) -> None:
    case = load_json(CASES_DIR / "safety-paginated-prefetch-not-eligible.json")
    cards = _cards(_post(client, case))
    assert "VA-22" not in fired_rules(cards)
    va = next(c for c in cards if c["extension"][TRACE]["card"] == "va-eligibility")
    assert "only part of the problem list was received" in va["detail"]
    assert {"key": "conditions", "partial": True} in va["extension"][TRACE]["dataGaps"]


def test_paginated_patient_data_with_no_first_page_content_still_answers(client: Any) -> None:
    """Paginated conditions whose first page is empty: evaluated with the problem list incomplete."""
    case = copy.deepcopy(load_json(CASES_DIR / "safety-paginated-prefetch-not-eligible.json"))
    case["resources"] = [r for r in case["resources"] if r["resourceType"] != "Condition"]
    cards = _cards(_post(client, case))
    assert "VA-22" not in fired_rules(cards)


# ----------------------------------------------------------------------------- 7. FHIR ids and URL encoding


@pytest.mark.parametrize(
    "patient_id",
    ["../../admin/secret", "A&_include=*&patient=other", "A,other", "A#x", "A?x=1", "a b", "x" * 65, "é", "A/B"],
)
def test_a_patient_id_that_is_not_a_fhir_id_is_400_and_nothing_is_fetched(client: Any, patient_id: str) -> None:
    with FhirTestServer(resources=EMERGENCY["resources"], require_token=FHIR_TOKEN) as server:
        body = fhir_server_request(server.base_url, FHIR_TOKEN, patient_id=patient_id)
        response = client.post("/cds-services/spine-metastasis-review", json=body)
        assert response.status_code == 400, response.get_json()
        assert check_operation_outcome(response.get_json()) == []
        assert "context.patientId" in json.dumps(response.get_json())
        assert server.requests == [], "nothing reached the FHIR server"


def test_an_encounter_id_that_is_not_a_fhir_id_is_400(client: Any) -> None:
    service, body = build_request(WORKED)
    body["context"]["encounterId"] = "e1&patient=other"
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400
    assert "context.encounterId" in json.dumps(response.get_json())


def test_every_fetched_url_stays_under_the_fhir_base(client: Any) -> None:
    with FhirTestServer(resources=EMERGENCY["resources"], require_token=FHIR_TOKEN) as server:
        body = fhir_server_request(server.base_url, FHIR_TOKEN, patient_id="emerg1")
        assert client.post("/cds-services/spine-metastasis-review", json=body).status_code == 200
        assert server.requests and all(r.path.startswith("/fhir/") for r in server.requests)
        assert all(("patient", "emerg1") in r.params or r.path == "/fhir/Patient/emerg1" for r in server.requests)


@pytest.mark.parametrize("next_url", ["{origin}/admin/secret", "{base}/../admin/secret", "{base}/%2e%2e/admin"])
def test_a_next_link_outside_the_fhir_base_is_not_followed(client: Any, next_url: str) -> None:
    with FhirTestServer(resources=EMERGENCY["resources"], require_token=FHIR_TOKEN) as server:
        service, case_body = build_request({**EMERGENCY, "hook": "patient-view"})
        conditions = case_body["prefetch"]["conditions"]
        conditions["link"] = [{"relation": "next", "url": next_url.format(origin=server.origin, base=server.base_url)}]
        body = fhir_server_request(server.base_url, FHIR_TOKEN, patient_id="emerg1", prefetch=case_body["prefetch"])
        response = client.post(f"/cds-services/{service}", json=body)
        assert response.status_code == 200, response.get_json()
        assert not any("admin" in r.path for r in server.requests), [r.path for r in server.requests]
        gaps = response.get_json()["cards"][0]["extension"][TRACE]["dataGaps"]
        assert {"key": "conditions", "partial": True} in gaps


def test_substituted_values_are_percent_encoded() -> None:
    request = HookRequest("patient-view", "i", {"patientId": "a b/c?d#e&f"}, None, None, {})
    assert (
        resolve_template("Condition?patient={{context.patientId}}", request)
        == "Condition?patient=a%20b%2Fc%3Fd%23e%26f"
    )
    assert resolve_template("Patient/{{context.patientId}}", request) == "Patient/a%20b%2Fc%3Fd%23e%26f"


# ----------------------------------------------------------------------------- never a 500


def _hostile_bodies() -> list[tuple[str, dict[str, Any]]]:
    out = []
    variants: list[tuple[str, Any]] = [
        ("bundle-type-list", {"resourceType": "Bundle", "type": ["searchset"]}),
        ("bundle-type-object", {"resourceType": "Bundle", "type": {"a": 1}}),
        ("resource-type-list", {"resourceType": ["Bundle"], "type": "searchset"}),
        (
            "batch-inner-type-list",
            {
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [{"resource": {"resourceType": "Bundle", "type": [1]}}],
            },
        ),
        (
            "batch-status-list",
            {
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [{"resource": {"resourceType": "Bundle", "type": "searchset"}, "response": {"status": [200]}}],
            },
        ),
        ("batch-entry-list", {"resourceType": "Bundle", "type": "batch-response", "entry": [[1]]}),
        ("entries-not-list", {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}}),
        (
            "search-mode-list",
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "Patient", "id": "x"}, "search": {"mode": ["include"]}}],
            },
        ),
        (
            "subject-odd",
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {
                        "fullUrl": ["x"],
                        "resource": {"resourceType": "Condition", "id": ["c"], "subject": ["Patient/worked"]},
                    },
                    {
                        "resource": {
                            "resourceType": "Condition",
                            "id": "c2",
                            "subject": {"reference": ["Patient/worked"]},
                        }
                    },
                    {"fullUrl": "urn:uuid:1", "resource": {"resourceType": ["Patient"], "id": {"x": 1}}},
                    {"resource": {"resourceType": "Condition", "id": "c3", "subject": {"reference": "urn:uuid:1"}}},
                ],
            },
        ),
    ]
    for name, value in variants:
        service, body = build_request(WORKED)
        body["prefetch"]["conditions"] = value
        out.append((name, body))
    service, body = build_request({**EMERGENCY})
    body["context"]["draftOrders"]["entry"] = [
        {"resource": {"resourceType": "MedicationRequest", "id": ["x"]}},
        {"resource": {"resourceType": ["ServiceRequest"], "id": "y"}},
        {"resource": "text"},
        "entry",
    ]
    out.append(("odd-drafts", body))
    return out


@pytest.mark.parametrize(("name", "body"), _hostile_bodies(), ids=[n for n, _ in _hostile_bodies()])
def test_odd_shapes_are_4xx_or_evaluated_never_500(client: Any, name: str, body: dict[str, Any]) -> None:
    service = "spine-procedure-order-sign" if name == "odd-drafts" else "spine-metastasis-review"
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code in {200, 400, 412}, (name, response.status_code, response.get_json())
    if response.status_code == 200:
        assert errors_only(check_cards_response(response.get_json(), require_uuids=True)) == []
    else:
        assert check_operation_outcome(response.get_json()) == []


@pytest.mark.parametrize(
    "entries",
    [[{"resource": {"id": "no-type", "code": {"text": "sepsis"}}}], [{"fullUrl": "x"}], [["not", "an", "entry"]]],
    ids=["resource-without-type", "entry-without-resource", "entry-not-object"],
)
def test_entries_that_cannot_be_read_make_the_list_incomplete(client: Any, entries: list[Any]) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["conditions"]["entry"] += entries
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert "VA-22" not in fired_rules(cards)
    assert "1 entry could not be read: the problem list is incomplete" in cards[0]["detail"]


def test_bundle_entry_not_an_array_is_400(client: Any) -> None:
    service, body = build_request(WORKED)
    body["prefetch"]["conditions"]["entry"] = {"resource": body["prefetch"]["conditions"]["entry"][0]["resource"]}
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400
    assert "prefetch.conditions" in json.dumps(response.get_json())


@pytest.mark.parametrize("entry", [{}, {"resourceType": "Condition", "id": "c"}, "x", 0, False])
def test_bundle_entry_not_an_array_is_400_also_inside_a_batch_response(client: Any, entry: Any) -> None:
    """A searchset wrapped in a batch-response gets the same shape check as one sent bare: an ``entry`` that is
    not an array is never read as a complete (possibly empty) list, nor as a resource."""
    service, body = build_request(WORKED)
    searchset = {**body["prefetch"]["conditions"], "entry": entry}
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": searchset, "response": {"status": "200 OK"}}],
    }
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 400, response.get_json()
    assert "prefetch.conditions: Bundle.entry must be an array" in json.dumps(response.get_json())


@pytest.mark.parametrize("where", ["the key", "an entry of its searchset"])
def test_an_operation_outcome_for_the_problem_list_is_no_problem_list(client: Any, where: str) -> None:
    """An EHR that answers the conditions prefetch with an OperationOutcome (instead of, or inside, the
    searchset) sent no problem list: a required key without data is 412, never an empty, complete list."""
    service, body = build_request(WORKED)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    if where == "the key":
        body["prefetch"]["conditions"] = outcome
    else:
        body["prefetch"]["conditions"]["entry"].append({"resource": outcome, "search": {"mode": "outcome"}})
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 412, response.get_json()
    assert "conditions: the EHR reported an error for this prefetch" in json.dumps(response.get_json())


def test_the_pool_keeps_resources_as_they_came_and_nothing_changes_them() -> None:
    """The pool keeps the request's own resource objects (no copy per resource: service/fhir/pool.py), so
    nothing downstream (facts, rules, cards, drafts) may change one: every case's prefetch and draft orders
    are the same after a whole call. What the pool kept is the very objects of the request (else this test
    would not see a change)."""
    pipeline = build_pipeline(Settings.from_env(), offline=True)
    evaluated = 0
    for directory in (CASES_DIR, STANDARD_CASES_DIR):
        for name, case in load_cases(directory):
            if "status" in case.get("expect", {}):
                continue
            service, body = build_request(case)
            request = parse_hook_request(body, SERVICES[service])
            before = copy.deepcopy((request.prefetch, request.context))
            try:
                decision = pipeline.run(request)
            except PrefetchUnavailable:
                continue
            assert (request.prefetch, request.context) == before, name
            payloads = [v for v in request.prefetch.values() if isinstance(v, dict)]
            sent = {id(v) for v in payloads} | {id(e["resource"]) for v in payloads for e in v.get("entry", [])}
            kept = [r for rs in decision.prefetch.pool.by_type.values() for r in rs]
            assert all(id(r) in sent for r in kept), name
            evaluated += 1
    assert evaluated > 250


MALFORMED_CODINGS = [
    {"system": "http://loinc.org", "code": {"value": "6301-6"}},
    {"system": "http://loinc.org", "code": ["6301-6"]},
    {"system": ["http://loinc.org"], "code": "6301-6"},
    {"system": {"uri": "http://loinc.org"}, "code": ["6301-6"]},
    {"system": "http://www.whocc.no/atc", "code": 5},  # a system matched by code prefix
    {"system": "http://loinc.org", "code": 6301},
]


@pytest.mark.parametrize("element", ["code", "valueCodeableConcept"])
@pytest.mark.parametrize("coding", MALFORMED_CODINGS, ids=lambda c: repr(c)[:60])
def test_a_lab_whose_coding_is_not_strings_makes_the_labs_incomplete_never_500(
    client: Any, element: str, coding: dict[str, Any]
) -> None:
    """Whether the rules read a lab is decided by its codes; a code that is an object, an array or a number
    cannot be ruled out: the lab is refused by the intake, the labs are incomplete (said on the card), and
    the call answers."""
    service, body = build_request(WORKED)
    lab: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "odd-lab",
        "status": "final",
        "subject": {"reference": f"Patient/{body['context']['patientId']}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},  # heart rate: no rule reads it
    }
    lab[element] = {"coding": [coding]}
    body["prefetch"]["labs"]["entry"].append({"resource": lab})
    cards = _cards(client.post(f"/cds-services/{service}", json=body))
    assert {"key": "labs", "skipped": {"Observation": 1}} in cards[0]["extension"][TRACE]["dataGaps"]
    assert "1 Observation could not be read: the lab results" in cards[0]["detail"]


def test_gap_lines_agree_in_number_with_what_is_incomplete() -> None:
    """A clinician reads "the lab results are incomplete", not "is"; "the problem list is incomplete"."""
    from service.cds.definitions import KEY_LABELS
    from service.cds.prefetch import _incomplete

    assert _incomplete(KEY_LABELS["labs"]) == "the lab results are incomplete"
    assert _incomplete(KEY_LABELS["conditions"]) == "the problem list is incomplete"
    assert _incomplete(KEY_LABELS["procedures"]) == "the radiotherapy history is incomplete"
    assert _incomplete(KEY_LABELS["ps_pain"]) == "the performance status and pain scores are incomplete"
