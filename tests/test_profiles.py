"""fhir_profiles/: every file is valid R4 (R4B models), canonical URLs unique, and the terminology the
fact extractor matches on is exactly what the ValueSets and profile bindings cover."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, ROOT
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet
from support.cases import load_cases

from service.conformance.fhir_package import resource_files
from service.conformance.profiles import ProfileSet
from service.engine.ruleset import load_rulebase
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.vocabulary import LEVEL_DESIGNATION, LOCAL_SYSTEM, Vocabulary

PROFILES = ROOT / "fhir_profiles"
BASE = "https://fhir.spinecds.org"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
MODELS = {"StructureDefinition": StructureDefinition, "ValueSet": ValueSet, "CodeSystem": CodeSystem}


def _files() -> list[Path]:
    """The FHIR resources of the package (package.json and .index.json are its manifest)."""
    return resource_files(PROFILES)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _structure_definitions() -> list[dict[str, Any]]:
    return [_load(p) for p in sorted(PROFILES.glob("StructureDefinition-*.json"))]


def _bound_valuesets(sd: dict[str, Any]) -> set[str]:
    return {str(e["binding"]["valueSet"]).rsplit("/", 1)[-1] for e in sd["differential"]["element"] if "binding" in e}


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_file_is_valid_r4b(path: Path) -> None:
    data = _load(path)
    model = MODELS[data["resourceType"]].model_validate(data)
    assert model.id and path.name == f"{data['resourceType']}-{model.id}.json"


def test_canonical_urls_unique_versioned_and_indexed() -> None:
    docs = [_load(p) for p in _files()]
    urls = [d["url"] for d in docs]
    assert len(urls) == len(set(urls))
    for d in docs:
        assert d["url"] == f"{BASE}/{d['resourceType']}/{d['id']}", d["id"]
        assert d.get("version"), d["id"]
    index = _load(PROFILES / ".index.json")
    assert {e["filename"] for e in index["files"]} == {p.name for p in _files()}
    for e in index["files"]:
        assert _load(PROFILES / e["filename"])["url"] == e["url"]


def test_profiles_are_draft_differentials_on_mcode_where_it_has_one() -> None:
    sds = {sd["id"]: sd for sd in _structure_definitions()}
    for sd in sds.values():
        assert sd["status"] == "draft" and sd["derivation"] == "constraint" and sd["fhirVersion"] == "4.0.1"
        assert sd["differential"]["element"][0]["path"] == sd["type"]
    expected_mcode = {
        "spine-primary-cancer-condition": "mcode-primary-cancer-condition",
        "spine-secondary-cancer-condition": "mcode-secondary-cancer-condition",
        "spine-ecog-performance-status": "mcode-ecog-performance-status",
        "spine-karnofsky-performance-status": "mcode-karnofsky-performance-status",
        "spine-radiotherapy-course-summary": "mcode-radiotherapy-course-summary",
    }
    for pid, base in expected_mcode.items():
        assert sds[pid]["baseDefinition"] == MCODE + base
    # the mCODE profile names exist in the mCODE IG sources we have
    fsh = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT.parent / "shared/fixtures/mcode_ig_fsh").glob("*.fsh"))
    for base in (
        "PrimaryCancerCondition",
        "SecondaryCancerCondition",
        "ECOGPerformanceStatus",
        "KarnofskyPerformanceStatus",
    ):
        assert base in fsh
    # own profiles for what mCODE has no profile for
    for pid in ("spine-sins", "spine-escc-grade", "spine-pain-severity", "spine-fracture-acuity"):
        assert not sds[pid]["baseDefinition"].startswith(MCODE)
    vertebral = [
        e
        for e in sds["spine-secondary-cancer-condition"]["differential"]["element"]
        if e["path"] == "Condition.bodySite"
    ]
    assert vertebral[0]["min"] == 1 and vertebral[0]["binding"]["valueSet"] == f"{BASE}/ValueSet/vertebral-levels"


def _local_codes_in_extractor() -> set[str]:
    """Every local code the extractor matches on: literal arguments, and the codes it reads from rules/facts.yaml
    (a score's summed components)."""
    source = (ROOT / "service/facts/extract.py").read_text(encoding="utf-8")
    codes = json.loads((PROFILES / "CodeSystem-spinecds-local.json").read_text(encoding="utf-8"))
    local = {c["code"] for c in codes["concept"]}
    found = {
        node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant) and node.value in local
    }
    declared = {code for f in load_rulebase(ROOT / "rules").facts.values() for s in f.sources for code in s.local_codes}
    return found | declared


def test_every_local_code_the_extractor_reads_is_in_a_valueset_or_profile_pattern() -> None:
    vocab = Vocabulary.load(PROFILES)
    in_valuesets = {code for vid in vocab.ids for (system, code) in vocab.valueset(vid).codes if system == LOCAL_SYSTEM}
    patterns = {
        e["patternCodeableConcept"]["coding"][0]["code"]
        for sd in _structure_definitions()
        for e in sd["differential"]["element"]
        if "patternCodeableConcept" in e
    }
    read = _local_codes_in_extractor()
    assert len(read) > 40  # the AST walk really found the extractor's codes
    levels = {f"C{i}" for i in range(1, 8)} | {f"T{i}" for i in range(1, 13)} | {f"L{i}" for i in range(1, 6)}
    assert read - in_valuesets - patterns - levels - {LEVEL_DESIGNATION} == set()


def _used_by_extractor() -> set[str]:
    """ValueSets the extractor consulted over every patient case (vocab.used), plus level designations."""
    vocab = Vocabulary.load(PROFILES)
    base = load_rulebase(ROOT / "rules")
    thresholds = {k: float(v["value"]) for k, v in base.thresholds.items()}
    for _name, case in load_cases():
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in case["resources"]:
            by_type.setdefault(r["resourceType"], []).append(r)
        cats = frozenset({"conditions", "labs", "ps_pain", "findings", "meds", "allergies", "procedures", "imaging"})
        extract_facts(
            ExtractionInput(
                vocab, by_type, cats, thresholds, CASE_NOW, case.get("draft_orders", []), "unknown", facts=base.facts
            )
        )
    # an imaging report makes the imaging extractor consult its ValueSets
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": datetime(2026, 5, 30, tzinfo=UTC).isoformat(),
    }
    extract_facts(
        ExtractionInput(vocab, {"DiagnosticReport": [report]}, frozenset(), thresholds, CASE_NOW, facts=base.facts)
    )
    # Vocabulary.level_of reads the vertebral-level designations of any ValueSet that carries them
    level_sets = {
        path.name.removeprefix("ValueSet-").removesuffix(".json")
        for path in PROFILES.glob("ValueSet-*.json")
        if LEVEL_DESIGNATION in path.read_text(encoding="utf-8")
    }
    assert "vertebral-levels" in level_sets
    return vocab.used | level_sets


def test_every_valueset_is_used_by_the_extractor_or_a_binding() -> None:
    vocab = Vocabulary.load(PROFILES)
    used = _used_by_extractor()
    bound = {vs for sd in _structure_definitions() for vs in _bound_valuesets(sd)}
    assert set(vocab.ids) - used - bound == set()
    # and every ValueSet the extractor consults exists here (valueset() raises otherwise)
    assert used <= set(vocab.ids)
    assert bound <= set(vocab.ids)


def test_profile_checks_recognise_a_spinal_metastasis_without_level() -> None:
    profiles = ProfileSet.load(PROFILES)
    condition = {
        "resourceType": "Condition",
        "id": "m1",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94222008"}]},
    }
    [assessment] = profiles.assess(condition)
    assert assessment.profile.id == "spine-secondary-cancer-condition"
    assert any("without bodySite: vertebral level unknown" in i for i in assessment.issues)
    condition["bodySite"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "122496007"}]}]  # lumbar column
    assert any("not in ValueSet vertebral-levels" in i for i in profiles.assess(condition)[0].issues)
    levels = Vocabulary.load(PROFILES).valueset("vertebral-levels")
    system, code = sorted(levels.codes)[0]
    condition["bodySite"] = [{"coding": [{"system": system, "code": code}]}]
    assert profiles.assess(condition)[0].met
