"""The one request builder (service/cds/request_builder.py): routing to prefetch keys, patient ownership, requests."""

from __future__ import annotations

from typing import Any

import pytest
from support.cases import CASES_DIR, fired_rules
from support.cds_checker import check_hook_request, errors_only

from service.cds.definitions import PREFETCH, SERVICES
from service.cds.request_builder import (
    EXTRA_KEY,
    RECORD_USER,
    SERVICE_FOR_HOOK,
    TEMPLATES,
    BadInput,
    UnknownHook,
    build_request,
    case_request,
    documented_keys,
    patient_of,
    prefetch_key,
    referenced_patient,
    split_by_patient,
    subjects_from_json,
    subjects_from_resources,
)
from service.fhir.pool import ResourcePool

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
LOCAL = "https://fhir.spinecds.org/CodeSystem/spinecds-local"


def obs(system: str, code: str, subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{code}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject},
    }


@pytest.mark.parametrize(
    "system,code,key",
    [
        (LOINC, "777-3", "labs"),  # platelets
        (LOINC, "6301-6", "labs"),  # INR
        (LOINC, "3173-2", "labs"),  # aPTT
        (LOINC, "89247-1", "ps_pain"),  # ECOG
        (LOINC, "89243-0", "ps_pain"),  # Karnofsky
        (LOINC, "72514-3", "ps_pain"),  # pain severity 0-10
        (LOINC, "38208-5", "ps_pain"),  # pain severity reported
        (LOCAL, "sins-total", "findings"),  # the whole local CodeSystem
        (LOCAL, "escc-grade", "findings"),
        (LOINC, "8867-4", EXTRA_KEY),  # heart rate: no template asks for it
        (SNOMED, "777-3", EXTRA_KEY),  # a LOINC code under another system is another code
    ],
)
def test_observations_go_to_the_key_whose_template_codes_select_them(system: str, code: str, key: str) -> None:
    assert prefetch_key(obs(system, code)) == key


def test_every_code_of_every_template_routes_to_its_key() -> None:
    """The discovery templates and the routing agree code by code (the first template to ask for a code wins)."""
    checked = 0
    for template in TEMPLATES:
        for system, code in template.codes or ():
            resource = {"resourceType": template.resource_type, "code": {"coding": [{"system": system, "code": code}]}}
            assert prefetch_key(resource) == template.key, (template.key, system, code)
            checked += 1
    assert checked >= 25
    assert {t.key for t in TEMPLATES} == set(PREFETCH)


@pytest.mark.parametrize(
    "resource,key",
    [
        ({"resourceType": "Condition"}, "conditions"),
        ({"resourceType": "MedicationRequest"}, "meds"),
        ({"resourceType": "MedicationStatement"}, "medstatements"),
        ({"resourceType": "Medication"}, "meds"),  # as `_include` returns it
        ({"resourceType": "AllergyIntolerance"}, "allergies"),
        ({"resourceType": "DiagnosticReport"}, "imaging"),
        ({"resourceType": "RiskAssessment"}, "prognosis"),
        ({"resourceType": "Procedure", "code": {"coding": [{"system": CPT, "code": "22511"}]}}, "procedures"),
        ({"resourceType": "Procedure", "code": {"coding": [{"system": SNOMED, "code": "1217123003"}]}}, "procedures"),
        ({"resourceType": "Procedure", "code": {"coding": [{"system": SNOMED, "code": "80146002"}]}}, EXTRA_KEY),
        ({"resourceType": "Encounter"}, EXTRA_KEY),
        ({"resourceType": "ImagingStudy"}, EXTRA_KEY),
        ({"resourceType": "Observation"}, EXTRA_KEY),  # no code: no code search selects it
        ({"resourceType": "Observation", "code": "777-3"}, EXTRA_KEY),  # hostile shapes never raise
        ({"resourceType": "Observation", "code": {"coding": ["777-3", None]}}, EXTRA_KEY),
    ],
)
def test_other_resources_go_by_type_and_template_code(resource: dict[str, Any], key: str) -> None:
    assert prefetch_key(resource) == key


ALIASES = {
    "urn:uuid:0a1b": {"resourceType": "Patient", "id": "p1"},
    "urn:uuid:enc": {"resourceType": "Encounter", "id": "e1"},
    "https://ehr.example.org/fhir/Patient/alias": {"resourceType": "Patient", "id": "p1"},
}


@pytest.mark.parametrize(
    "reference,patient",
    [
        ("Patient/p1", "p1"),
        ("https://ehr.example.org/fhir/Patient/p1", "p1"),
        ("https://ehr.example.org/fhir/Patient/p1/_history/3", "p1"),
        ("Patient/p1/_history/3", "p1"),
        ("urn:uuid:0a1b", "p1"),  # a Bundle entry's fullUrl names the Patient
        ("https://ehr.example.org/fhir/Patient/alias", "p1"),
        ("urn:uuid:p1", "p1"),  # unresolved: the converters' convention
        ("urn:uuid:enc", None),  # resolves to an Encounter
        ("urn:oid:1.2.3", None),
        ("Group/p1", None),
        ("#p1", None),  # contained
        ("Patient?identifier=x|p1", None),  # a search
        ("Patient/p2", "p2"),
    ],
)
def test_ownership_reads_references_as_the_intake_does(reference: str, patient: str | None) -> None:
    assert referenced_patient(reference, ALIASES) == patient
    pool = ResourcePool(patient_id="p1")
    pool.add_payload(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": u, "resource": r} for u, r in ALIASES.items()],
        },
        "aliases",
    )
    assert pool.references_patient(reference) == (patient == "p1"), "the builder and the service's intake disagree"


def test_patient_of_reads_the_element_the_intake_reads() -> None:
    assert patient_of({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/a"}}) == "a"
    assert patient_of({"resourceType": "Condition", "subject": {"reference": "Patient/a"}}) == "a"
    assert patient_of({"resourceType": "AllergyIntolerance", "subject": {"reference": "Patient/a"}}) is None
    assert patient_of({"resourceType": "Patient", "id": "a"}) == "a"
    assert patient_of({"resourceType": "Medication", "id": "m"}) is None
    assert patient_of({"resourceType": "Condition", "subject": "Patient/a"}) is None


def test_split_by_patient() -> None:
    a, b = {"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"}
    med = {"resourceType": "Medication", "id": "m"}
    cond_a = {"resourceType": "Condition", "subject": {"reference": "urn:uuid:xa"}}
    cond_c = {"resourceType": "Condition", "subject": {"reference": "Patient/c"}}
    two = split_by_patient([a, b, med, cond_a, cond_c, "junk", {"id": "x"}], {"urn:uuid:xa": a})
    assert two == {"a": [a, cond_a], "b": [b], "c": [cond_c]}  # the unreferenced Medication: nobody's
    one = split_by_patient([a, med, cond_c])
    assert one == {"a": [a, med], "c": [cond_c]}  # a one-patient record: the Medication is the patient's


PATIENT = {"resourceType": "Patient", "id": "p1"}


def test_patient_view_request() -> None:
    other_patient = {"resourceType": "Patient", "id": "p2"}
    resources = [
        PATIENT,
        obs(LOINC, "777-3"),
        obs(LOINC, "72514-3"),
        obs(LOINC, "8867-4"),
        {"resourceType": "Medication", "id": "m1"},
        {"resourceType": "MedicationRequest", "id": "mr1", "subject": {"reference": "Patient/p1"}},
        other_patient,
    ]
    body = build_request("patient-view", "p1", resources, user="Practitioner/u", null_keys=["allergies"])
    assert errors_only(check_hook_request(body)) == []
    prefetch = body["prefetch"]
    assert list(prefetch) == [*PREFETCH, EXTRA_KEY]
    assert prefetch["patient"] == PATIENT
    assert [e["resource"]["id"] for e in prefetch["labs"]["entry"]] == ["o-777-3"]
    assert [e["resource"]["id"] for e in prefetch["ps_pain"]["entry"]] == ["o-72514-3"]
    assert prefetch["meds"]["total"] == 1 and prefetch["meds"]["entry"][0]["search"] == {"mode": "include"}
    assert [e["resource"] for e in prefetch[EXTRA_KEY]["entry"]] == [obs(LOINC, "8867-4"), other_patient]
    assert prefetch["conditions"] == {"resourceType": "Bundle", "type": "searchset", "total": 0}  # documented: none
    assert prefetch["allergies"] is None
    assert body["context"] == {"userId": "Practitioner/u", "patientId": "p1"}
    assert "fhirServer" not in body


def test_documented_keys_limit_what_is_sent() -> None:
    body = build_request(
        "patient-view", "p1", [obs(LOINC, "777-3")], user="Practitioner/u", documented={"patient", "labs"}
    )
    assert list(body["prefetch"]) == ["labs"]  # no Patient resource: the key is absent, never invented


def test_order_select_request() -> None:
    draft_sr = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "draft",
        "subject": {"reference": "Patient/p1"},
    }
    active_sr = {**draft_sr, "id": "sr0", "status": "active"}
    draft_mr = {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft"}
    body = build_request(
        "order-select",
        "p1",
        [PATIENT, draft_sr, active_sr],
        user="Practitioner/u",
        draft_orders=[draft_mr],
        fhir_server="https://ehr.example.org/fhir",
        hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    )
    assert errors_only(check_hook_request(body)) == []
    assert [e["resource"] for e in body["context"]["draftOrders"]["entry"]] == [draft_mr, draft_sr]
    assert body["context"]["selections"] == ["MedicationRequest/mr1", "ServiceRequest/sr1"]
    assert [e["resource"] for e in body["prefetch"][EXTRA_KEY]["entry"]] == [active_sr]
    assert body["fhirServer"] == "https://ehr.example.org/fhir"
    assert body["hookInstance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    sign = build_request("order-sign", "p1", [PATIENT, draft_sr], user="Practitioner/u")
    assert "selections" not in sign["context"] and len(sign["context"]["draftOrders"]["entry"]) == 1


def test_unknown_hook_is_refused() -> None:
    with pytest.raises(UnknownHook, match="encounter-start"):
        build_request("encounter-start", "p1", [PATIENT], user="Practitioner/u")


def test_hook_map_is_the_service_definitions() -> None:
    assert {s.hook: s.id for s in SERVICES.values()} == SERVICE_FOR_HOOK
    assert set(SERVICE_FOR_HOOK) == {"patient-view", "order-select", "order-sign"}


def test_case_request_applies_the_case_keys(client: Any) -> None:
    import json

    case = json.loads((CASES_DIR / "va-22-worked-example-eligible.json").read_text(encoding="utf-8"))
    service, body = case_request(
        {**case, "missing_keys": ["imaging"], "null_keys": ["prognosis"]}, user="Practitioner/u"
    )
    assert service == "spine-metastasis-review"
    assert "imaging" not in body["prefetch"] and body["prefetch"]["prognosis"] is None
    service, body = case_request(case, user="Practitioner/u")
    response = client.post(f"/cds-services/{service}", json=body)
    assert set(case["expect"]["fire"]) <= fired_rules(response.get_json()["cards"])
    with pytest.raises(ValueError, match="Patient"):
        case_request({"resources": [obs(LOINC, "777-3")]}, user="Practitioner/u")
    with pytest.raises(ValueError, match="null_keys"):
        case_request({**case, "null_keys": "labs"}, user="Practitioner/u")


def test_a_bundle_of_two_patients_gives_each_their_own_request() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient", "id": "a"}},
            {"fullUrl": "urn:uuid:bbb", "resource": {"resourceType": "Patient", "id": "b"}},
            {"resource": {**obs(LOINC, "777-3", "urn:uuid:aaa"), "id": "la"}},
            {"resource": {**obs(LOINC, "777-3", "Patient/b"), "id": "lb"}},
            {"resource": {"resourceType": "Medication", "id": "m"}},  # nobody's in a two-patient record
        ],
    }
    first, second = subjects_from_json(bundle, "upload", "order-sign")
    assert (first.label, second.label) == ("upload #1", "upload #2")
    assert first.service_id == "spine-procedure-order-sign" and first.body and second.body
    for subject, pid, lab in ((first, "a", "la"), (second, "b", "lb")):
        assert subject.body is not None and subject.body["context"]["patientId"] == pid
        assert [e["resource"]["id"] for e in subject.body["prefetch"]["labs"]["entry"]] == [lab]
        assert subject.body["prefetch"]["meds"] == {"resourceType": "Bundle", "type": "searchset", "total": 0}
        assert subject.body["context"]["userId"] == RECORD_USER


def test_records_that_are_not_requests() -> None:
    request = {"hook": "patient-view", "context": {}, "fhirServer": "https://x", "fhirAuthorization": {}}
    (subject,) = subjects_from_json(request, "req")
    assert subject.body == {"hook": "patient-view", "context": {}}  # offline: only the prefetch counts
    (nobody,) = subjects_from_json({"resources": [obs(LOINC, "777-3")]}, "case")
    assert nobody.body is None and nobody.error == "no Patient resource with an id"
    for bad, message in [
        ([], "expected a JSON object"),
        ({"hook": "encounter-start", "context": {}}, "not served here"),
        ({"resources": [PATIENT], "hook": "encounter-start"}, "not served here"),
        ({"resources": [PATIENT], "null_keys": "labs"}, "null_keys"),
        ({"resourceType": "Bundle", "entry": {}}, "Bundle.entry"),
        ({"resourceType": "Observation"}, "not a CDS Hooks request"),
    ]:
        with pytest.raises(BadInput, match=message):
            subjects_from_json(bad, "x")
    with pytest.raises(BadInput, match="not served here"):
        subjects_from_resources([PATIENT], "x", "encounter-start")


def test_an_export_of_some_types_documents_only_their_categories() -> None:
    assert documented_keys({"Observation", "Encounter"}) == {"patient", "labs", "ps_pain", "findings"}
    (subject,) = subjects_from_resources([PATIENT, obs(LOINC, "777-3")], "x", exported={"Patient", "Observation"})
    assert subject.body is not None and set(subject.body["prefetch"]) == {"patient", "labs", "ps_pain", "findings"}


def test_a_bundle_whose_references_go_through_full_urls_keeps_the_patients_data(client: Any) -> None:
    """References to ``urn:uuid:<fullUrl>`` of a Patient whose id is another: the request carries the fullUrl,
    so the service reads the data as the patient's instead of setting them all aside (no card at all)."""
    import json

    case = json.loads((CASES_DIR / "va-22-worked-example-eligible.json").read_text(encoding="utf-8"))
    pid, url = case["resources"][0]["id"], "urn:uuid:11111111-2222-4333-8444-555555555555"
    text = json.dumps(case["resources"]).replace(f'"Patient/{pid}"', f'"{url}"')
    entries = [
        {"fullUrl": url, "resource": r} if r["resourceType"] == "Patient" else {"resource": r} for r in json.loads(text)
    ]
    (subject,) = subjects_from_json({"resourceType": "Bundle", "type": "collection", "entry": entries}, "b")
    assert subject.body is not None and errors_only(check_hook_request(subject.body)) == []
    assert subject.body["prefetch"]["patient"]["entry"] == [{"fullUrl": url, "resource": case["resources"][0]}]
    response = client.post(f"/cds-services/{subject.service_id}", json=subject.body)
    assert set(case["expect"]["fire"]) <= fired_rules(response.get_json()["cards"])
    (plain,) = subjects_from_resources([PATIENT], "p", aliases={"urn:uuid:p1": PATIENT})
    assert plain.body is not None and plain.body["prefetch"]["patient"] == PATIENT  # resolvable without: as is


@pytest.mark.parametrize("code", [{"x": 1}, ["777-3"], 777, None])
@pytest.mark.parametrize("system", [LOINC, {"x": 1}, ["a"], 5])
def test_a_malformed_coding_is_routed_not_a_crash(system: Any, code: Any) -> None:
    """An upload (console, spinecds evaluate) with a code or system that is not a string is routed like a resource
    no template code selects (the service then refuses it as unreadable), never a TypeError."""
    resource = obs(LOINC, "777-3")
    resource["code"]["coding"][0].update(system=system, code=code)
    assert prefetch_key(resource) in {EXTRA_KEY, "labs"}
    if not isinstance(system, str) or not isinstance(code, str):
        assert prefetch_key(resource) == EXTRA_KEY
