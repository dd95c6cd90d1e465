"""Tests for the loopback FHIR test server (tests/support/fhir_server.py), over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.fhir_server import FhirTestServer

FIXTURES = Path("/work/shared/fixtures")
AHRQ_ADOLFO = FIXTURES / "ahrq_cql_services/synthea_exec_data/Adolfo777_Braun514.json"
MCODE_BUNDLE = FIXTURES / "mcode_trial_matching_app/TrialMatching_Patient01.json"
BULK_CONDITIONS = FIXTURES / "smart_bulk_10_patients/Condition.000.ndjson"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
TIMEOUT = 10


def observation(oid: str, patient: str, code: str, when: str, system: str = LOINC) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
    }


def condition(cid: str, subject_ref: str, code: str, clinical_status: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical_status}]},
        "category": [{"coding": [{"code": "problem-list-item"}]}],
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": subject_ref},
        "recordedDate": "2024-01-01",
    }


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as fhir:
        fhir.add({"resourceType": "Patient", "id": "p1"})
        fhir.add({"resourceType": "Patient", "id": "p2"})
        fhir.add_many(
            [
                observation("o1", "p1", "2160-0", "2024-01-01T00:00:00Z"),
                observation("o2", "p1", "718-7", "2024-03-01T00:00:00Z"),
                observation("o3", "p2", "2160-0", "2024-02-01T00:00:00Z"),
                observation("o4", "p1", "2160-0", "2023-01-01T00:00:00Z", system="http://other.example"),
                condition("c1", "Patient/p1", "94225005", "active"),
                condition("c2", "http://ehr.example/fhir/Patient/p1", "363346000", "resolved"),
                condition("c3", "Patient/p2", "94225005", "active"),
                {
                    "resourceType": "MedicationRequest",
                    "id": "m1",
                    "status": "active",
                    "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1049502"}]},
                    "subject": {"reference": "Patient/p1"},
                    "authoredOn": "2024-01-05",
                },
            ]
        )
        yield fhir


def get(fhir: FhirTestServer, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.get(fhir.base_url + path, **kwargs)


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


# --------------------------------------------------------------------------- basics


def test_base_url_is_loopback_ephemeral(server: FhirTestServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}/fhir"
    assert server.port > 0


def test_read_returns_resource(server: FhirTestServer) -> None:
    response = get(server, "/Observation/o1")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/fhir+json"
    assert response.json()["code"]["coding"][0]["code"] == "2160-0"


def test_read_unknown_is_404_operation_outcome(server: FhirTestServer) -> None:
    response = get(server, "/Observation/nope")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_path_is_404(server: FhirTestServer) -> None:
    assert requests.get(server.url("/elsewhere"), timeout=TIMEOUT).status_code == 404


def test_search_bundle_shape(server: FhirTestServer) -> None:
    response = get(server, "/Observation?patient=p1")
    bundle = response.json()
    assert response.status_code == 200
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 3)
    assert bundle["link"] == [{"relation": "self", "url": server.base_url + "/Observation?patient=p1"}]
    assert bundle["entry"][0]["fullUrl"] == server.base_url + "/Observation/o1"


def test_empty_search_has_total_zero_and_no_entries(server: FhirTestServer) -> None:
    bundle = get(server, "/Observation?patient=nobody").json()
    assert bundle["total"] == 0
    assert "entry" not in bundle


# --------------------------------------------------------------------------- search params


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("patient=p1", ["o1", "o2", "o4"]),
        ("patient=Patient/p1", ["o1", "o2", "o4"]),
        ("subject=Patient/p2", ["o3"]),
        ("patient=p1,p2", ["o1", "o2", "o3", "o4"]),
    ],
)
def test_search_by_patient(server: FhirTestServer, query: str, expected: list[str]) -> None:
    assert ids(get(server, f"/Observation?{query}").json()) == expected


def test_patient_reference_may_be_absolute_url(server: FhirTestServer) -> None:
    assert ids(get(server, "/Condition?patient=p1").json()) == ["c1", "c2"]


def test_patient_search_by_id(server: FhirTestServer) -> None:
    assert ids(get(server, "/Patient?_id=p2").json()) == ["p2"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (f"{LOINC}|2160-0", ["o1", "o3"]),
        (f"{LOINC}|", ["o1", "o2", "o3"]),
        ("2160-0", ["o1", "o3", "o4"]),
        (f"{LOINC}|718-7,http://other.example|2160-0", ["o2", "o4"]),
        (f"{SNOMED}|2160-0", []),
    ],
)
def test_search_by_code_forms(server: FhirTestServer, code: str, expected: list[str]) -> None:
    response = get(server, "/Observation", params={"code": code})
    assert ids(response.json()) == expected


def test_code_combines_with_patient(server: FhirTestServer) -> None:
    assert ids(get(server, f"/Observation?patient=p1&code={LOINC}|2160-0").json()) == ["o1"]


def test_medication_request_code_uses_medication_codeable_concept(server: FhirTestServer) -> None:
    assert ids(get(server, f"/MedicationRequest?code={RXNORM}|1049502").json()) == ["m1"]
    assert ids(get(server, "/MedicationRequest?code=999").json()) == []


def test_clinical_status_status_and_category(server: FhirTestServer) -> None:
    assert ids(get(server, "/Condition?clinical-status=active").json()) == ["c1", "c3"]
    assert ids(get(server, "/Condition?clinical-status=resolved,inactive").json()) == ["c2"]
    assert ids(get(server, "/MedicationRequest?status=active,on-hold").json()) == ["m1"]
    assert ids(get(server, "/MedicationRequest?status=stopped").json()) == []
    assert len(ids(get(server, "/Observation?category=laboratory").json())) == 4
    assert ids(get(server, "/Observation?category=vital-signs").json()) == []


def test_sort_by_date_descending(server: FhirTestServer) -> None:
    assert ids(get(server, "/Observation?_sort=-date").json()) == ["o2", "o3", "o1", "o4"]
    assert ids(get(server, "/Observation?_sort=date").json()) == ["o1", "o2", "o3", "o4"]


def test_unknown_params_are_ignored_and_recorded(server: FhirTestServer) -> None:
    bundle = get(server, "/Observation?patient=p2&date=ge2020&_include=x").json()
    assert ids(bundle) == ["o3"]
    assert server.requests[-1].ignored_params == [("date", "ge2020"), ("_include", "x")]
    assert server.ignored_params == [("date", "ge2020"), ("_include", "x")]


def test_bad_count_is_400(server: FhirTestServer) -> None:
    response = get(server, "/Observation?_count=lots")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


# --------------------------------------------------------------------------- paging


@pytest.fixture
def paged() -> Iterator[FhirTestServer]:
    with FhirTestServer() as fhir:
        fhir.add_many(observation(f"obs{i:03d}", "px", "2160-0", f"2024-01-01T00:00:{i % 60:02d}Z") for i in range(120))
        yield fhir


def walk_pages(first_url: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    url: str | None = first_url
    while url:
        response = requests.get(url, timeout=TIMEOUT, **kwargs)
        response.raise_for_status()
        pages.append(response.json())
        url = next_link(pages[-1])
    return pages


def test_paging_120_observations_in_pages_of_50(paged: FhirTestServer) -> None:
    pages = walk_pages(paged.base_url + "/Observation?patient=px&_count=50")
    assert [len(ids(p)) for p in pages] == [50, 50, 20]
    assert all(p["total"] == 120 for p in pages)
    seen = [i for p in pages for i in ids(p)]
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == {f"obs{i:03d}" for i in range(120)}
    links = [next_link(p) for p in pages]
    assert links[2] is None
    assert all(link and link.startswith(paged.base_url + "/Observation?") for link in links[:2])
    assert len(paged.requests) == 3


def test_next_link_keeps_search_params(paged: FhirTestServer) -> None:
    paged.add(observation("other", "py", "2160-0", "2024-01-01"))
    pages = walk_pages(paged.base_url + f"/Observation?patient=px&code={LOINC}|2160-0&_count=50")
    assert sum(len(ids(p)) for p in pages) == 120
    assert "patient=px" in paged.requests[1].path


def test_default_page_size_is_configurable(paged: FhirTestServer) -> None:
    assert [len(ids(p)) for p in walk_pages(paged.base_url + "/Observation")] == [50, 50, 20]
    paged.page_size = 100
    assert [len(ids(p)) for p in walk_pages(paged.base_url + "/Observation")] == [100, 20]


def test_paging_with_sort_is_stable(paged: FhirTestServer) -> None:
    pages = walk_pages(paged.base_url + "/Observation?_sort=-date&_count=50")
    seen = [i for p in pages for i in ids(p)]
    assert len(set(seen)) == 120


# --------------------------------------------------------------------------- auth & log


def test_token_required(server: FhirTestServer) -> None:
    server.require_token = "secret-token"
    unauthenticated = get(server, "/Patient/p1")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["resourceType"] == "OperationOutcome"
    assert get(server, "/Patient/p1", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = get(server, "/Patient/p1", headers={"Authorization": "Bearer secret-token"})
    assert ok.status_code == 200


def test_request_log_records_authorization_and_calls(server: FhirTestServer) -> None:
    get(server, "/Patient/p1", headers={"Authorization": "Bearer abc"})
    get(server, "/Observation?patient=p1", headers={"Authorization": "Bearer abc"})
    log = server.requests
    assert [(r.method, r.path) for r in log] == [
        ("GET", "/fhir/Patient/p1"),
        ("GET", "/fhir/Observation?patient=p1"),
    ]
    assert all(r.authorization == "Bearer abc" for r in log)
    assert log[0].header("authorization") == "Bearer abc"
    assert log[1].params == [("patient", "p1")]
    server.clear_log()
    assert server.requests == []


def test_post_is_405_and_logged(server: FhirTestServer) -> None:
    response = requests.post(server.base_url + "/Patient", json={}, timeout=TIMEOUT)
    assert response.status_code == 405
    assert server.requests[-1].method == "POST"


# --------------------------------------------------------------------------- faults


def test_fault_500(server: FhirTestServer) -> None:
    server.fault = "500"
    response = get(server, "/Patient/p1")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    server.fault = None
    assert get(server, "/Patient/p1").status_code == 200


def test_fault_garbage(server: FhirTestServer) -> None:
    server.fault = "garbage"
    response = get(server, "/Observation?patient=p1")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_fault_html(server: FhirTestServer) -> None:
    server.fault = "html"
    response = get(server, "/Observation?patient=p1")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_fault_404(server: FhirTestServer) -> None:
    server.fault = "404"
    response = get(server, "/Patient/p1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_fault_bundle_of_wrong_type(server: FhirTestServer) -> None:
    server.fault = "bundle-of-wrong-type"
    response = get(server, "/Observation?patient=p1")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)
    assert body["resourceType"] != "Bundle"


def test_fault_redirect(server: FhirTestServer) -> None:
    with FhirTestServer() as elsewhere:
        elsewhere.add({"resourceType": "Patient", "id": "p1", "gender": "other"})
        server.redirect_to = elsewhere.base_url + "/Patient/p1"
        server.set_fault("redirect")
        raw = get(server, "/Patient/p1", allow_redirects=False)
        assert raw.status_code == 302
        assert raw.headers["Location"] == elsewhere.base_url + "/Patient/p1"
        followed = get(server, "/Patient/p1")
        assert followed.json()["gender"] == "other"
        assert [r.path for r in elsewhere.requests] == ["/fhir/Patient/p1"]


def test_redirect_fault_needs_target(server: FhirTestServer) -> None:
    with pytest.raises(ValueError):
        server.set_fault("redirect")


def test_fault_slow_times_out_client_and_stop_does_not_hang() -> None:
    fhir = FhirTestServer(slow_seconds=30).start()
    fhir.add({"resourceType": "Patient", "id": "p1"})
    fhir.fault = "slow"
    with pytest.raises(requests.Timeout):
        requests.get(fhir.base_url + "/Patient/p1", timeout=0.5)
    outcome: list[BaseException] = []

    def slow_client() -> None:
        try:
            requests.get(fhir.base_url + "/Patient/p1", timeout=60)
        except requests.RequestException as exc:
            outcome.append(exc)

    in_flight = threading.Thread(target=slow_client, daemon=True)
    in_flight.start()
    time.sleep(0.2)
    started = time.monotonic()
    fhir.stop()
    assert time.monotonic() - started < 2
    in_flight.join(timeout=5)
    assert not in_flight.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_fault_slow_eventually_answers() -> None:
    with FhirTestServer(fault="slow", slow_seconds=0.3) as fhir:
        fhir.add({"resourceType": "Patient", "id": "p1"})
        started = time.monotonic()
        assert requests.get(fhir.base_url + "/Patient/p1", timeout=TIMEOUT).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_fault_huge_small_size_is_exact_valid_bundle(server: FhirTestServer) -> None:
    server.huge_bytes = 300_000
    server.fault = "huge"
    response = get(server, "/Observation?patient=p1")
    assert len(response.content) == 300_000
    assert int(response.headers["Content-Length"]) == 300_000
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["total"] == len(bundle["entry"]) > 1000


def test_fault_huge_default_is_20_mb_streamed(server: FhirTestServer) -> None:
    server.fault = "huge"
    with get(server, "/Observation", stream=True) as response:
        size = sum(len(chunk) for chunk in response.iter_content(1 << 20))
    assert size == 20 * 1024 * 1024


def test_client_abort_during_huge_does_not_break_server(server: FhirTestServer) -> None:
    server.set_fault("huge", resource_type="Observation")
    with get(server, "/Observation", stream=True) as response:
        next(response.iter_content(4096))
    assert get(server, "/Patient/p1").status_code == 200


def test_fault_per_resource_type(server: FhirTestServer) -> None:
    server.set_fault("500", resource_type="Observation")
    assert get(server, "/Observation?patient=p1").status_code == 500
    assert get(server, "/Condition?patient=p1").status_code == 200
    server.fault = "404"
    assert get(server, "/Observation?patient=p1").status_code == 500  # per-type wins
    assert get(server, "/Condition?patient=p1").status_code == 404
    server.clear_faults()
    assert get(server, "/Observation?patient=p1").status_code == 200


def test_unknown_fault_rejected(server: FhirTestServer) -> None:
    with pytest.raises(ValueError):
        server.fault = "teapot"  # type: ignore[assignment]


def test_fault_mid_pagination_on_page_2(paged: FhirTestServer) -> None:
    paged.fault = "500"
    paged.fail_on_page = 2
    first = requests.get(paged.base_url + "/Observation?_count=50", timeout=TIMEOUT)
    assert first.status_code == 200
    second_url = next_link(first.json())
    assert second_url is not None
    assert requests.get(second_url, timeout=TIMEOUT).status_code == 500
    third = requests.get(paged.base_url + "/Observation?_count=50&_offset=100", timeout=TIMEOUT)
    assert len(ids(third.json())) == 20
    assert requests.get(paged.base_url + "/Observation/obs000", timeout=TIMEOUT).status_code == 200


# --------------------------------------------------------------------------- static JSON


def test_serve_json_static(server: FhirTestServer) -> None:
    jwks = {"keys": [{"kty": "EC", "kid": "k1", "crv": "P-384", "x": "x", "y": "y"}]}
    server.serve_json("/jwks.json", jwks)
    server.require_token = "t"  # static documents stay public
    response = requests.get(server.url("/jwks.json"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == jwks
    server.set_fault("500", resource_type="/jwks.json")
    assert requests.get(server.url("/jwks.json"), timeout=TIMEOUT).status_code == 500


# --------------------------------------------------------------------------- lifecycle


def test_lifecycle() -> None:
    fhir = FhirTestServer()
    with pytest.raises(RuntimeError):
        _ = fhir.base_url
    fhir.start()
    url = fhir.base_url + "/Patient"
    assert requests.get(url, timeout=TIMEOUT).status_code == 200
    with pytest.raises(RuntimeError):
        fhir.start()
    fhir.stop()
    fhir.stop()
    assert not fhir.running
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=TIMEOUT)


# --------------------------------------------------------------------------- fixture data


def test_load_ahrq_exec_data_and_search_conditions() -> None:
    """The AHRQ file is ``{"returnExpressions", "data": [resources]}``, not a Bundle;
    its references are ``urn:uuid:`` and are resolved to ``Patient/<id>`` on load."""
    raw = json.loads(AHRQ_ADOLFO.read_text())
    patient_id = next(r["id"] for r in raw["data"] if r["resourceType"] == "Patient")
    expected = sorted(r["id"] for r in raw["data"] if r["resourceType"] == "Condition")
    with FhirTestServer() as fhir:
        assert fhir.load_file(AHRQ_ADOLFO) == len(raw["data"])
        bundle = requests.get(f"{fhir.base_url}/Condition?patient={patient_id}", timeout=TIMEOUT).json()
        assert sorted(ids(bundle)) == expected
        assert bundle["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
        patient = requests.get(f"{fhir.base_url}/Patient/{patient_id}", timeout=TIMEOUT)
        assert patient.json()["id"] == patient_id


def test_load_bundle_from_fixture() -> None:
    bundle = json.loads(MCODE_BUNDLE.read_text())
    with FhirTestServer() as fhir:
        assert fhir.load_bundle(bundle) == len(bundle["entry"])
        response = requests.get(
            fhir.base_url + "/Condition?patient=mCODETrialMatchingPatientExample01", timeout=TIMEOUT
        )
        assert response.json()["total"] == 4
    with pytest.raises(ValueError):
        FhirTestServer().load_bundle({"resourceType": "Patient"})


def test_load_ndjson_bulk_conditions() -> None:
    lines = [json.loads(line) for line in BULK_CONDITIONS.read_text().splitlines() if line.strip()]
    by_patient = Counter(c["subject"]["reference"].split("/")[-1] for c in lines)
    patient_id, expected = by_patient.most_common(1)[0]
    sepsis = sum(1 for c in lines if any(cd["code"] == "91302008" for cd in c["code"]["coding"]))
    with FhirTestServer() as fhir:
        assert fhir.load_ndjson(BULK_CONDITIONS) == len(lines)
        pages = walk_pages(f"{fhir.base_url}/Condition?patient={patient_id}&_count=20")
        assert sum(len(ids(p)) for p in pages) == expected
        assert pages[0]["total"] == expected
        sepsis_bundle = requests.get(f"{fhir.base_url}/Condition?code={SNOMED}|91302008", timeout=TIMEOUT)
        assert sepsis_bundle.json()["total"] == sepsis > 0
