"""``spinecds validate INPUT``: is each resource valid FHIR R4, will the service read it, which spinecds
profiles it meets, and what the rules miss.

Checks run in this order, and a resource that fails an earlier one meets no profile:
1. base R4 (``base_r4``): HL7's JSON schema, the core cardinalities and FHIRPath invariants;
2. the service's own intake (``service.fhir.pool``): a resource it would skip is reported with the
   same reason the service records when it skips it;
3. code system URIs (``systems``): a near miss such as ``http://snomed.org/sct`` is an error;
4. the spinecds profiles (``profiles``).

INPUT is a Bundle (any type), a single resource, a CDS Hooks request (its prefetch is read), an
NDJSON file or a folder of ``*.ndjson`` / ``*.json`` files. Exit 0 = nothing missing, 1 = findings,
2 = unreadable input. The report names resources as ``Type/id`` and prints no other patient data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.conformance.profiles import ProfileSet
from service.conformance.systems import system_findings
from service.fhir.pool import RULE_TYPES, ResourcePool, r4b_problem


class InputError(ValueError):
    pass


@dataclass
class ResourceReport:
    ref: str
    meets: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(self.meets or self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"resource": self.ref, "meets": self.meets, "findings": self.findings}


def _resources_in(doc: Any, where: str) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, Mapping):
        raise InputError(f"{where}: not a JSON object")
    if "hook" in doc and isinstance(doc.get("prefetch"), Mapping):
        for value in doc["prefetch"].values():
            if value is not None:
                yield from _resources_in(value, where)
        return
    rtype = doc.get("resourceType")
    if not isinstance(rtype, str):
        raise InputError(f"{where}: no resourceType (not FHIR JSON)")
    if rtype == "Bundle":
        for entry in doc.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if isinstance(resource, Mapping):
                yield from _resources_in(resource, where)
        return
    yield dict(doc)


def _read_ndjson(path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                yield from _resources_in(json.loads(line), f"{path.name}:{number}")
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}:{number}: invalid JSON ({exc.msg})") from exc


def read_resources(target: str | Path) -> list[dict[str, Any]]:
    path = Path(target)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".ndjson", ".json"})
        if not files:
            raise InputError(f"{path}: no .ndjson or .json files")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder")
    out: list[dict[str, Any]] = []
    for f in files:
        if f.suffix == ".ndjson":
            out.extend(_read_ndjson(f))
            continue
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{f.name}: invalid JSON") from exc
        out.extend(_resources_in(doc, f.name))
    return out


def intake_refusal(resource: dict[str, Any]) -> str | None:
    """Why the service's intake would skip this resource (the reason it records), or None."""
    if resource.get("resourceType") not in RULE_TYPES:
        return None
    pool = ResourcePool()
    pool.add_payload(resource, "resource")
    return pool.skipped[0].reason if pool.skipped else None


def validate_resources(resources: list[dict[str, Any]], profiles: ProfileSet) -> list[ResourceReport]:
    from service.conformance import base_r4  # jsonschema, fhirpathpy: not at the service's start

    reports = []
    for resource in resources:
        report = ResourceReport(f"{resource.get('resourceType')}/{resource.get('id', '?')}")
        report.findings.extend(f"R4: {finding}" for finding in base_r4.check(resource))
        refusal = intake_refusal(resource)
        if refusal is not None:
            report.findings.append(f"the service skips this resource: {refusal}")
        elif (r4b := r4b_problem(resource)) is not None:
            report.findings.append(f"R4B model: {r4b}")
        report.findings.extend(system_findings(resource))
        valid = not report.findings
        for assessment in profiles.assess(resource):
            if assessment.met and valid:
                report.meets.append(assessment.profile.id)
            report.findings.extend(assessment.issues)
        report.findings.extend(profiles.near_misses(resource))
        reports.append(report)
    return reports


def summary(reports: list[ResourceReport]) -> dict[str, int]:
    return {
        "resources": len(reports),
        "matchingProfile": sum(r.matched for r in reports),
        "meetingProfile": sum(bool(r.meets) for r in reports),
        "findings": sum(len(r.findings) for r in reports),
    }


def render_text(reports: list[ResourceReport]) -> str:
    lines = []
    for r in reports:
        if r.meets:
            lines.append(f"{r.ref}: meets {', '.join(r.meets)}")
        for finding in r.findings:
            lines.append(f"{r.ref}: {finding}")
    s = summary(reports)
    lines.append(
        f"{s['resources']} resources, {s['matchingProfile']} meant for a spinecds profile, {s['meetingProfile']} meet "
        f"it, {s['findings']} finding(s); {s['resources'] - s['matchingProfile']} match no spinecds profile"
    )
    return "\n".join(lines)


def run(target: str, *, as_json: bool, profiles_dir: str | Path) -> tuple[int, str]:
    """(exit code, output). ``profiles_dir`` is Settings.profiles_dir (SPINECDS_PROFILES_DIR)."""
    try:
        resources = read_resources(target)
    except InputError as exc:
        return 2, f"spinecds validate: {exc}"
    reports = validate_resources(resources, ProfileSet.load(profiles_dir))
    code = 1 if any(r.findings for r in reports) else 0
    if as_json:
        doc = {"summary": summary(reports), "resources": [r.as_dict() for r in reports if r.matched]}
        return code, json.dumps(doc, indent=2)
    return code, render_text(reports)
