"""Lenient intake of FHIR R4 data: one bad resource never fails a request.

EHRs send FHIR 4.0.1. fhir.resources 8.x parses R5 by default and has no R4 package; its R4B
(4.3.0) models accept R4 JSON for every resource type we read (R5 rejects legal R4 such as a
Condition without clinicalStatus or MedicationRequest.medicationCodeableConcept). So we validate
with ``fhir.resources.R4B``. Validation costs 130-600 µs per resource, so only resources whose
type the rules read are validated; the rest are counted and skipped. A pool may also be given a
``relevant`` test (the pipeline passes one that keeps only Observations, DiagnosticReports and
ImagingStudies whose code some ValueSet or the local CodeSystem holds, the only ones the fact
extractor reads): a chart's thousands of other Observations are then counted, not validated.
What was skipped, and why, is recorded (without patient data) and reported in the response trace.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

RULE_TYPES: dict[str, str] = {
    "Patient": "patient",
    "Condition": "condition",
    "Observation": "observation",
    "MedicationRequest": "medicationrequest",
    "MedicationStatement": "medicationstatement",
    "Medication": "medication",  # the target of medicationReference (facts/fhirdata.medication_concepts)
    "AllergyIntolerance": "allergyintolerance",
    "Procedure": "procedure",
    "DiagnosticReport": "diagnosticreport",
    "ImagingStudy": "imagingstudy",
    "RiskAssessment": "riskassessment",
    "ServiceRequest": "servicerequest",
}

_models: dict[str, Any] = {}


def model_for(resource_type: str) -> Any:
    cls = _models.get(resource_type)
    if cls is None:
        module = importlib.import_module(f"fhir.resources.R4B.{RULE_TYPES[resource_type]}")
        cls = getattr(module, resource_type)
        _models[resource_type] = cls
    return cls


def preload_models() -> None:
    """Import the R4B model classes at start so the first request does not pay for it."""
    for name in RULE_TYPES:
        model_for(name)


@dataclass(frozen=True)
class Skipped:
    where: str
    reason: str


@dataclass
class ResourcePool:
    """Validated resources of the types the rules read, by type, in arrival order."""

    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    ignored_types: Counter[str] = field(default_factory=Counter)
    outcomes: list[str] = field(default_factory=list)
    relevant: Callable[[str, Mapping[str, Any]], bool] | None = None
    irrelevant: Counter[str] = field(default_factory=Counter)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    def add_payload(self, payload: Any, where: str) -> None:
        """Add a prefetch value or fetched page: a resource, a Bundle, or an OperationOutcome."""
        for index, resource in _iter_resources(payload):
            self._add(resource, f"{where}[{index}]" if index is not None else where)

    def _add(self, resource: Any, where: str) -> None:
        if not isinstance(resource, Mapping):
            self.skipped.append(Skipped(where, "not a JSON object"))
            return
        rtype = resource.get("resourceType")
        if rtype == "OperationOutcome":
            self.outcomes.append(where)
            return
        if not isinstance(rtype, str) or rtype not in RULE_TYPES:
            self.ignored_types[str(rtype)] += 1
            return
        rid = resource.get("id")
        key = (rtype, str(rid))
        if rid is not None and key in self._seen:
            return  # the same resource from two prefetch keys or pages
        if self.relevant is not None and not self.relevant(rtype, resource):
            self.irrelevant[rtype] += 1  # no rule reads it: not worth its validation
            return
        try:
            model_for(rtype).model_validate(resource)
        except (ValidationError, ValueError, TypeError) as exc:
            self.skipped.append(Skipped(where, f"{rtype} failed R4 validation: {_first_error(exc)}"))
            return
        if rid is not None:
            self._seen.add(key)
        self.by_type.setdefault(rtype, []).append(dict(resource))


def _iter_resources(payload: Any) -> Iterator[tuple[int | None, Any]]:
    if isinstance(payload, Mapping) and payload.get("resourceType") == "Bundle":
        entries = payload.get("entry") or []
        if not isinstance(entries, list):
            yield None, entries
            return
        for i, entry in enumerate(entries):
            if isinstance(entry, Mapping) and "resource" in entry:
                yield i, entry["resource"]
            else:
                yield i, None
        return
    if isinstance(payload, Mapping) and "resource" in payload and "resourceType" not in payload:
        yield None, payload["resource"]  # a Bundle.entry-like wrapper, as some clients send
        return
    yield None, payload


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors:
            loc = ".".join(str(p) for p in errors[0].get("loc", ()))
            return f"{loc}: {errors[0].get('type', 'invalid')}"
    return type(exc).__name__


def iter_bundle_links(bundle: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and isinstance(link.get("url"), str):
            yield str(link.get("relation", "")), link["url"]
