"""The CDS services this server offers, as advertised at discovery (CDS Hooks 2.0.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.facts.vocabulary import LOCAL_SYSTEM

from .template_codes import code_search

P = "{{context.patientId}}"
# Prefetch templates (RULE-CATALOGUE §6). Keys name data categories; the fact extractor treats
# a category as documented (closed world) only when its key was satisfied or fetched.
PREFETCH: dict[str, str] = {
    "patient": f"Patient/{P}",
    "conditions": f"Condition?patient={P}&clinical-status=active,recurrence,relapse",
    # every code of the lab and score ValueSets
    "labs": f"Observation?patient={P}&code={code_search('labs')}&_sort=-date",
    "ps_pain": f"Observation?patient={P}&code={code_search('ps_pain')}&_sort=-date",
    "findings": f"Observation?patient={P}&code={LOCAL_SYSTEM}|&_sort=-date",
    "meds": f"MedicationRequest?patient={P}&status=active,completed,stopped,on-hold",
    "medstatements": f"MedicationStatement?patient={P}",
    "allergies": f"AllergyIntolerance?patient={P}",
    # radiotherapy courses (mCODE/CodeX) and prior vertebral augmentation
    "procedures": f"Procedure?patient={P}&code={code_search('procedures')}",
    "imaging": f"DiagnosticReport?patient={P}&category=RAD&_sort=-date",
    "prognosis": f"RiskAssessment?patient={P}",
}

# Without these the rules cannot run at all: if they can be neither read from prefetch nor
# fetched, the answer is 412. Every other category missing makes its facts unknown.
REQUIRED_KEYS = ("patient", "conditions")

# what each key holds, in the words a card uses for it ("the problem list is incomplete")
KEY_LABELS: dict[str, str] = {
    "patient": "patient record",
    "conditions": "problem list",
    "labs": "lab results",
    "ps_pain": "performance status and pain scores",
    "findings": "spine findings",
    "meds": "medication orders",
    "medstatements": "medication statements",
    "allergies": "allergy list",
    "procedures": "radiotherapy history",
    "imaging": "imaging reports",
    "prognosis": "prognosis scores",
}

# category name used by the fact extractor -> prefetch keys that provide it
CATEGORIES: dict[str, tuple[str, ...]] = {
    "conditions": ("conditions",),
    "labs": ("labs",),
    "ps_pain": ("ps_pain",),
    "findings": ("findings",),
    # the medication list is complete only with both: warfarin is often recorded as a MedicationStatement
    "meds": ("meds", "medstatements"),
    "allergies": ("allergies",),
    "procedures": ("procedures",),
    "imaging": ("imaging",),
    "prognosis": ("prognosis",),
}


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    usage: str

    def discovery(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH),
            "usageRequirements": self.usage,
        }


USAGE = (
    "Send FHIR R4 data via the prefetch templates, or grant a fhirAuthorization token with read access "
    "to Patient, Condition, Observation, MedicationRequest, MedicationStatement, AllergyIntolerance, "
    "Procedure, DiagnosticReport and RiskAssessment (SORG output). Patient and Condition data are required "
    "(412 without them). "
    "Local findings (SINS, ESCC, STIR, fracture morphology, exam) use the CodeSystem "
    f"{LOCAL_SYSTEM}."
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            "spine-metastasis-review",
            "patient-view",
            "Metastatic spine: augmentation and radiotherapy review",
            "Reviews a patient with spinal metastases: vertebral augmentation (vertebroplasty/kyphoplasty) "
            "eligibility, palliative radiotherapy options, cord-compression emergencies and missing work-up. "
            "Every card lists the rules and FHIR facts behind it.",
            USAGE,
        ),
        ServiceDefinition(
            "spine-procedure-order-select",
            "order-select",
            "Vertebral augmentation / radiotherapy order check",
            "Checks a draft ServiceRequest for vertebroplasty/kyphoplasty (levels, prophylactic levels) or a "
            "palliative radiotherapy course against the patient's data while it is being selected.",
            USAGE,
        ),
        ServiceDefinition(
            "spine-procedure-order-sign",
            "order-sign",
            "Vertebral augmentation / radiotherapy order sign-off",
            "Checks draft vertebroplasty/kyphoplasty and radiotherapy orders at signing: contraindications, "
            "level limits, missing work-up.",
            USAGE,
        ),
    )
}

# context fields the hook definitions require (CDS Hooks Library)
REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    "patient-view": ("userId", "patientId"),
    "order-select": ("userId", "patientId", "selections", "draftOrders"),
    "order-sign": ("userId", "patientId", "draftOrders"),
}


def template_type(key: str) -> tuple[str, bool]:
    """(resource type, is a search) of a prefetch key's template."""
    template = PREFETCH[key]
    is_search = "?" in template
    return re.split(r"[?/]", template, maxsplit=1)[0], is_search
