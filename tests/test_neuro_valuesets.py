"""The neurology, imaging and procedure ValueSets: generated from their sources, and every SNOMED CT id valid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT

from service.facts.vocabulary import Vocabulary

PROFILES = ROOT / "fhir_profiles"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"

# Verhoeff tables (SNOMED CT identifiers end in a Verhoeff check digit; SNOMED CT TIG 6.2)
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(number: str) -> bool:
    check = 0
    for i, digit in enumerate(reversed(number)):
        check = _D[check][_P[i % 8][int(digit)]]
    return check == 0


def snomed_ids(node: Any, system: str | None = None) -> Iterator[str]:
    """Every code under a SNOMED CT system in a FHIR JSON tree (codings, compose includes, patterns)."""
    if isinstance(node, dict):
        here = node.get("system", system)
        if here == SCT and isinstance(node.get("code"), str):
            yield node["code"]
        for value in node.values():
            yield from snomed_ids(value, here if isinstance(here, str) else system)
    elif isinstance(node, list):
        for item in node:
            yield from snomed_ids(item, system)


def test_verhoeff_check_rejects_a_bad_id() -> None:
    assert verhoeff_ok("71286001") and verhoeff_ok("94222008") and verhoeff_ok("1217123003")
    assert not verhoeff_ok("447766008")  # the invalid "vertebral augmentation" code of issue 18
    assert not verhoeff_ok("71286002")


def test_every_snomed_id_in_fhir_profiles_passes_its_check_digit() -> None:
    bad = {}
    count = 0
    for path in sorted(PROFILES.glob("*.json")):
        for code in snomed_ids(json.loads(path.read_text(encoding="utf-8"))):
            count += 1
            if not (code.isdigit() and 6 <= len(code) <= 18 and verhoeff_ok(code)):
                bad.setdefault(path.name, []).append(code)
    assert count > 50  # the walk really found the SNOMED codes
    assert bad == {}


def test_generated_valuesets_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_neuro_valuesets.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(PROFILES)


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def test_neuro_deficit_by_hierarchy_and_deliberate_exclusions(vocab: Vocabulary) -> None:
    for code in ("G82.22", "G82.20", "G82.53", "G83.11", "G99.2", "R33.9", "R33.8", "R32", "R15.9", "R26.2", "R29.898"):
        assert vocab.concept_in("neuro-deficit", _cc(ICD, code)), code
    for code in ("R33.0", "M62.81", "R53.1", "G83.5", "G83.84", "R20.2", "R26.81"):
        assert not vocab.concept_in("neuro-deficit", _cc(ICD, code)), code
    assert vocab.concept_in("neuro-deficit", _cc(SCT, "267064002"))


def test_cord_compression_codes(vocab: Vocabulary) -> None:
    for system, code in ((ICD, "G95.20"), (ICD, "G95.29"), (ICD, "G83.4"), (SCT, "71286001"), (SCT, "192970008")):
        assert vocab.concept_in("cord-compression", _cc(system, code)), code
    assert not vocab.concept_in("cord-compression", _cc(SCT, "58718002"))  # rheumatic fever


def test_every_spine_region_counts_as_axial_imaging(vocab: Vocabulary) -> None:
    loinc = "http://loinc.org"
    cpt = "http://www.ama-assn.org/go/cpt"
    for code in (
        "24968-0",
        "24980-5",
        "24935-9",
        "36059-4",
        "30854-4",
        "36531-2",
    ):  # MR lumbar/thoracic/cervical/sacrum/whole
        assert vocab.concept_in("axial-spine-imaging", _cc(loinc, code)), code
        assert vocab.concept_in("spine-mri", _cc(loinc, code)), code
    for code in ("24963-1", "24978-9", "24932-6"):  # CT lumbar/thoracic/cervical
        assert vocab.concept_in("axial-spine-imaging", _cc(loinc, code)) and not vocab.concept_in(
            "spine-mri", _cc(loinc, code)
        )
    assert vocab.concept_in("spine-mri", _cc(cpt, "72148")) and vocab.concept_in(
        "axial-spine-imaging", _cc(cpt, "72131")
    )
    assert not vocab.concept_in("axial-spine-imaging", _cc(loinc, "24947-4"))  # RF cervical myelogram: not axial
    assert not vocab.concept_in("axial-spine-imaging", _cc(loinc, "35933-1"))  # CT guidance for vertebroplasty


def test_augmentation_codes_are_cpt(vocab: Vocabulary) -> None:
    cpt = "http://www.ama-assn.org/go/cpt"
    assert all(vocab.concept_in("vertebral-augmentation-procedure", _cc(cpt, str(c))) for c in range(22510, 22516))
    assert [c for c in range(22510, 22516) if vocab.concept_in("kyphoplasty-procedure", _cc(cpt, str(c)))] == [
        22513,
        22514,
        22515,
    ]
    for code in ("447766008", "429616001", "392010000"):
        assert not vocab.concept_in("vertebral-augmentation-procedure", _cc(SCT, code))
