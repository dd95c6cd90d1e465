"""Check the Observations a form is about to write, before the app writes them to the EHR.

A resource passes when it is valid R4 (HL7 schema and invariants), the service's intake would
read it, its code systems are the canonical URIs, it meets the spinecds profile its code is meant
for, it is final, dated, for the patient in context and performed by the launching user, and
the fact extractor reads the batch as the facts the form records. The answer names resources by
position only and nothing is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from service.conformance.profiles import ProfileSet
from service.conformance.systems import system_findings
from service.conformance.validate import intake_refusal
from service.engine.schema import FactSpec
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.model import PATIENT_LEVEL
from service.facts.vocabulary import Vocabulary

from .forms import form, written_codes

MAX_RESOURCES = 20


@dataclass(frozen=True)
class CheckContext:
    vocab: Vocabulary
    thresholds: Mapping[str, float]
    facts: Mapping[str, FactSpec]  # rules/facts.yaml: each fact's window
    now: datetime
    profiles_dir: str


@cache
def _profiles(directory: str) -> ProfileSet:
    return ProfileSet.load(directory)


def _base_r4(resource: Mapping[str, Any]) -> list[str]:
    """HL7's R4 schema and invariants when ``scripts/fhir-r4-data`` has generated them; the intake check
    (service.fhir.readable) checks the elements the rules read in any case. Imported when first needed, not at the
    service's start (jsonschema and fhirpathpy: ~0.3-0.5 s of the cold start)."""
    from service.conformance import base_r4

    try:
        return base_r4.check(resource)
    except FileNotFoundError:
        return []


def _reference(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, Mapping) else None
    return ref if isinstance(ref, str) else None


def _codes(resource: Mapping[str, Any]) -> set[tuple[str, str]]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, Mapping) else None
    return {(str(c.get("system")), str(c.get("code"))) for c in codings or [] if isinstance(c, Mapping)}


def check_form(body: Any, ctx: CheckContext) -> dict[str, Any]:
    """``{"form": id, "patient": "Patient/x", "performer": "Practitioner/y", "resources": [...]}`` -> verdict."""
    if not isinstance(body, Mapping):
        return _verdict(["send a JSON object with form, patient, performer and resources"])
    spec = form(str(body.get("form")))
    resources = body.get("resources")
    patient, performer = body.get("patient"), body.get("performer")
    if spec is None:
        return _verdict([f"unknown form {body.get('form')!r}"])
    if not isinstance(patient, str) or not patient.startswith("Patient/"):
        return _verdict(["patient: the patient in context (Patient/<id>) is required"])
    if not isinstance(performer, str) or "/" not in performer:
        return _verdict(["performer: the launching user (fhirUser) is required"])
    if not isinstance(resources, list) or not resources or len(resources) > MAX_RESOURCES:
        return _verdict([f"resources: 1 to {MAX_RESOURCES} Observations are required"])
    allowed = set(written_codes(spec))
    issues: list[str] = []
    profiles = _profiles(ctx.profiles_dir)
    for n, resource in enumerate(resources, 1):
        where = f"resource {n}"
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "Observation":
            issues.append(f"{where}: not an Observation")
            continue
        issues += [f"{where}: R4: {finding}" for finding in _base_r4(resource)]
        refusal = intake_refusal(dict(resource))
        if refusal is not None:
            issues.append(f"{where}: the service would not read it: {refusal}")
        issues += [f"{where}: {finding}" for finding in system_findings(resource)]
        for assessment in profiles.assess(resource):
            issues += [f"{where}: {issue}" for issue in assessment.issues]
        if resource.get("status") != "final":
            issues.append(f"{where}: status must be final")
        if _reference(resource.get("subject")) != patient:
            issues.append(f"{where}: subject is not the patient in context")
        performers = resource.get("performer")
        if not isinstance(performers, list) or [_reference(p) for p in performers] != [performer]:
            issues.append(f"{where}: performer must be the launching user only")
        if not isinstance(resource.get("effectiveDateTime"), str):
            issues.append(f"{where}: effectiveDateTime is required")
        if not _codes(resource) & allowed:
            issues.append(f"{where}: its code is not one this form writes")
    if issues:
        return _verdict(issues)
    inp = ExtractionInput(
        vocab=ctx.vocab,
        resources={"Observation": [dict(r) for r in resources]},
        available=frozenset(),
        thresholds=ctx.thresholds,
        now=ctx.now,
        facts=ctx.facts,
    )
    facts = {f.fid: f for f in extract_facts(inp) if f.fid in spec["facts"] and f.level == PATIENT_LEVEL}
    read = {fid: {"known": f.known, "value": f.value if f.known else None} for fid, f in facts.items()}
    if not any(f["known"] for f in read.values()):
        return _verdict([f"the service would not read these as {', '.join(spec['facts'])}"], read)
    return _verdict([], read)


def _verdict(issues: list[str], facts: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ok": not issues, "issues": issues, "facts": facts or {}}
