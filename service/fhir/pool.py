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
from collections.abc import Callable, Mapping
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
    outcome: bool = False  # an OperationOutcome: the payload, or an entry of the Bundle (an error the EHR reported)

    def merge(self, other: Intake) -> None:
        self.accepted += other.accepted
        self.skipped.update(other.skipped)
        self.other_patient += other.other_patient
        self.wrong_type.update(other.wrong_type)
        self.outcome = self.outcome or other.outcome

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

    def add_payload(self, payload: Any, where: str, searched: str | None = None) -> Intake:
        """Add a prefetch value or fetched page: a resource, a Bundle, or an OperationOutcome.

        ``searched``: the type a search's template asks for; a Bundle entry of another type (not an included
        resource or an outcome by its ``search.mode``) is counted in ``wrong_type``. ``Intake.outcome`` tells
        whether the payload is an OperationOutcome or a Bundle entry holds one (the EHR reported an error).
        A Bundle is read in two passes: its fullUrls first (a reference may name a later entry), then its entries.
        """
        intake = Intake()
        if not (type(payload) is dict or isinstance(payload, Mapping)):
            self._add(payload, where, None, intake)
            return intake
        kind = payload.get("resourceType")
        if kind != "Bundle":
            intake.outcome = kind == "OperationOutcome"
            wrapped = "resource" in payload and "resourceType" not in payload  # a Bundle.entry-like wrapper
            self._add(payload["resource"] if wrapped else payload, where, None, intake)
            return intake
        entries = payload.get("entry") or []
        if not isinstance(entries, list):
            self._add(entries, where, None, intake)
            return intake
        if self._remember_full_urls(entries):
            self._patient_refs.clear()  # a new fullUrl may resolve a reference differently
        add = self._add
        for index, entry in enumerate(entries):
            if not (type(entry) is dict or isinstance(entry, Mapping)):  # the type test first: faster
                add(None, where, index, intake)
                continue
            kind = add(entry.get("resource"), where, index, intake)
            if kind is _NOT_OBJECT:
                continue
            if kind == "OperationOutcome":
                intake.outcome = True
            elif searched is not None and kind != searched:
                search = entry.get("search")
                mode = search.get("mode") if (type(search) is dict or isinstance(search, Mapping)) else None
                if not isinstance(mode, str) or mode not in _NOT_MATCHES:
                    intake.wrong_type[searched] += 1
        return intake

    def _remember_full_urls(self, entries: list[Any]) -> bool:
        """Remember each entry's fullUrl -> (type, id); whether a new one was learnt."""
        full_urls = self._full_urls
        known = len(full_urls)
        for entry in entries:
            if not (type(entry) is dict or isinstance(entry, Mapping)):
                continue
            url = entry.get("fullUrl")
            if not isinstance(url, str):
                continue
            resource = entry.get("resource")
            if type(resource) is dict or isinstance(resource, Mapping):
                rtype, rid = resource.get("resourceType"), resource.get("id")
                if isinstance(rtype, str) and isinstance(rid, str):
                    full_urls.setdefault(url, (rtype, rid))
        return len(full_urls) != known

    def _add(self, resource: Any, where: str, index: int | None, intake: Intake) -> Any:
        """Read one resource (``where[index]`` in the payload); its resourceType, or ``_NOT_OBJECT``."""
        if type(resource) is not dict and not isinstance(resource, Mapping):  # the type test first: faster
            self.skipped.append(Skipped(_at(where, index), "not a JSON object"))
            intake.skipped["unreadable entry"] += 1
            return _NOT_OBJECT
        rtype = resource.get("resourceType")
        if rtype == "OperationOutcome":
            self.outcomes.append(_at(where, index))
            return rtype
        if not isinstance(rtype, str):
            self.skipped.append(Skipped(_at(where, index), "no resourceType"))
            intake.skipped["unreadable entry"] += 1
            return rtype
        if rtype not in RULE_TYPES:
            self.ignored_types[rtype] += 1
            return rtype
        if self.patient_id is not None and not self.about_patient(rtype, resource):
            self.other_patient += 1  # set aside before anything else: never read, never cited
            intake.other_patient += 1
            return rtype
        rid = resource.get("id")
        key = (rtype, str(rid)) if rid is not None else None
        if key is not None and key in self._seen:
            intake.accepted += 1
            return rtype  # the same resource from two prefetch keys or pages
        relevant = self.relevant
        if relevant is not None and not relevant(rtype, resource):
            self.irrelevant[rtype] += 1  # no rule reads it: not worth its validation
            return rtype
        problem = readable.problem(rtype, resource)
        if problem is not None:
            self.skipped.append(Skipped(_at(where, index), f"{rtype} failed R4 validation: {problem}"))
            intake.skipped[rtype] += 1
            return rtype
        if key is not None:
            self._seen.add(key)
        intake.accepted += 1
        # kept as it came (nothing downstream changes a resource: tests/test_intake_safety.py); a Mapping that is
        # not a dict is copied into one
        kept = self.by_type.get(rtype)
        if kept is None:
            kept = self.by_type[rtype] = []
        kept.append(resource if type(resource) is dict else dict(resource))
        return rtype

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


_NOT_OBJECT = object()  # what _add returns for an entry that is not a JSON object
_NOT_MATCHES = frozenset({"include", "outcome"})  # search.mode of entries that are not matches of the search


def _at(where: str, index: int | None) -> str:
    return f"{where}[{index}]" if index is not None else where


def _first_error(exc: Exception) -> str:
    errors_of = getattr(exc, "errors", None)  # a pydantic ValidationError
    if callable(errors_of):
        errors = errors_of()
        if errors:
            loc = ".".join(str(p) for p in errors[0].get("loc", ()))
            return f"{loc}: {errors[0].get('type', 'invalid')}"
    return type(exc).__name__
