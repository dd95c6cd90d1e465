"""Input files -> CDS Hooks requests, one per patient, as an EHR would send them.

Recognised inputs:

* a CDS Hooks request (``{"hook": ..., "context": ..., "prefetch": ...}``): used as is, except that
  ``fhirServer``/``fhirAuthorization`` are dropped (offline: only the prefetch counts);
* a FHIR Bundle (any type; ``entry[].resource``): one request per Patient in it;
* a patient case file (``{"resources": [...]}``, the format of ``tests/cases``): one request;
* an NDJSON file or a folder of ``*.ndjson`` files (FHIR bulk export): one request per Patient.

A Bundle or case file is read as the patient's whole record, so every prefetch category is
documented (an empty list is an empty list). In an NDJSON export only the resource types that
were exported are documented; the rest stay unknown, as they would with a missing prefetch key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.cds.definitions import PREFETCH, SERVICES

OFFLINE_USER = "Practitioner/spinecds-offline"
SERVICE_FOR_HOOK = {s.hook: s.id for s in SERVICES.values()}
# resource type -> the prefetch keys whose templates search it (Observation: three, told apart by code)
KEYS_FOR_TYPE: dict[str, tuple[str, ...]] = {}
for _key, _template in PREFETCH.items():
    _type = _template.split("?", 1)[0].split("/", 1)[0]
    KEYS_FOR_TYPE[_type] = (*KEYS_FOR_TYPE.get(_type, ()), _key)
KEY_FOR_TYPE = {t: keys[0] for t, keys in KEYS_FOR_TYPE.items() if t != "Observation"}
EXTRA_KEY = "offline-other"  # resources no template selects (e.g. ImagingStudy) travel as extra data
OBSERVATION_KEYS = KEYS_FOR_TYPE.get("Observation", ())


def _template_codes(key: str) -> set[tuple[str, str]]:
    """(system, code) pairs of a prefetch template's ``code=`` parameter; code "" = the whole system."""
    query = PREFETCH[key].split("?", 1)[1]
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return {tuple(token.split("|", 1)) for token in params.get("code", "").split(",") if "|" in token}  # type: ignore[misc]


OBSERVATION_CODES = {key: _template_codes(key) for key in OBSERVATION_KEYS}


def observation_key(resource: Mapping[str, Any]) -> str:
    """The prefetch key whose template selects this Observation (as the EHR's search would)."""
    codings = resource.get("code", {}).get("coding", []) if isinstance(resource.get("code"), Mapping) else []
    pairs = {(c.get("system"), c.get("code")) for c in codings if isinstance(c, Mapping)}
    for key in OBSERVATION_KEYS:
        wanted = OBSERVATION_CODES[key]
        if any((system, code) in wanted or (system, "") in wanted for system, code in pairs):
            return key
    return EXTRA_KEY


class BadInput(ValueError):
    """The file cannot be read as any of the recognised inputs (exit code 2)."""


@dataclass(frozen=True)
class Subject:
    """One evaluation to run: a label without patient data, and the request (or why there is none)."""

    label: str
    service_id: str | None
    body: dict[str, Any] | None
    error: str | None = None


def load_path(path: Path, hook: str = "patient-view") -> list[Subject]:
    """All subjects in a file or NDJSON folder; raises BadInput when it is not a recognised input."""
    if path.is_dir():
        files = sorted(path.glob("*.ndjson"))
        if not files:
            raise BadInput(f"{path}: folder holds no *.ndjson files")
        return subjects_from_resources(_read_ndjson(files), str(path), hook, exported=_types_in(files))
    if not path.is_file():
        raise BadInput(f"{path}: no such file or folder")
    if path.suffix == ".ndjson":
        return subjects_from_resources(_read_ndjson([path]), str(path), hook, exported=_types_in([path]))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from exc
    return subjects_from_json(data, str(path), hook)


def subjects_from_json(data: Any, label: str, hook: str = "patient-view") -> list[Subject]:
    if not isinstance(data, Mapping):
        raise BadInput(f"{label}: expected a JSON object (CDS Hooks request, Bundle or case file)")
    if "hook" in data and "context" in data:
        return [_from_hook_request(data, label)]
    if data.get("resourceType") == "Bundle":
        entries = data.get("entry", [])
        if not isinstance(entries, list):
            raise BadInput(f"{label}: Bundle.entry must be an array")
        resources = [
            e["resource"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
        ]
        aliases = {
            str(e["fullUrl"]): e["resource"]
            for e in entries
            if isinstance(e, Mapping) and isinstance(e.get("fullUrl"), str) and isinstance(e.get("resource"), Mapping)
        }
        return subjects_from_resources(resources, label, hook, aliases=aliases)
    if isinstance(data.get("resources"), list):
        case_hook = data.get("hook", hook)
        orders = data.get("draft_orders", [])
        missing = {str(k) for k in data.get("missing_keys", [])}
        subjects = subjects_from_resources(
            data["resources"], label, str(case_hook), draft_orders=orders, missing_keys=missing
        )
        for subject in subjects:  # "null_keys": the EHR answered null (no data) for these categories
            if subject.body is not None:
                subject.body["prefetch"].update({str(k): None for k in data.get("null_keys", [])})
        return subjects
    if data.get("resourceType") == "Patient":
        return subjects_from_resources([data], label, hook)
    raise BadInput(f"{label}: not a CDS Hooks request, a FHIR Bundle, a case file or an NDJSON export")


def _from_hook_request(data: Mapping[str, Any], label: str) -> Subject:
    hook = data.get("hook")
    service_id = SERVICE_FOR_HOOK.get(hook) if isinstance(hook, str) else None
    if service_id is None:
        raise BadInput(f"{label}: hook {hook!r} is not served here (we answer {', '.join(SERVICE_FOR_HOOK)})")
    body = {k: v for k, v in data.items() if k not in ("fhirServer", "fhirAuthorization")}
    return Subject(label, service_id, body)


def _types_in(files: Iterable[Path]) -> set[str]:
    return {f.name.split(".", 1)[0] for f in files}


def _read_ndjson(files: list[Path]) -> list[dict[str, Any]]:
    return [item for file in files for item in read_ndjson(file)]


def read_ndjson(file: Path) -> Iterator[dict[str, Any]]:
    """The resources of one NDJSON file, line by line; a line that is not a FHIR resource is bad input."""
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{file}:{number}: not a JSON line ({exc.msg})") from exc
            if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
                raise BadInput(f"{file}:{number}: not a FHIR resource")
            yield item


def _patient_of(resource: Mapping[str, Any], aliases: Mapping[str, Mapping[str, Any]]) -> str | None:
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            target = aliases.get(ref["reference"])
            if target is not None:
                return str(target.get("id")) if target.get("resourceType") == "Patient" else None
            reference: str = ref["reference"]
            if reference.startswith("Patient/"):
                return reference.removeprefix("Patient/")
            if reference.startswith("urn:uuid:"):
                return reference.removeprefix("urn:uuid:")
    return None


def subjects_from_resources(
    resources: list[Any],
    label: str,
    hook: str = "patient-view",
    *,
    exported: set[str] | None = None,
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
    draft_orders: list[Any] | None = None,
    missing_keys: set[str] | None = None,
) -> list[Subject]:
    """One CDS Hooks request per Patient; ``exported`` limits the documented categories to those types."""
    if hook not in SERVICE_FOR_HOOK:
        raise BadInput(f"{label}: hook {hook!r} is not served here")
    clean = [r for r in resources if isinstance(r, Mapping) and isinstance(r.get("resourceType"), str)]
    patients = [r for r in clean if r["resourceType"] == "Patient" and isinstance(r.get("id"), str)]
    if not patients:
        return [Subject(label, SERVICE_FOR_HOOK[hook], None, "no Patient resource with an id")]
    by_patient: dict[str, list[Mapping[str, Any]]] = {str(p["id"]): [] for p in patients}
    for resource in clean:
        if resource["resourceType"] == "Patient":
            continue
        owner = _patient_of(resource, aliases or {})
        if owner is None and len(patients) == 1:
            owner = str(patients[0]["id"])  # a one-patient record: unreferenced resources are theirs
        if owner in by_patient:
            by_patient[owner].append(resource)
    subjects = []
    for index, patient in enumerate(patients, 1):
        pid = str(patient["id"])
        where = label if len(patients) == 1 else f"{label} #{index}"
        subjects.append(
            Subject(
                where,
                SERVICE_FOR_HOOK[hook],
                build_request(patient, by_patient[pid], hook, exported, draft_orders, missing_keys),
            )
        )
    return subjects


def build_request(
    patient: Mapping[str, Any],
    resources: Iterable[Mapping[str, Any]],
    hook: str = "patient-view",
    exported: set[str] | None = None,
    draft_orders: list[Any] | None = None,
    missing_keys: set[str] | None = None,
) -> dict[str, Any]:
    """The CDS Hooks request an EHR following our prefetch templates would send for this record."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    orders = [o for o in (draft_orders or []) if isinstance(o, Mapping)]
    for resource in resources:
        rtype = resource["resourceType"]
        if hook != "patient-view" and rtype == "ServiceRequest" and resource.get("status") == "draft":
            orders.append(resource)
            continue
        key = observation_key(resource) if rtype == "Observation" else KEY_FOR_TYPE.get(rtype, EXTRA_KEY)
        grouped.setdefault(key, []).append(resource)
    documented = set(PREFETCH)
    if exported is not None:
        documented = {"patient"} | {k for t in exported for k in KEYS_FOR_TYPE.get(t, ())}
    documented -= missing_keys or set()  # a case file's "missing_keys": categories the EHR could not send
    prefetch: dict[str, Any] = {"patient": dict(patient)}
    for key in PREFETCH:
        if key != "patient" and key in documented:
            prefetch[key] = _searchset(grouped.get(key, []))
    if grouped.get(EXTRA_KEY):
        prefetch[EXTRA_KEY] = _searchset(grouped[EXTRA_KEY])
    context: dict[str, Any] = {"userId": OFFLINE_USER, "patientId": str(patient["id"])}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": _entries(orders)}
        if hook == "order-select":
            context["selections"] = [f"ServiceRequest/{o.get('id')}" for o in orders]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}


def _entries(resources: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"resource": dict(r)} for r in resources]


def _searchset(resources: list[Mapping[str, Any]]) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = _entries(resources)
    return bundle


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders that hold JSON files (not NDJSON exports) into their files."""
    for path in paths:
        if path.is_dir() and not any(path.glob("*.ndjson")):
            yield from sorted(p for p in path.rglob("*.json") if p.is_file())
        else:
            yield path
