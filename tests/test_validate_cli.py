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
