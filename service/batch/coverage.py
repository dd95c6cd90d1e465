"""``spinecds coverage``: which of a site's resources the fact extractor recognises, and which it misses.

Reads Bundles, NDJSON exports (a file or a folder of ``*.ndjson``), patient case files and CDS Hooks
requests, and reports per resource type: how many carry a code some ValueSet holds (per ValueSet, with
the facts that read it, as rules/facts.yaml declares them), how many carry only codes no ValueSet contains
(counted by code system, with the most frequent codes), medication references that cannot be resolved,
and lab values whose unit cannot be converted into the threshold's unit. Codes are shown, never patient
data. docs/terminology.md says how to read the report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.cds.request_builder import BadInput
from service.conformance.systems import CANONICAL
from service.engine.schema import FactSpec
from service.facts import fhirdata as fd
from service.facts.vocabulary import LOCAL_SYSTEM, Vocabulary, codings

from .inputs import iter_paths, read_ndjson

# resource type -> how to get the concepts the fact extractor matches against ValueSets
CODED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("code",),
    "Observation": ("code",),
    "AllergyIntolerance": ("code",),
    "Procedure": ("code",),
    "DiagnosticReport": ("code", "conclusionCode"),
    "ImagingStudy": ("procedureCode",),
    "RiskAssessment": ("code", "method"),
    "ServiceRequest": ("code",),
    "MedicationRequest": (),  # the drug: medicationCodeableConcept or the referenced Medication.code
    "MedicationStatement": (),
}
LOCAL_FINDING_VALUESET = "spine-local-finding"  # the ValueSet of the local CodeSystem's finding codes
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")
SYSTEM_NAMES = {**CANONICAL, LOCAL_SYSTEM: "spinecds local"}


@dataclass
class TypeCoverage:
    total: int = 0
    recognised: int = 0
    by_valueset: Counter[str] = field(default_factory=Counter)
    unrecognised: int = 0
    uncoded: int = 0
    unresolved_reference: int = 0
    unrecognised_by_system: Counter[str] = field(default_factory=Counter)
    unrecognised_codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    displays: dict[tuple[str, str], str] = field(default_factory=dict)
    unit_problems: Counter[tuple[str, str]] = field(default_factory=Counter)  # (ValueSet, unit)


@dataclass
class Coverage:
    vocab: Vocabulary
    facts_of: Mapping[str, list[str]]
    files: int = 0
    resources: int = 0
    patients: int = 0
    not_read: Counter[str] = field(default_factory=Counter)
    types: dict[str, TypeCoverage] = field(default_factory=dict)

    def add_all(self, resources: Iterable[Mapping[str, Any]]) -> None:
        batch = [r for r in resources if isinstance(r, Mapping)]
        medications = fd.medications_by_id(r for r in batch if r.get("resourceType") == "Medication")
        for resource in batch:
            self.add(resource, medications)

    def add(self, resource: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> None:
        self.resources += 1
        rtype = str(resource.get("resourceType"))
        if rtype == "Patient":
            self.patients += 1
            return
        if rtype == "Medication":
            return  # read as the target of medicationReference
        if rtype not in CODED_ELEMENTS:
            self.not_read[rtype] += 1
            return
        cov = self.types.setdefault(rtype, TypeCoverage())
        cov.total += 1
        if rtype in MEDICATION_TYPES:
            concepts = fd.medication_concepts(resource, medications)
            if concepts is None:
                cov.unresolved_reference += 1
                return
        else:
            concepts = [c for name in CODED_ELEMENTS[rtype] for c in _as_list(resource.get(name))]
        codes = [c for concept in concepts for c in codings(concept) if c.get("system") and c.get("code")]
        if not codes:
            cov.uncoded += 1
            return
        hits = [vs_id for vs_id in self.vocab.ids if any(self.vocab.concept_in(vs_id, c) for c in concepts)]
        local = any(c.get("system") == LOCAL_SYSTEM for c in codes)
        if hits or local:
            cov.recognised += 1
            cov.by_valueset.update(hits or ["(local code)"])
            if rtype == "Observation":
                self._check_unit(cov, resource, hits)
            return
        cov.unrecognised += 1
        for system in {str(c["system"]) for c in codes}:
            cov.unrecognised_by_system[system] += 1
        for c in codes:
            key = (str(c["system"]), str(c["code"]))
            cov.unrecognised_codes[key] += 1
            if isinstance(c.get("display"), str):
                cov.displays.setdefault(key, c["display"])

    @staticmethod
    def _check_unit(cov: TypeCoverage, obs: Mapping[str, Any], hits: list[str]) -> None:
        for vs_id in hits:
            unit = fd.UNIT_FOR_VALUESET.get(vs_id)
            if unit is None:
                continue
            try:
                fd.quantity_in(obs, unit)
            except fd.UnitProblem:
                quantity = obs.get("valueQuantity")
                spelled = quantity.get("code") or quantity.get("unit") if isinstance(quantity, Mapping) else None
                cov.unit_problems[(vs_id, str(spelled or "(none)"))] += 1

    def as_json(self, top: int) -> dict[str, Any]:
        return {
            "files": self.files,
            "resources": self.resources,
            "patients": self.patients,
            "notReadByTheRules": dict(sorted(self.not_read.items())),
            "types": {
                rtype: {
                    "total": cov.total,
                    "recognised": cov.recognised,
                    "byValueSet": {
                        vs: {"count": n, "facts": list(self.facts_of.get(vs, []))}
                        for vs, n in sorted(cov.by_valueset.items(), key=lambda kv: (-kv[1], kv[0]))
                    },
                    "unrecognised": cov.unrecognised,
                    "unrecognisedBySystem": dict(cov.unrecognised_by_system.most_common()),
                    "topUnrecognisedCodes": [
                        {"system": s, "code": c, "display": cov.displays.get((s, c), ""), "count": n}
                        for (s, c), n in cov.unrecognised_codes.most_common(top)
                    ],
                    "withoutCode": cov.uncoded,
                    "unresolvedMedicationReference": cov.unresolved_reference,
                    "unitNotRecognised": [
                        {"valueSet": vs, "unit": unit, "count": n} for (vs, unit), n in cov.unit_problems.most_common()
                    ],
                }
                for rtype, cov in sorted(self.types.items())
            },
        }

    def as_text(self, top: int) -> str:
        lines = [f"spinecds coverage: {self.files} file(s), {self.resources} resources, {self.patients} patient(s)"]
        for rtype, cov in sorted(self.types.items()):
            lines.append(f"\n{rtype}: {cov.total}, recognised {cov.recognised}")
            for vs, n in sorted(cov.by_valueset.items(), key=lambda kv: (-kv[1], kv[0])):
                facts = ", ".join(self.facts_of.get(vs, []))
                lines.append(f"  {n:>6}  {vs}" + (f" ({facts})" if facts else ""))
            for system, n in cov.unrecognised_by_system.most_common():
                name = SYSTEM_NAMES.get(system, system)
                lines.append(f"  {n} {rtype}s with {name} codes no ValueSet contains")
            if cov.unrecognised_codes:
                lines.append("  top codes no ValueSet contains:")
                for (s, c), n in cov.unrecognised_codes.most_common(top):
                    display = cov.displays.get((s, c), "")
                    lines.append(f"  {n:>6}  {SYSTEM_NAMES.get(s, s)} {c}" + (f"  {display}" if display else ""))
            if cov.uncoded:
                lines.append(f"  {cov.uncoded} {rtype}s carry no coded concept the rules could read")
            if cov.unresolved_reference:
                lines.append(
                    f"  {cov.unresolved_reference} {rtype}s reference a Medication that is not in the data "
                    "(their drug is unknown to the rules)"
                )
            for (vs, unit), n in cov.unit_problems.most_common():
                lines.append(f"  {n} {vs} values with unit {unit!r} not recognised (the fact is unknown)")
        if self.not_read:
            lines.append("\nnot read by the rules: " + ", ".join(f"{t} {n}" for t, n in sorted(self.not_read.items())))
        return "\n".join(lines)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def resources_in(path: Path) -> Iterator[Mapping[str, Any]]:
    """Every resource in a Bundle, NDJSON file/folder, case file or CDS Hooks request (prefetch values)."""
    if path.is_dir():
        files = sorted(path.glob("*.ndjson"))
        if not files:
            raise BadInput(f"{path}: folder holds no *.ndjson files")
        for file in files:
            yield from read_ndjson(file)
        return
    if not path.is_file():
        raise BadInput(f"{path}: no such file or folder")
    if path.suffix == ".ndjson":
        yield from read_ndjson(path)
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise BadInput(f"{path}: expected a JSON object")
    if "hook" in data and isinstance(data.get("prefetch"), Mapping):
        for value in data["prefetch"].values():
            yield from _unbundle(value)
    elif isinstance(data.get("resources"), list):
        for r in data["resources"]:
            yield from _unbundle(r)
    elif isinstance(data.get("resourceType"), str):
        yield from _unbundle(data)
    else:
        raise BadInput(f"{path}: not a Bundle, resource, case file, CDS Hooks request or NDJSON export")


def _unbundle(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping) and value.get("resourceType") == "Bundle":
        for entry in value.get("entry") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                yield from _unbundle(entry["resource"])
    elif isinstance(value, Mapping) and isinstance(value.get("resourceType"), str):
        yield value


def facts_by_valueset(facts: Mapping[str, FactSpec]) -> dict[str, list[str]]:
    """ValueSet id -> the facts whose declared sources (rules/facts.yaml) read it; a fact read from codes of the
    local CodeSystem counts for the local finding ValueSet."""
    out: dict[str, set[str]] = {}
    for fid, spec in facts.items():
        for source in spec.sources:
            for vs_id in source.valuesets:
                out.setdefault(vs_id, set()).add(fid)
            if source.local_codes:
                out.setdefault(LOCAL_FINDING_VALUESET, set()).add(fid)
    return {vs_id: sorted(fids) for vs_id, fids in sorted(out.items())}


def run(
    paths: list[Path], profiles_dir: Path, facts: Mapping[str, FactSpec], *, as_json: bool, top: int = 10
) -> tuple[int, str | None, list[str]]:
    """(exit code, report or None when nothing was readable, problems): exit 0 when every input was read,
    2 when some input is unreadable (the report covers the rest)."""
    coverage = Coverage(Vocabulary.load(profiles_dir), facts_by_valueset(facts))
    problems = []
    for path in iter_paths(paths):
        try:
            resources = list(resources_in(path))
        except BadInput as exc:
            problems.append(f"spinecds coverage: {exc}")
            continue
        coverage.files += 1
        coverage.add_all(resources)
    report = None
    if coverage.files:
        report = json.dumps(coverage.as_json(top), indent=2) if as_json else coverage.as_text(top)
    return (2 if problems else 0), report, problems
