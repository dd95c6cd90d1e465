"""``spinecds validate``: the real command on fixture bundles, NDJSON folders and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, ROOT, load_json
from support.cases import CASES_DIR

MCODE = FIXTURES / "mcode_trial_matching_app"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "validate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _bundle_of_case(tmp_path: Path, name: str) -> Path:
    case = load_json(CASES_DIR / f"{name}.json")
    path = tmp_path / f"{name}.json"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in case["resources"]]}
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def test_mcode_bundle_reports_the_missing_vertebral_level() -> None:
    result = _run(str(MCODE / "TrialMatching_Patient01.json"))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert (
        "Condition/mCODETrialMatchingSecondaryCancerCondition03PatientExample01: secondary cancer condition of the "
        "spine without bodySite: vertebral level unknown" in "\n".join(lines)
    )
    # the breast primary (SNOMED 408643008) is in primary-cancer: it meets the profile, no finding
    assert "Condition/mCODETrialMatchingPrimaryCancerConditionExample01: meets spine-primary-cancer-condition" in lines
    assert (
        "Observation/mCODETrialMatchingECOGPerformanceStatusPatientExample01: meets spine-ecog-performance-status"
        in lines
    )
    # the liver and lung metastases are not spine profiles: no finding for them
    assert not any("SecondaryCancerConditionPatientExample01:" in line for line in lines)
    assert lines[-1].startswith("18 resources, 3 meant for a spinecds profile, 2 meet it, 1 finding(s)")


def test_json_report() -> None:
    result = _run("--json", str(MCODE / "TrialMatching_Patient02.json"))
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["summary"] == {"resources": 29, "matchingProfile": 3, "meetingProfile": 2, "findings": 1}
    by_ref: dict[str, Any] = {r["resource"]: r for r in doc["resources"]}
    ecog = by_ref["Observation/mCODETrialMatchingECOGPerformanceStatusPatientExample02"]
    assert ecog == {"resource": ecog["resource"], "meets": ["spine-ecog-performance-status"], "findings": []}


def test_complete_case_meets_its_profiles_and_exits_0(tmp_path: Path) -> None:
    result = _run("--json", str(_bundle_of_case(tmp_path, "core-seed003-case")))
    assert result.returncode == 0, result.stdout
    meets = {p for r in json.loads(result.stdout)["resources"] for p in r["meets"]}
    assert {
        "spine-primary-cancer-condition",
        "spine-secondary-cancer-condition",
        "spine-pathological-fracture",
        "spine-fracture-acuity",
        "spine-pain-severity",
    } <= meets


def test_broken_mapping_is_found_resource_by_resource(tmp_path: Path) -> None:
    path = _bundle_of_case(tmp_path, "core-seed003-case")
    bundle = load_json(path)
    for entry in bundle["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "Condition":
            r.pop("bodySite", None)
        if r["resourceType"] == "Observation":
            r.pop("effectiveDateTime", None)
            r.pop("effectivePeriod", None)
            if "valueInteger" in r:
                r["valueInteger"] = 14  # NRS outside 0..10
    path.write_text(json.dumps(bundle), encoding="utf-8")
    result = _run(str(path))
    assert result.returncode == 1
    out = result.stdout
    assert "pathological vertebral compression fracture without bodySite: vertebral level unknown" in out
    assert "pain severity NRS 0-10 without effective: the finding is undated" in out
    assert "valueInteger 14 outside 0..10" in out


def test_ndjson_folder_without_findings_exits_0() -> None:
    """Ten Synthea patients: the breast-cancer primary (SNOMED 254837009) and the non-small cell lung cancer
    primary (254637007, recognised through the VSAC eCQM Cancer value set) meet their profile; no findings."""
    result = _run(str(FIXTURES / "smart_bulk_10_patients"))
    assert result.returncode == 0, result.stdout[-500:]
    assert result.stdout.splitlines()[-1].startswith(
        "2624 resources, 2 meant for a spinecds profile, 2 meet it, 0 finding"
    )


@pytest.mark.parametrize(
    "content,message",
    [(None, "no such file"), ("{not json", "invalid JSON"), ('{"hello": 1}', "no resourceType")],
)
def test_bad_input_exits_2(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = _run(str(path))
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""


def test_ndjson_line_error_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "bulk"
    folder.mkdir()
    (folder / "Condition.ndjson").write_text('{"resourceType": "Condition", "id": "1"}\n{oops\n', encoding="utf-8")
    result = _run(str(folder))
    assert result.returncode == 2 and "Condition.ndjson:2" in result.stderr


PT = {"reference": "Patient/p1"}
PLT = {"coding": [{"system": "http://loinc.org", "code": "777-3"}]}
GOOD_OBS = {
    "resourceType": "Observation",
    "id": "plt",
    "status": "final",
    "code": PLT,
    "subject": PT,
    "effectiveDateTime": "2026-05-30",
    "valueQuantity": {"value": 180, "unit": "10*9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L"},
}
GOOD_COND = {
    "resourceType": "Condition",
    "id": "sepsis",
    "subject": PT,
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "A41.9"}]},
    "onsetDateTime": "2026-05-20",
}


def _without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


# (broken resource, a finding every independent R4 validator gives for it)
BROKEN = [
    (_without(GOOD_COND, "subject"), "R4: Condition.subject: required by R4 (min 1) but absent"),
    (_without(GOOD_OBS, "status"), "R4: Observation.status: required by R4 (min 1) but absent"),
    ({**GOOD_OBS, "effectiveDateTime": "2026-13-45"}, "R4: effectiveDateTime: not a valid FHIR dateTime"),
    ({**GOOD_OBS, "effectiveDateTime": "03/05/2026"}, "R4: effectiveDateTime: not a valid FHIR dateTime"),
    (
        {**_without(GOOD_OBS, "valueQuantity"), "valueInteger": "7"},
        "R4: valueInteger: wrong JSON type (expected number)",
    ),
    ({**GOOD_OBS, "interpretaton": [{"text": "low"}]}, "R4: Observation: unknown element(s) interpretaton"),
    # R4B-only content, which the R4B models of the intake would accept: R4 forbids it
    (
        {**_without(GOOD_OBS, "valueQuantity"), "valueCodeableReference": {"concept": {"text": "x"}}},
        "R4: Observation: unknown element(s) valueCodeableReference",
    ),
    (
        {**GOOD_OBS, "effectivePeriod": {"start": "2026-05-30", "end": "2026-05-01"}, "effectiveDateTime": None},
        "R4: Observation.effective.ofType(Period): R4 invariant per-1 violated",
    ),
    (
        {**GOOD_OBS, "valueQuantity": {"value": 180, "code": "10*9/L"}},
        "R4: Observation.value.ofType(Quantity): R4 invariant qty-3 violated",
    ),
    ({**GOOD_OBS, "dataAbsentReason": {"text": "error"}}, "R4: Observation: R4 invariant obs-6 violated"),
    ({**GOOD_COND, "code": {}}, "R4: Condition.code: empty object"),
    (
        {**GOOD_OBS, "code": {"coding": [{"system": "http://loinc.org/", "code": "777-3"}]}},
        "code.coding: system 'http://loinc.org/' is not the FHIR URI of LOINC (http://loinc.org)",
    ),
    (
        {**GOOD_COND, "code": {"coding": [{"system": "http://snomed.org/sct", "code": "91302008"}]}},
        "code.coding: system 'http://snomed.org/sct' is not the FHIR URI of SNOMED CT (http://snomed.info/sct)",
    ),
    (
        {**GOOD_COND, "code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "A41.9"}]}},
        "is not the FHIR URI of ICD-10-CM (http://hl7.org/fhir/sid/icd-10-cm)",
    ),
    # the service's own intake skips this one: the report says so, with the intake's reason
    ({**GOOD_COND, "onsetDateTime": "2026-02-30"}, "the service skips this resource: Condition failed R4 validation"),
]


@pytest.mark.parametrize(("resource", "finding"), BROKEN, ids=[f for _, f in BROKEN])
def test_broken_resources_are_reported_like_independent_validators_do(
    resource: dict[str, Any], finding: str
) -> None:
    from service.conformance.profiles import ProfileSet
    from service.conformance.validate import validate_resources

    resource = {k: v for k, v in resource.items() if v is not None}
    (report,) = validate_resources([resource], ProfileSet.load(ROOT / "fhir_profiles"))
    assert any(f.startswith(finding) or finding in f for f in report.findings), report.findings
    assert report.meets == []  # a resource that is not valid R4, or that the intake skips, meets no profile


@pytest.mark.parametrize("resource", [GOOD_OBS, GOOD_COND], ids=["observation", "condition"])
def test_valid_resources_have_no_base_finding(resource: dict[str, Any]) -> None:
    from service.conformance.profiles import ProfileSet
    from service.conformance.validate import validate_resources

    (report,) = validate_resources([resource], ProfileSet.load(ROOT / "fhir_profiles"))
    assert not [f for f in report.findings if f.startswith("R4:") or "skips" in f or "FHIR URI" in f]


def test_a_wrong_system_url_is_an_error_and_exits_1(tmp_path: Path) -> None:
    bad = {**GOOD_COND, "code": {"coding": [{"system": "http://snomed.org/sct", "code": "91302008"}]}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    result = _run(str(path))
    assert result.returncode == 1
    assert "is not the FHIR URI of SNOMED CT" in result.stdout
    assert "91302008" not in result.stdout  # the report names elements and systems, never codes or values
