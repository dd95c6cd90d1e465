"""``spinecds coverage``: a site sees which of its resources the rules recognise and which codes they miss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SHARED

from service.cli import main

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"


def _med(rid: str, **drug: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        **drug,
    }


def _rx(code: str, name: str) -> dict[str, Any]:
    return {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": name}]}}


SITE_BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": r}
        for r in [
            {"resourceType": "Patient", "id": "p"},
            _med("m1", **_rx("1049621", "oxycodone hydrochloride 5 MG Oral Tablet")),
            _med("m2", **_rx("309362", "Clopidogrel 75 MG Oral Tablet")),
            _med("m3", **_rx("309362", "Clopidogrel 75 MG Oral Tablet")),
            _med("m4", medicationReference={"reference": "Medication/not-sent"}),
            _med("m5", medicationReference={"reference": "Medication/warf"}),
            {
                "resourceType": "Medication",
                "id": "warf",
                "code": {
                    "coding": [{"system": RXNORM, "code": "855332", "display": "Warfarin Sodium 5 MG Oral Tablet"}]
                },
            },
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "26515-7"}]},
                "valueQuantity": {"value": 45, "unit": "x10(9)/l"},
            },
            {"resourceType": "Encounter", "id": "e1"},
        ]
    ],
}


def run_json(capsys: pytest.CaptureFixture[str], *paths: Path) -> dict[str, Any]:
    assert main(["coverage", "--json", *map(str, paths)]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_site_bundle_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(SITE_BUNDLE))
    report = run_json(capsys, path)
    meds = report["types"]["MedicationRequest"]
    assert meds["total"] == 5 and meds["recognised"] == 2
    assert meds["byValueSet"]["analgesic-step3"] == {"count": 1, "facts": ["F-ANALG-STEP"]}
    assert meds["byValueSet"]["anticoagulant"]["count"] == 1  # through medicationReference
    assert meds["unrecognised"] == 2 and meds["unrecognisedBySystem"] == {RXNORM: 2}
    assert meds["topUnrecognisedCodes"][0] == {
        "system": RXNORM,
        "code": "309362",
        "display": "Clopidogrel 75 MG Oral Tablet",
        "count": 2,
    }
    assert meds["unresolvedMedicationReference"] == 1
    labs = report["types"]["Observation"]
    assert labs["byValueSet"]["lab-platelets"]["count"] == 1
    assert labs["unitNotRecognised"] == [{"valueSet": "lab-platelets", "unit": "x10(9)/l", "count": 1}]
    assert report["notReadByTheRules"] == {"Encounter": 1} and report["patients"] == 1

    assert main(["coverage", str(path)]) == 0
    text = capsys.readouterr().out
    assert "2 MedicationRequests with RxNorm codes no ValueSet contains" in text
    assert "RxNorm 309362  Clopidogrel 75 MG Oral Tablet" in text
    assert "1 MedicationRequests reference a Medication that is not in the data" in text
    assert "lab-platelets values with unit 'x10(9)/l' not recognised" in text


def test_shared_fixtures_synthea_bundles_and_bulk_ndjson(capsys: pytest.CaptureFixture[str]) -> None:
    bulk = SHARED / "fixtures" / "smart_bulk_10_patients"
    synthea = SHARED / "fixtures" / "fhir_data_pipes_synthea_large"
    report = run_json(capsys, bulk, synthea)
    assert report["files"] == 3 and report["patients"] == 15
    conditions = report["types"]["Condition"]
    assert conditions["total"] == conditions["recognised"] + conditions["unrecognised"] + conditions["withoutCode"]
    assert conditions["recognised"] >= 1 and conditions["unrecognised"] > 100
    assert report["types"]["Procedure"]["topUnrecognisedCodes"]


def test_patient_case_files_are_mostly_recognised(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, ROOT / "tests" / "cases" / "cat-md-15-sup-04-sup-11-worked-example.json")
    assert report["types"]["Condition"]["unrecognised"] == 0


def test_an_unreadable_file_is_named_and_the_rest_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.json").write_text(json.dumps(SITE_BUNDLE))
    (tmp_path / "notes.json").write_text('{"a": 1}')
    assert main(["coverage", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "MedicationRequest: 5, recognised 2" in captured.out
    assert "notes.json: not a Bundle" in captured.err


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"a": 1}'])
def test_bad_input_exits_2(tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["coverage", str(path)]) == 2
    assert "spinecds coverage:" in capsys.readouterr().err
