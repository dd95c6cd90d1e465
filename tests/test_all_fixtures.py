"""Every FHIR JSON file under ../shared/fixtures goes through the service as a patient-view request.

Each file (or NDJSON folder) is split into patients (service.cds.request_builder.split_by_patient); a
patient's resources are put under our prefetch keys (support.cases.build_request), so nothing has to be
fetched. Resources whose patient is not in the file get a bare Patient {id} (the R4 core examples reference
Patient/example and friends without shipping them). Types no template asks for (Encounter, Claim, ...)
travel in the extra key, as from an EHR that sends its whole chart. Expected: 200, the response
passes the CDS Hooks response checker, and the two mCODE bone-metastasis patients get exactly the
card groups documented in docs/conformance.md. FSH sources and the code lists are not FHIR JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FIXTURES, ROOT
from support.cases import build_request
from support.cds_checker import check_cards_response, errors_only

from service.cds.request_builder import split_by_patient
from service.facts.vocabulary import Vocabulary

VOCAB = Vocabulary.load(ROOT / "fhir_profiles")
NOT_FHIR = {"feedback.json"}  # CDS Hooks feedback bodies (and feedback-*.json): test_fixture_requests sends them
NOT_FHIR_DIRS = {"service_definitions", "code_lists", "mcode_ig_fsh", "sandbox_cds_services"}
MCODE = FIXTURES / "mcode_trial_matching_app"

# mCODE bone-metastasis patients: card (decision) -> rule IDs (why: docs/conformance.md "mCODE patients").
# Both: secondary malignant neoplasm of bone (SNOMED 94222008) without bodySite -> F-MET true; the breast
# primary (SNOMED 408643008, listed in primary-cancer and primary-hormone-sensitive) -> F-PRIM known and
# hormone-sensitive (SUP-10); ECOG from 2019 is stale; no fracture, pain, exam, SINS or imaging; a
# medication list without a bone-modifying agent.
MCODE_GROUPS = {
    "document-next": {"MD-05", "MD-08", "MD-09", "MD-10", "MD-13", "PRG-01", "PRG-03"},
    "supportive": {"SUP-07", "SUP-10"},
}
MCODE_EXPECTED = {"TrialMatching_Patient01.json": MCODE_GROUPS, "TrialMatching_Patient02.json": MCODE_GROUPS}


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, dict):
        return
    if "hook" in doc or "prefetch" in doc:  # CDS Hooks request (or its prefetch): prefetch, draft orders
        for value in (doc.get("prefetch") or {}).values():
            yield from _resources(value)
        context = doc.get("context") or {}
        yield from _resources(context.get("draftOrders"))
        if isinstance(context.get("patientId"), str):
            yield {"resourceType": "Patient", "id": context["patientId"]}
        return
    if doc.get("resourceType") == "Bundle":
        for entry in doc.get("entry") or []:
            yield from _resources(entry.get("resource"))
        return
    if isinstance(doc.get("resourceType"), str):
        yield doc


def _units() -> dict[str, list[dict[str, Any]]]:
    """'relative path' -> resources, for every FHIR JSON file or NDJSON folder."""
    units: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(FIXTURES.rglob("*")):
        rel = path.relative_to(FIXTURES)
        if (
            not path.is_file()
            or set(rel.parts) & NOT_FHIR_DIRS
            or path.name in NOT_FHIR
            or path.name.startswith("feedback")
        ):
            continue
        if path.suffix == ".ndjson":
            lines = path.read_text(encoding="utf-8").splitlines()
            units.setdefault(str(rel.parent) + "/", []).extend(json.loads(x) for x in lines if x.strip())
        elif path.suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            prefetch_data = any(isinstance(v, dict) for v in (doc.get("prefetch") or {}).values())
            if "resourceType" in doc or "hook" in doc or prefetch_data:
                units[str(rel)] = list(_resources(doc))
            elif isinstance(doc.get("data"), list):  # AHRQ exec data: {"data": [resources], ...}
                units[str(rel)] = [r for item in doc["data"] for r in _resources(item)]
    return units


# units that hold no patient-view data at all
NO_PATIENT_DATA = {
    "cds_hooks_examples/cds_hooks_org_examples/opioid-cdc-request-order-sign.json": "DSTU2 MedicationOrder only",
    "cds_hooks_examples/hl7_spec/hook-request-with-extension.json": "no patientId and no resources",
    "cds_hooks_examples/hl7_spec/prefetch-data-example.json": "Patient without id (snipped spec example)",
}


def _cases() -> list[tuple[str, dict[str, Any]]]:
    """(id, case) per patient of every unit; the R4 core examples are one unit (they cross-reference)."""
    units = _units()
    core = [r for key in sorted(units) if key.startswith("fhir_r4_core_examples/") for r in units.pop(key)]
    units["fhir_r4_core_examples/"] = core
    out = []
    for key, resources in sorted(units.items()):
        for pid, own in sorted(split_by_patient(resources).items()):
            if not any(r["resourceType"] == "Patient" for r in own):
                own = [{"resourceType": "Patient", "id": pid}, *own]
            out.append((f"{key}#{pid[:12]}", {"resources": own}))
    return out


CASES = _cases()


def test_every_fixture_file_is_covered() -> None:
    units = _units()
    json_files = [
        p
        for p in FIXTURES.rglob("*.json")
        if not set(p.relative_to(FIXTURES).parts) & NOT_FHIR_DIRS
        and p.name not in NOT_FHIR
        and not p.name.startswith("feedback")
    ]
    # every JSON file is either FHIR (a unit) or a CDS Hooks response/discovery example (not a request)
    for p in json_files:
        rel = str(p.relative_to(FIXTURES))
        doc = json.loads(p.read_text(encoding="utf-8"))
        response_example = {"cards", "services", "summary", "systemActions", "prefetch"} & set(doc)
        assert rel in units or response_example, f"{rel} is neither FHIR nor a CDS Hooks response example"
    covered = {case_id.split("#", 1)[0] for case_id, _ in CASES}
    for rel in units:
        key = rel if not rel.startswith("fhir_r4_core_examples/") else "fhir_r4_core_examples/"
        assert key in covered or rel in NO_PATIENT_DATA, rel
    assert len(CASES) >= 35  # 10 bulk + 7 Synthea + 2 mCODE + requests + core examples


@pytest.mark.parametrize("case_id,case", CASES, ids=[c[0] for c in CASES])
def test_fixture_patient_through_patient_view(client: Any, case_id: str, case: dict[str, Any]) -> None:
    service, body = build_request(case)
    started = time.perf_counter()
    response = client.post(f"/cds-services/{service}", json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (case_id, response.get_json())
    cards = response.get_json()
    assert errors_only(check_cards_response(cards, require_uuids=True)) == []
    assert elapsed < 10, f"{case_id}: {elapsed:.1f} s"
    groups = _card_groups(cards)
    if _in_scope(case):
        # spinal disease in the data: it is recognised (F-MET/F-VCF/F-SCC-SYMPT true in a card) and answered
        facts = {(f["id"], f["value"]) for c in cards["cards"] for f in c["extension"]["org.spinecds.trace"]["facts"]}
        assert facts & {("F-MET", True), ("F-VCF", True), ("F-SCC-SYMPT", True)}, (case_id, sorted(groups))
    else:
        # no spinal disease: no spine-metastasis pathway. Known exceptions, not asserted here: augmentation
        # cards (VA-07 infection, MD-03 coagulation work-up) still fire without a fracture or metastasis
        assert not set(groups) & SPINE_PATHWAY, (case_id, sorted(groups))


SCOPE_VALUESETS = ("spinal-metastasis", "pathological-vcf", "cord-compression")
SPINE_PATHWAY = {
    "emergency-mscc",
    "rt-palliative",
    "rt-sbrt",
    "rt-reirradiation",
    "spine-stability",
    "spine-surgery",
    "analgesia",
    "data-gaps",
    "prognosis",
    "mdt-review",
}


def _in_scope(case: dict[str, Any]) -> bool:
    """The patient has a spinal/bone metastasis, a pathological vertebral fracture or a cord compression coded."""
    conditions = [r for r in case["resources"] if r["resourceType"] == "Condition"]
    return any(VOCAB.concept_in(vs, c.get("code")) for vs in SCOPE_VALUESETS for c in conditions)


def test_fixtures_in_scope_are_the_mcode_bone_metastasis_patients() -> None:
    """The positive check above runs on these (a fixture change that drops them is seen)."""
    in_scope = sorted(case_id.split("#", 1)[0] for case_id, case in CASES if _in_scope(case))
    assert in_scope == sorted(f"mcode_trial_matching_app/{name}" for name in MCODE_EXPECTED)


def _card_groups(cards: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for card in cards["cards"]:
        trace = card["extension"]["org.spinecds.trace"]
        out[trace["decision"]] = set(trace["rules"])
    return out


@pytest.mark.parametrize("name", sorted(MCODE_EXPECTED))
def test_mcode_bone_metastasis_patients_get_the_cards_their_data_supports(client: Any, name: str) -> None:
    [(case_id, case)] = [c for c in CASES if c[0].startswith(f"mcode_trial_matching_app/{name}#")]
    service, body = build_request(case)
    cards = client.post(f"/cds-services/{service}", json=body).get_json()
    assert _card_groups(cards) == MCODE_EXPECTED[name]
    facts = {f["id"]: f["value"] for c in cards["cards"] for f in c["extension"]["org.spinecds.trace"]["facts"]}
    assert facts["F-MET"] is True and facts["F-PRIM-HORMONE"] is True and facts["F-ECOG"] == "unknown"
    assert facts["F-BMA"] is False
