"""Lenient intake of FHIR R4 data: one bad resource never fails a request.

EHRs send FHIR 4.0.1. fhir.resources 8.x parses R5 by default and has no R4 package; its R4B
(4.3.0) models accept R4 JSON for every resource type we read (R5 rejects legal R4 such as a
Condition without clinicalStatus or MedicationRequest.medicationCodeableConcept). So we validate
with ``fhir.resources.R4B`` where a resource is validated in full (``spinecds validate``,
``r4b_problem``). The service's intake checks only the elements the fact extractor reads
(``service.fhir.readable``: R4 datatype rules, a few µs per resource instead of the model's
130-600 µs), and only for resources whose type the rules read; the rest are counted and skipped.
A pool may also be given a ``relevant`` test (the pipeline passes one that keeps only Observations,
DiagnosticReports and ImagingStudies whose code some ValueSet or the local CodeSystem holds, the only ones the fact
extractor reads): a chart's thousands of other Observations are then counted, not validated.
What was skipped, and why, is recorded (without patient data) and reported in the response trace.

Only the context patient's data count. A pool made with ``patient_id`` sets aside every resource
whose ``subject``/``patient`` does not reference that patient (and a Patient with another id), before
validation and de-duplication, and counts it in the ``Intake`` of the payload it came in; the
prefetch layer turns those counts into incomplete categories. A reference counts as the patient's
when it is relative (``Patient/A``), absolute (``https://ehr/fhir/Patient/A``, also with
``/_history/n``), or a ``urn:uuid:``/``urn:oid:`` that a Bundle entry's ``fullUrl`` resolves to
``Patient/A`` (or the ``urn:uuid:A`` convention of converters that mint fullUrls from ids). Anything
else (another patient, a Group, a contained or unresolvable reference, no reference at all) cannot be
shown to be about the patient and is set aside. Types without a patient reference (Medication,
Practitioner, ...) are not read as patient data and are not checked.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import readable

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


def r4b_problem(resource: Mapping[str, Any]) -> str | None:
    """Full R4B model validation of a resource of a type the rules read (``spinecds validate``), or None."""
    rtype = resource.get("resourceType")
    if rtype not in RULE_TYPES:
        return None
    from pydantic import ValidationError  # not at import: the service's intake never loads the models

    try:
        model_for(str(rtype)).model_validate(resource)
    except (ValidationError, ValueError, TypeError) as exc:
        return f"{rtype} is not valid R4B: {_first_error(exc)}"
    return None


@dataclass(frozen=True)
class Skipped:
    where: str
    reason: str


# where a resource type names its patient (R4 patient compartment); a type not listed here (Medication,
# Practitioner, Organization, Location, Substance, ...) is not patient data and is not checked
PATIENT_ELEMENT: dict[str, str] = {
    "AllergyIntolerance": "patient",
    "CarePlan": "subject",
    "ClinicalImpression": "subject",
    "Condition": "subject",
    "DeviceRequest": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "Encounter": "subject",
    "FamilyMemberHistory": "patient",
    "Flag": "subject",
    "Goal": "subject",
    "ImagingStudy": "subject",
    "Immunization": "patient",
    "MedicationAdministration": "subject",
    "MedicationDispense": "subject",
    "MedicationRequest": "subject",
    "MedicationStatement": "subject",
    "NutritionOrder": "patient",
    "Observation": "subject",
    "Procedure": "subject",
    "QuestionnaireResponse": "subject",
    "RiskAssessment": "subject",
    "ServiceRequest": "subject",
    "Specimen": "subject",
    "VisionPrescription": "patient",
}


@dataclass
class Intake:
    """What one payload (a prefetch value, a fetched page) gave: counts only, never identifiers."""

    accepted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # resource type -> failed R4 validation
    other_patient: int = 0  # about another patient, or not shown to be about the context patient
    wrong_type: Counter[str] = field(default_factory=Counter)  # matches of a search that are not of its type

    def merge(self, other: Intake) -> None:
        self.accepted += other.accepted
        self.skipped.update(other.skipped)
        self.other_patient += other.other_patient
        self.wrong_type.update(other.wrong_type)

    @property
    def clean(self) -> bool:
        return not self.skipped and not self.other_patient and not self.wrong_type


@dataclass
class ResourcePool:
    """Validated resources of the types the rules read, by type, in arrival order."""

    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    ignored_types: Counter[str] = field(default_factory=Counter)
    outcomes: list[str] = field(default_factory=list)
    relevant: Callable[[str, Mapping[str, Any]], bool] | None = None
    irrelevant: Counter[str] = field(default_factory=Counter)
    patient_id: str | None = None  # the context patient: resources about anyone else are set aside
    other_patient: int = 0
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _full_urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # fullUrl -> (type, id)
    _patient_refs: dict[str, bool] = field(default_factory=dict)  # reference -> references_patient()

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    def add_payload(self, payload: Any, where: str) -> Intake:
        """Add a prefetch value or fetched page: a resource, a Bundle, or an OperationOutcome."""
        intake = Intake()
        known_urls = len(self._full_urls)
        self._remember_full_urls(payload)
        if len(self._full_urls) != known_urls:
            self._patient_refs.clear()  # a new fullUrl may resolve a reference differently
        for index, resource in _iter_resources(payload):
            self._add(resource, f"{where}[{index}]" if index is not None else where, intake)
        return intake

    def _remember_full_urls(self, payload: Any) -> None:
        if not (isinstance(payload, Mapping) and payload.get("resourceType") == "Bundle"):
            return
        entries = payload.get("entry")
        for entry in entries if isinstance(entries, list) else ():
            if not (type(entry) is dict or isinstance(entry, Mapping)):
                continue
            url, resource = entry.get("fullUrl"), entry.get("resource")
            if isinstance(url, str) and (type(resource) is dict or isinstance(resource, Mapping)):
                rtype, rid = resource.get("resourceType"), resource.get("id")
                if isinstance(rtype, str) and isinstance(rid, str):
                    self._full_urls.setdefault(url, (rtype, rid))

    def _add(self, resource: Any, where: str, intake: Intake) -> None:
        if type(resource) is not dict and not isinstance(resource, Mapping):  # the type test first: faster
            self.skipped.append(Skipped(where, "not a JSON object"))
            intake.skipped["unreadable entry"] += 1
            return
        rtype = resource.get("resourceType")
        if rtype == "OperationOutcome":
            self.outcomes.append(where)
            return
        if not isinstance(rtype, str):
            self.skipped.append(Skipped(where, "no resourceType"))
            intake.skipped["unreadable entry"] += 1
            return
        if rtype not in RULE_TYPES:
            self.ignored_types[rtype] += 1
            return
        if self.patient_id is not None and not self.about_patient(rtype, resource):
            self.other_patient += 1  # set aside before anything else: never read, never cited
            intake.other_patient += 1
            return
        rid = resource.get("id")
        key = (rtype, str(rid))
        if rid is not None and key in self._seen:
            intake.accepted += 1
            return  # the same resource from two prefetch keys or pages
        if self.relevant is not None and not self.relevant(rtype, resource):
            self.irrelevant[rtype] += 1  # no rule reads it: not worth its validation
            return
        problem = readable.problem(rtype, resource)
        if problem is not None:
            self.skipped.append(Skipped(where, f"{rtype} failed R4 validation: {problem}"))
            intake.skipped[rtype] += 1
            return
        if rid is not None:
            self._seen.add(key)
        intake.accepted += 1
        self.by_type.setdefault(rtype, []).append(dict(resource))

    def about_patient(self, rtype: str, resource: Mapping[str, Any]) -> bool:
        if rtype == "Patient":
            return resource.get("id") == self.patient_id
        element = PATIENT_ELEMENT.get(rtype)
        if element is None:
            return True  # not patient data (a Medication, a Practitioner)
        ref = resource.get(element)
        text = ref.get("reference") if type(ref) is dict or isinstance(ref, Mapping) else None
        if not isinstance(text, str):
            return False  # none: not shown to be this patient's
        known = self._patient_refs.get(text)
        if known is None:  # a chart repeats one or two reference strings thousands of times
            known = self._patient_refs[text] = self.references_patient(text)
        return known

    def references_patient(self, reference: str) -> bool:
        """Whether a reference string points at the context patient (see the module docstring)."""
        if reference.startswith(("urn:uuid:", "urn:oid:")):
            target = self._full_urls.get(reference)
            if target is not None:
                return target == ("Patient", self.patient_id)
            return reference.startswith("urn:uuid:") and reference.removeprefix("urn:uuid:") == self.patient_id
        if "?" in reference or "#" in reference:
            return False  # a search or a contained resource: not a patient reference
        target = self._full_urls.get(reference)
        if target is not None:
            return target == ("Patient", self.patient_id)
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == self.patient_id


def _iter_resources(payload: Any) -> Iterator[tuple[int | None, Any]]:
    if isinstance(payload, Mapping) and payload.get("resourceType") == "Bundle":
        entries = payload.get("entry") or []
        if not isinstance(entries, list):
            yield None, entries
            return
        for i, entry in enumerate(entries):
            if (type(entry) is dict or isinstance(entry, Mapping)) and "resource" in entry:
                yield i, entry["resource"]
            else:
                yield i, None
        return
    if isinstance(payload, Mapping) and "resource" in payload and "resourceType" not in payload:
        yield None, payload["resource"]  # a Bundle.entry-like wrapper, as some clients send
        return
    yield None, payload


def _first_error(exc: Exception) -> str:
    errors_of = getattr(exc, "errors", None)  # a pydantic ValidationError
    if callable(errors_of):
        errors = errors_of()
        if errors:
            loc = ".".join(str(p) for p in errors[0].get("loc", ()))
            return f"{loc}: {errors[0].get('type', 'invalid')}"
    return type(exc).__name__
