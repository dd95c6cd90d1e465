"""Writes the standard-coded patient cases (tests/cases-standard/*.json) from compact specs.

Run: .venv/bin/python tests/cases-standard/generate.py   (rewrites every std-*.json, with the "xfail" reason
of XFAIL for the cases the service gets wrong today). Every code used here is listed, with its published source,
in CODES.md; `tests/test_standard_cases.py` checks that no code is used that CODES.md does not list.

The patients are coded the way EHRs code them: problems in ICD-10-CM and SNOMED CT, labs in LOINC with
UCUM units, medications as RxNorm clinical/branded drugs (SCD/SBD), imaging as DiagnosticReport with
LOINC codes and SNOMED conclusionCode, procedures in CPT or SNOMED, mCODE profiles. Local codes only
where no standard exists (STIR signal, midline pain, neuro-exam result, SINS, ESCC, morphology %).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
LOCAL = "https://fhir.spinecds.org/CodeSystem/spinecds-local"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CCAT = "http://terminology.hl7.org/CodeSystem/condition-category"
OCAT = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
ACLIN = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
AVER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

# SNOMED vertebral-body codes (mCODE CM_TG263 via fhir_profiles/ValueSet-vertebral-levels.json)
LEVEL = {
    "T4": ("86197001", "Structure of body of fourth thoracic vertebra (body structure)"),
    "T8": ("77435000", "Structure of body of eighth thoracic vertebra (body structure)"),
    "T10": ("48405002", "Structure of body of tenth thoracic vertebra (body structure)"),
    "T11": ("52120002", "Structure of body of eleventh thoracic vertebra (body structure)"),
    "T12": ("280849005", "Structure of body of twelfth thoracic vertebra (body structure)"),
    "L1": ("61032001", "Structure of body of first lumbar vertebra (body structure)"),
    "L2": ("53983007", "Structure of body of second lumbar vertebra (body structure)"),
    "L3": ("55492004", "Structure of body of third lumbar vertebra (body structure)"),
}

# ---- codes (display = the published display; source in CODES.md)
DX = {
    "C79.51": (ICD, "Secondary malignant neoplasm of bone"),
    "C50.911": (ICD, "Malignant neoplasm of unspecified site of right female breast"),
    "C61": (ICD, "Malignant neoplasm of prostate"),
    "C34.91": (ICD, "Malignant neoplasm of unspecified part of right bronchus or lung"),
    "C34.11": (ICD, "Malignant neoplasm of upper lobe, right bronchus or lung"),
    "C62.10": (ICD, "Malignant neoplasm of unspecified descended testis"),
    "C90.00": (ICD, "Multiple myeloma not having achieved remission"),
    "C83.39": (ICD, "Diffuse large B-cell lymphoma, extranodal and solid organ sites"),
    "C64.1": (ICD, "Malignant neoplasm of right kidney, except renal pelvis"),
    "C53.9": (ICD, "Malignant neoplasm of cervix uteri, unspecified"),
    "C32.9": (ICD, "Malignant neoplasm of larynx, unspecified"),
    "C74.90": (ICD, "Malignant neoplasm of unspecified part of unspecified adrenal gland"),
    "M84.58XA": (ICD, "Pathological fracture in neoplastic disease, other specified site, initial encounter for "
                 "fracture"),
    "M48.56XA": (ICD, "Collapsed vertebra, not elsewhere classified, lumbar region, initial encounter for fracture"),
    "M48.50XA": (ICD, "Collapsed vertebra, not elsewhere classified, site unspecified, initial encounter for fracture"),
    "M80.08XA": (ICD, "Age-related osteoporosis with current pathological fracture, vertebra(e), initial encounter for "
                 "fracture"),
    "G95.20": (ICD, "Unspecified cord compression"),
    "G82.21": (ICD, "Paraplegia, complete"),
    "G82.22": (ICD, "Paraplegia, incomplete"),
    "G83.4": (ICD, "Cauda equina syndrome"),
    "R33.9": (ICD, "Retention of urine, unspecified"),
    "A41.01": (ICD, "Sepsis due to Methicillin susceptible Staphylococcus aureus"),
    "A41.9": (ICD, "Sepsis, unspecified organism"),
    "M46.36": (ICD, "Infection of intervertebral disc (pyogenic), lumbar region"),
    "M46.26": (ICD, "Osteomyelitis of vertebra, lumbar region"),
    "D69.6": (ICD, "Thrombocytopenia, unspecified"),
    "K74.60": (ICD, "Unspecified cirrhosis of liver"),
    "Z91.041": (ICD, "Radiographic dye allergy status"),
    "Z92.3": (ICD, "Personal history of irradiation"),
    "M48.062": (ICD, "Spinal stenosis, lumbar region with neurogenic claudication"),
    "M54.16": (ICD, "Radiculopathy, lumbar region"),
    "I10": (ICD, "Essential (primary) hypertension"),
    "I50.9": (ICD, "Heart failure, unspecified"),
    "94222008": (SCT, "Secondary malignant neoplasm of bone"),
    "94602001": (SCT, "Secondary malignant neoplasm of vertebral column"),
    "372064008": (SCT, "Malignant neoplasm of female breast (disorder)"),
    "408643008": (SCT, "Infiltrating duct carcinoma of breast (disorder)"),
    "254632001": (SCT, "Small cell carcinoma of lung (disorder)"),
    "254637007": (SCT, "Non-small cell lung cancer (disorder)"),
    "313429000": (SCT, "Seminoma of descended testis (disorder)"),
    "109989006": (SCT, "Multiple myeloma (disorder)"),
    "118600007": (SCT, "Malignant lymphoma (disorder)"),
    "71286001": (SCT, "Spinal cord compression (disorder)"),
    "91302008": (SCT, "Sepsis (disorder)"),
    "84114007": (SCT, "Heart failure (disorder)"),
}

LAB = {  # LOINC
    "777-3": "Platelets [#/volume] in Blood by Automated count",
    "26515-7": "Platelets [#/volume] in Blood",
    "6301-6": "INR in Platelet poor plasma by Coagulation assay",
    "34714-6": "INR in Blood by Coagulation assay",
    "46418-0": "INR in Capillary blood by Coagulation assay",
    "72514-3": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    "38208-5": "Pain severity - Reported",
    "89247-1": "ECOG Performance Status score",
    "89243-0": "Karnofsky Performance Status score",
}

DRUG = {  # RxNorm SCD / SBD
    "1049621": "oxycodone hydrochloride 5 MG Oral Tablet",
    "1049683": "oxycodone hydrochloride 10 MG Oral Tablet",
    "1049504": "Abuse-Deterrent 12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet [Oxycontin]",
    "1049640": "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet [Percocet]",
    "197696": "72 HR fentanyl 0.075 MG/HR Transdermal System",
    "892582": "morphine sulfate 15 MG Oral Tablet",
    "897696": "hydromorphone hydrochloride 2 MG Oral Tablet",
    "835603": "tramadol hydrochloride 50 MG Oral Tablet",
    "855332": "Warfarin Sodium 5 MG Oral Tablet",
    "1364445": "apixaban 5 MG Oral Tablet",
    "1037045": "dabigatran etexilate 150 MG Oral Capsule",
    "854235": "0.4 ML Enoxaparin sodium 100 MG/ML Prefilled Syringe",
    "197582": "Dexamethasone 4 MG Oral Tablet",
    "200064": "letrozole 2.5 MG Oral Tablet",
}

MRI = {  # LOINC imaging
    "24980-5": "MR Thoracic spine",
    "24968-0": "MR Lumbar spine",
    "36531-2": "MR Spine WO contrast",
}

DAY = "2026-05-30"  # the suite's clock is 2026-06-01T12:00Z


def cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def dx(*codes: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": DX[c][0], "code": c, "display": DX[c][1]} for c in codes]}
    if text:
        concept["text"] = text
    return concept


def site(*levels: str) -> list[dict[str, Any]]:
    return [cc(SCT, LEVEL[lv][0], LEVEL[lv][1]) for lv in levels]


class Patient:
    """One patient's resources, built with consistent ids and subject references."""

    def __init__(self, pid: str, birth: str = "1961-04-12", gender: str = "female") -> None:
        self.pid = pid
        self.res: dict[str, dict[str, Any]] = {}
        self.n = 0
        self.add("patient", {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth})

    def ref(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def add(self, name: str, resource: dict[str, Any]) -> dict[str, Any]:
        self.res[name] = resource
        return resource

    def drop(self, *names: str) -> Patient:
        for name in names:
            self.res.pop(name)
        return self

    def _id(self, stem: str) -> str:
        self.n += 1
        return f"{self.pid}-{stem}-{self.n}"

    # ---- conditions
    def condition(
        self,
        name: str,
        *codes: str,
        levels: tuple[str, ...] = (),
        onset: str | None = "2026-05-20",
        profile: str | None = None,
        status: str = "active",
        verification: str = "confirmed",
        category: str = "problem-list-item",
        **extra: Any,
    ) -> dict[str, Any]:
        r: dict[str, Any] = {"resourceType": "Condition", "id": self._id(name)}
        if profile:
            r["meta"] = {"profile": [MCODE + profile]}
        r["clinicalStatus"] = cc(CLIN, status)
        r["verificationStatus"] = cc(VER, verification)
        r["category"] = [cc(CCAT, category)]
        r["code"] = dx(*codes)
        if levels:
            r["bodySite"] = site(*levels)
        r["subject"] = self.ref()
        if onset:
            r["onsetDateTime"] = onset
        r["recordedDate"] = onset or "2026-05-20"
        r.update(extra)
        return self.add(name, r)

    def primary(self, *codes: str, onset: str = "2024-09-03") -> dict[str, Any]:
        return self.condition("primary", *codes, onset=onset, profile="mcode-primary-cancer-condition")

    def secondary(self, *levels: str, codes: tuple[str, ...] = ("C79.51", "94222008"), name: str = "met") -> dict:
        r = self.condition(name, *codes, levels=levels, onset="2026-05-18", profile="mcode-secondary-cancer-condition")
        if "primary" in self.res:
            r["extension"] = [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/condition-related",
                    "valueReference": {"reference": f"Condition/{self.res['primary']['id']}"},
                }
            ]
        return r

    # ---- observations
    def obs(
        self,
        name: str,
        system: str,
        code: str,
        display: str | None,
        category: str | None,
        value: dict[str, Any],
        *,
        when: str = DAY,
        level: str | None = None,
        profile: str | None = None,
    ) -> dict[str, Any]:
        r: dict[str, Any] = {"resourceType": "Observation", "id": self._id(name)}
        if profile:
            r["meta"] = {"profile": [MCODE + profile]}
        r["status"] = "final"
        if category:
            r["category"] = [cc(OCAT, category)]
        r["code"] = cc(system, code, display)
        r["subject"] = self.ref()
        r["effectiveDateTime"] = when
        r.update(value)
        if level:
            r["bodySite"] = site(level)[0]
        return self.add(name, r)

    def lab(self, name: str, loinc: str, value: float, unit: str | None, *, when: str = "2026-05-29") -> dict:
        q: dict[str, Any] = {"value": value}
        if unit is not None:
            q.update({"unit": unit, "system": UCUM, "code": unit})
        return self.obs(name, LOINC, loinc, LAB[loinc], "laboratory", {"valueQuantity": q}, when=when)

    def pain(self, value: int, *, loinc: str = "72514-3", when: str = DAY, name: str = "pain") -> dict:
        return self.obs(name, LOINC, loinc, LAB[loinc], "survey", {"valueInteger": value}, when=when)

    def ecog(self, value: int) -> dict[str, Any]:
        return self.obs("ecog", LOINC, "89247-1", LAB["89247-1"], "survey", {"valueInteger": value},
                        profile="mcode-ecog-performance-status")

    def kps(self, value: int) -> dict[str, Any]:
        return self.obs("kps", LOINC, "89243-0", LAB["89243-0"], "survey", {"valueInteger": value},
                        profile="mcode-karnofsky-performance-status")

    def local(self, name: str, code: str, value: dict[str, Any], level: str | None = None, when: str = DAY) -> dict:
        return self.obs(name, LOCAL, code, None, "exam" if level is None else "imaging", value, when=when,
                        level=level)

    # ---- imaging
    def mri(
        self,
        loinc: str,
        conclusion: str,
        *,
        codes: tuple[str, ...] = (),
        when: str = "2026-05-28",
        name: str = "mri",
    ) -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": self._id(name),
            "status": "final",
            "category": [cc(V2_0074, "RAD", "Radiology")],
            "code": cc(LOINC, loinc, MRI[loinc]),
            "subject": self.ref(),
            "effectiveDateTime": when,
            "issued": when + "T16:00:00Z",
            "conclusion": conclusion,
        }
        if codes:
            r["conclusionCode"] = [dx(c) for c in codes]
        return self.add(name, r)

    # ---- medications
    def _med_concept(self, rxcui: str) -> dict[str, Any]:
        return cc(RX, rxcui, DRUG[rxcui])

    def med(self, name: str, rxcui: str, *, how: str = "concept", status: str = "active",
            authored: str = "2026-05-20") -> dict[str, Any]:
        """how: concept (medicationCodeableConcept) | contained | reference (a Medication in the same
        search Bundle, as `_include=MedicationRequest:medication` returns it) | statement (MedicationStatement)."""
        rid = self._id(name)
        if how == "statement":
            r: dict[str, Any] = {
                "resourceType": "MedicationStatement",
                "id": rid,
                "status": status,
                "medicationCodeableConcept": self._med_concept(rxcui),
                "subject": self.ref(),
                "effectivePeriod": {"start": authored},
                "dateAsserted": authored,
            }
            return self.add(name, r)
        r = {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order"}
        if how == "concept":
            r["medicationCodeableConcept"] = self._med_concept(rxcui)
        elif how == "contained":
            r["contained"] = [{"resourceType": "Medication", "id": "m1", "code": self._med_concept(rxcui)}]
            r["medicationReference"] = {"reference": "#m1", "display": DRUG[rxcui]}
        elif how == "reference":
            medication = {"resourceType": "Medication", "id": f"{rid}-medication", "code": self._med_concept(rxcui)}
            self.add(name + "-medication", medication)
            r["medicationReference"] = {"reference": f"Medication/{medication['id']}", "display": DRUG[rxcui]}
        r["subject"] = self.ref()
        r["authoredOn"] = authored
        r["dosageInstruction"] = [{"text": "as directed"}]
        return self.add(name, r)

    def allergy_text(self, text: str = "penicillin", name: str = "allergy") -> dict[str, Any]:
        return self.add(name, {
            "resourceType": "AllergyIntolerance",
            "id": self._id(name),
            "clinicalStatus": cc(ACLIN, "active"),
            "verificationStatus": cc(AVER, "confirmed"),
            "code": {"text": text},
            "patient": self.ref(),
            "recordedDate": "2025-01-10",
        })

    def allergy(self, code: str, display: str, name: str = "allergy-ci") -> dict[str, Any]:
        return self.add(name, {
            "resourceType": "AllergyIntolerance",
            "id": self._id(name),
            "clinicalStatus": cc(ACLIN, "active"),
            "verificationStatus": cc(AVER, "confirmed"),
            "category": ["medication"],
            "code": cc(SCT, code, display),
            "patient": self.ref(),
            "recordedDate": "2025-01-10",
        })

    def rt_course(self, level: str, start: str, end: str, *, dose_cgy: int | None = 800, fractions: int | None = 1,
                  code: tuple[str, str, str] = (SCT, "1217123003", "Radiotherapy course of treatment (regime/therapy)"),
                  name: str = "rt") -> dict[str, Any]:
        r: dict[str, Any] = {"resourceType": "Procedure", "id": self._id(name)}
        if code[1] == "1217123003":
            r["meta"] = {"profile": [MCODE + "mcode-radiotherapy-course-summary"]}
            ext: list[dict[str, Any]] = [
                {
                    "url": MCODE + "mcode-procedure-intent",
                    "valueCodeableConcept": cc(SCT, "363676003", "Palliative - procedure intent"),
                },
            ]
            if dose_cgy is not None:
                ext.append({
                    "url": MCODE + "mcode-radiotherapy-dose-delivered-to-volume",
                    "extension": [
                        {"url": "totalDoseDelivered", "valueQuantity": {"value": dose_cgy, "unit": "cGy",
                                                                          "system": UCUM, "code": "cGy"}},
                        *([{"url": "fractionsDelivered", "valueUnsignedInt": fractions}] if fractions else []),
                    ],
                })
            r["extension"] = ext
        r["status"] = "completed"
        r["code"] = cc(*code)
        r["subject"] = self.ref()
        r["performedPeriod"] = {"start": start, "end": end}
        r["bodySite"] = site(level)
        return self.add(name, r)

    def resources(self) -> list[dict[str, Any]]:
        return list(self.res.values())


def service_request(pid: str, rid: str, cpt: str, display: str, *levels: str, system: str = CPT) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": cc(system, cpt, display),
        "subject": {"reference": f"Patient/{pid}"},
        "bodySite": site(*levels),
    }


def draft_med(pid: str, rid: str, rxcui: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": cc(RX, rxcui, DRUG[rxcui]),
        "subject": {"reference": f"Patient/{pid}"},
        "dosageInstruction": [{"text": "1 tablet every 4 hours as needed for pain"}],
    }


CPT_VA = {
    "22510": "Percutaneous vertebroplasty, 1 vertebral body, unilateral or bilateral injection; cervicothoracic",
    "22511": "Percutaneous vertebroplasty, 1 vertebral body, unilateral or bilateral injection; lumbosacral",
    "22513": "Percutaneous vertebral augmentation, including cavity creation, 1 vertebral body; thoracic",
    "22514": "Percutaneous vertebral augmentation, including cavity creation, 1 vertebral body; lumbar",
}


# ---------------------------------------------------------------- the standard patient
def standard(pid: str, level: str = "T12", *, primary: tuple[str, ...] = ("C50.911", "408643008"),
             opioid: str | None = "1049621", how: str = "concept", birth: str = "1961-04-12") -> Patient:
    """RULE-CATALOGUE §5.5 worked example in standard codes: breast primary, bone metastasis and acute
    pathological fracture at `level`, MRI of that region, NRS 8 on a strong opioid SCD, platelets 180
    x10^3/uL and INR 1.0 two days ago, allergy list reviewed (penicillin only), ECOG 1, neuro exam normal."""
    p = Patient(pid, birth=birth)
    p.primary(*primary)
    p.secondary(level)
    p.condition("vcf", "M84.58XA", levels=(level,), onset="2026-05-25")
    region = "24980-5" if level.startswith("T") else "24968-0"
    p.mri(region, f"Acute pathological compression fracture of {level} with marrow oedema on STIR; "
          "no epidural extension; no cord compression.")
    p.local("stir", "stir-hyperintense-vertebra", {"valueBoolean": True}, level=level, when="2026-05-28")
    p.local("escc", "escc-grade", {"valueCodeableConcept": cc(LOCAL, "escc-0", "ESCC grade 0")}, level=level,
            when="2026-05-28")
    p.local("midline", "pain-midline-reproducible", {"valueBoolean": True})
    p.local("neuro", "neuro-deficit", {"valueBoolean": False})
    p.pain(8)
    p.ecog(1)
    p.lab("plt", "777-3", 180, "10*3/uL")
    p.lab("inr", "6301-6", 1.0, "{INR}")
    if opioid:
        p.med("opioid", opioid, how=how)
    p.allergy_text()
    return p


def deficit_no_mri(pid: str, level: str = "T12") -> Patient:
    """Known spinal metastasis, new bilateral leg weakness coded G82.21 and urinary retention R33.9 (onset
    yesterday), no MRI yet, no exam Observation: suspected MSCC (issue 13)."""
    p = standard(pid, level)
    p.drop("mri", "stir", "escc", "neuro")
    p.condition("deficit", "G82.21", onset="2026-05-31", category="encounter-diagnosis")
    p.condition("retention", "R33.9", onset="2026-05-31", category="encounter-diagnosis")
    return p


# Cases the service gets wrong today (run as strict xfail). "[cause]" tags group them for the fact-layer work;
# "(then: ...)" says what still fails once the first cause is fixed (measured by adding ingredient codes).
SCD = "[rxnorm-scd] opioid SCD/SBD not mapped to a WHO step (ingredient-level match only)"
XFAIL: dict[str, str] = {
    "std-md12-history-of-irradiation-z923": "[rt-history] Z92.3 history of irradiation beside a course summary: no "
    "MD-12 ask for the prior course's dose and levels",
    "std-rt08-lymphoma-c8339": "[skeletal-heme] lymphoma C83.39 counts as spinal disease only with a vertebral "
    "bodySite: with a pathological fracture and no C79.51, no RT-01",
    "std-rt10-prior-rt-cpt-77427": "[rt-history] an RT Procedure coded only CPT 77427 is not in radiotherapy-course: "
    "no RT-10/MD-12, first-course RT-02 offered",
    "std-sup10-breast-snomed-only": "[snomed-primary] breast cancer SNOMED 372064008 is not in "
    "primary-hormone-sensitive: no SUP-10",
    "std-va19-radiculopathy-m5416": "[radicular] radiculopathy M54.16 is not read as radicular/off-midline pain: no "
    "VA-19/VA-23/SUP-05",
}


Case = dict[str, Any]
CASES: dict[str, Callable[[], Case]] = {}


def case(fn: Callable[[], Case]) -> Callable[[], Case]:
    CASES["std-" + fn.__name__.replace("_", "-")] = fn
    return fn


def mk(desc: str, p: Patient, expect: dict[str, Any], **extra: Any) -> Case:
    out: Case = {"description": desc}
    out.update(extra)
    out["resources"] = p.resources()
    out["expect"] = expect
    return out


EMERGENCY = {"cards": {"emergency-mscc": "critical"}}
ROUTINE_SUPPRESSED = ["VA-22", "VA-23", "VA-31", "RT-02"]


# ================================================================ emergency: cord compression
@case
def mscc_problem_list_g9520() -> Case:
    p = standard("mscc1")
    p.drop("neuro", "mri", "escc")  # compression diagnosed; no normal exam or clear MRI to contradict it
    p.condition("scc", "G95.20", levels=("T12",), onset="2026-05-31", category="encounter-diagnosis")
    return mk("Cord compression on the problem list as ICD-10-CM G95.20 at T12 (with the T12 bone metastasis): "
              "NEU-01 emergency, critical, and no routine eligibility advice (VA-06 instead).",
              p, {"fire": ["NEU-01", "VA-06"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_snomed_condition() -> Case:
    p = standard("mscc2")
    p.drop("neuro", "mri", "escc")  # compression diagnosed; no normal exam or clear MRI to contradict it
    p.condition("scc", "71286001", levels=("T12",), onset="2026-05-31", category="encounter-diagnosis")
    return mk("Spinal cord compression as SNOMED CT 71286001 (encounter diagnosis): NEU-01 emergency, critical.",
              p, {"fire": ["NEU-01"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_new_deficit_no_mri() -> Case:
    p = deficit_no_mri("mscc3")
    return mk("Spinal metastasis at T12, new bilateral leg weakness (G82.21) and urinary retention (R33.9) since "
              "yesterday, no MRI yet: a suspected metastatic cord compression is an emergency before imaging "
              "confirms it (same-day MRI, dexamethasone, urgent referrals) - NEU-01 critical.",
              p, {"fire": ["NEU-01"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_mri_conclusion_code() -> Case:
    p = standard("mscc4")
    p.drop("mri", "neuro")
    p.mri("24980-5", "Pathological fracture of T12 with epidural tumour compressing the spinal cord.",
          codes=("71286001",), when="2026-05-31")
    p.condition("deficit", "G82.22", onset="2026-05-31", category="encounter-diagnosis")
    return mk("MRI thoracic spine (LOINC 24980-5) whose conclusionCode is SNOMED 71286001 spinal cord compression, "
              "with incomplete paraplegia G82.22 of new onset: NEU-01 critical.",
              p, {"fire": ["NEU-01"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_deficit_g8222_escc3() -> Case:
    p = standard("mscc11")
    p.drop("neuro", "escc")
    p.local("escc", "escc-grade", {"valueCodeableConcept": cc(LOCAL, "escc-3", "ESCC grade 3")}, level="T12",
            when="2026-05-31")
    p.condition("deficit", "G82.22", onset="2026-05-31", category="encounter-diagnosis")
    return mk("New incomplete paraplegia G82.22 (no local neuro-exam Observation) with ESCC 3 at T12: deficit with "
              "high-grade ESCC is D-MSCC - NEU-01 critical.",
              p, {"fire": ["NEU-01"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_cauda_equina_g834() -> Case:
    p = standard("mscc5", "L3")
    p.drop("neuro", "mri", "escc")  # compression diagnosed; no normal exam or clear MRI to contradict it
    p.condition("ces", "G83.4", onset="2026-05-31", category="encounter-diagnosis")
    p.condition("retention", "R33.9", onset="2026-05-31", category="encounter-diagnosis")
    return mk("Bone metastasis and fracture at L3, cauda equina syndrome G83.4 with urinary retention R33.9 of new "
              "onset: NEU-01 critical (cauda equina compression counts as MSCC).",
              p, {"fire": ["NEU-01"], "not_fire": ROUTINE_SUPPRESSED, **EMERGENCY})


@case
def mscc_order_select_medication_draft() -> Case:
    p = standard("mscc6")
    p.drop("neuro", "mri", "escc")  # compression diagnosed; no normal exam or clear MRI to contradict it
    p.condition("scc", "G95.20", levels=("T12",), onset="2026-05-31", category="encounter-diagnosis")
    return mk("order-select with only a MedicationRequest draft (oxycodone 10 mg SCD) for a patient with G95.20 "
              "cord compression: the emergency outranks whatever is being ordered - NEU-01 critical.",
              p, {"fire": ["NEU-01"], "not_fire": ["VA-22", "VA-23"], **EMERGENCY},
              hook="order-select", draft_orders=[draft_med("mscc6", "mscc6-draft-oxy", "1049683")])


@case
def mscc_order_sign_medication_draft() -> Case:
    p = deficit_no_mri("mscc7")
    return mk("order-sign of an oxycodone 10 mg SCD draft for a patient with a spinal metastasis and new G82.21 "
              "weakness + R33.9 retention, no MRI yet: suspected MSCC, NEU-01 critical at order-sign too.",
              p, {"fire": ["NEU-01"], "not_fire": ["VA-22", "VA-23"], **EMERGENCY},
              hook="order-sign", draft_orders=[draft_med("mscc7", "mscc7-draft-oxy", "1049683")])


@case
def mscc_order_select_kyphoplasty_cpt_22513() -> Case:
    p = deficit_no_mri("mscc8")
    sr = service_request("mscc8", "mscc8-draft-kp", "22513", CPT_VA["22513"], "T12")
    return mk("order-select of a kyphoplasty draft coded CPT 22513 at T12 for a patient with new G82.21 weakness + "
              "R33.9 retention and a T12 metastasis: do not proceed (VA-06), NEU-01 critical.",
              p, {"fire": ["NEU-01", "VA-06"], "not_fire": ["VA-22", "VA-23", "VA-24"], **EMERGENCY},
              hook="order-select", draft_orders=[sr])


@case
def mscc_order_sign_vertebroplasty_cpt_22511() -> Case:
    p = standard("mscc9", "L2")
    p.drop("mri", "neuro")
    p.mri("24968-0", "L2 pathological fracture with epidural disease compressing the thecal sac and conus.",
          codes=("71286001",), when="2026-05-31")
    p.condition("deficit", "G82.22", onset="2026-05-31", category="encounter-diagnosis")
    sr = service_request("mscc9", "mscc9-draft-vp", "22511", CPT_VA["22511"], "L2")
    return mk("order-sign of a vertebroplasty draft CPT 22511 at L2; lumbar MRI (24968-0) conclusionCode 71286001 "
              "and new incomplete paraplegia G82.22: VA-06 + NEU-01 critical.",
              p, {"fire": ["NEU-01", "VA-06"], "not_fire": ["VA-22", "VA-23"], **EMERGENCY},
              hook="order-sign", draft_orders=[sr])


@case
def mscc_refuted_g9520_not() -> Case:
    p = standard("mscc10")
    p.condition("scc", "G95.20", levels=("T12",), onset="2026-05-20", verification="refuted")
    return mk("G95.20 recorded but refuted (verificationStatus refuted), neuro exam normal: no emergency; the "
              "worked-example patient is eligible (VA-22).",
              p, {"fire": ["VA-22", "RT-01"], "not_fire": ["NEU-01", "VA-06"], "absent_cards": ["emergency-mscc"]})


# ================================================================ VA eligibility
@case
def va_eligible_oxycodone_scd() -> Case:
    p = standard("elig1")
    return mk("Worked example (RULE-CATALOGUE §5.5) in standard codes: M84.58XA + C79.51 at T12, STIR oedema, "
              "NRS 8 on oxycodone 5 mg SCD 1049621, platelets 180 10*3/uL, INR 1.0, allergies reviewed: VA-22 "
              "eligible, RT-01 and VA-31; a patient on a strong opioid is not told to move to step 3.",
              p, {"fire": ["VA-22", "RT-01", "VA-31"],
                  "not_fire": ["VA-24", "VA-25", "SUP-01", "SUP-02", "SUP-03", "NEU-01", "MD-02", "MD-05"]})


@case
def va_eligible_lumbar_m4856xa_sbd_contained() -> Case:
    p = standard("elig2", "L2", opioid="1049504", how="contained")
    p.drop("vcf")
    p.condition("vcf", "M48.56XA", levels=("L2",), onset="2026-05-25")
    return mk("Collapsed lumbar vertebra M48.56XA at L2 (with C79.51 at L2), lumbar MRI LOINC 24968-0, on "
              "OxyContin SBD 1049504 sent as medicationReference to a contained Medication: eligible (VA-22); "
              "the lumbar MRI is axial imaging (no MD-02); no step-3 advice.",
              p, {"fire": ["VA-22"], "not_fire": ["MD-02", "SUP-03", "SUP-02", "VA-24", "NEU-01"]})


@case
def va_eligible_medication_reference_included() -> Case:
    p = standard("elig3", how="reference")
    return mk("Oxycodone 5 mg SCD sent as medicationReference to a Medication returned in the same search Bundle "
              "(_include=MedicationRequest:medication): read exactly like medicationCodeableConcept - VA-22.",
              p, {"fire": ["VA-22"], "not_fire": ["SUP-03", "SUP-02", "VA-24"]})


@case
def va_eligible_medication_statement() -> Case:
    p = standard("elig4", how="statement")
    return mk("Oxycodone 5 mg SCD recorded as an active MedicationStatement (no MedicationRequest): the opioid "
              "counts (step 3) - VA-22, no step-3 advice.",
              p, {"fire": ["VA-22"], "not_fire": ["SUP-03", "SUP-02", "SUP-01", "VA-24"]})


@case
def va_eligible_hydromorphone_scd() -> Case:
    p = standard("elig5", opioid="897696")
    return mk("On hydromorphone 2 mg SCD 897696 (step 3), NRS 8: eligible (VA-22); refractory pain on a strong "
              "opioid (SUP-04), never 'move to step 3'.",
              p, {"fire": ["VA-22", "SUP-04"], "not_fire": ["SUP-03", "SUP-02"]})


@case
def va_order_sign_kyphoplasty_cpt_22513_eligible() -> Case:
    p = standard("elig6")
    sr = service_request("elig6", "elig6-draft-kp", "22513", CPT_VA["22513"], "T12")
    return mk("order-sign of a kyphoplasty draft CPT 22513 at the fractured T12 for the eligible worked-example "
              "patient: VA-22 and the kyphoplasty note VA-32; the level is fractured (no VA-27).",
              p, {"fire": ["VA-22", "VA-32"], "not_fire": ["VA-27", "VA-26", "VA-24", "NEU-01"]},
              hook="order-sign", draft_orders=[sr])


@case
def va_order_select_vertebroplasty_unfractured_level() -> Case:
    p = standard("elig7", "L2")
    sr = service_request("elig7", "elig7-draft-vp", "22511", CPT_VA["22511"], "L2", "L3")
    return mk("order-select of a vertebroplasty draft CPT 22511 at L2 and L3, only L2 fractured: prophylactic "
              "augmentation of L3 is generally not indicated (VA-27).",
              p, {"fire": ["VA-27"], "not_fire": ["VA-26", "NEU-01"]},
              hook="order-select", draft_orders=[sr])


@case
def va_four_painful_levels_patient_view() -> Case:
    p = standard("elig8", "T11")
    for lv in ("T12", "L1", "L2"):
        p.secondary(lv, name=f"met-{lv}")
        p.condition(f"vcf-{lv}", "M84.58XA", levels=(lv,), onset="2026-05-25")
        p.local(f"stir-{lv}", "stir-hyperintense-vertebra", {"valueBoolean": True}, level=lv, when="2026-05-28")
    return mk("Four acute painful pathological fractures (M84.58XA at T11, T12, L1, L2, STIR oedema at each) at "
              "patient-view: more than three levels means a staged procedure (VA-26), not only when an order is "
              "drafted.",
              p, {"fire": ["VA-26"], "not_fire": ["NEU-01"]})


# ================================================================ absolute contraindications
def ci_case(pid: str, desc: str, fire: list[str], build: Callable[[Patient], Any], **kw: Any) -> Case:
    p = standard(pid)
    build(p)
    return mk(desc, p, {"fire": fire, "not_fire": ["VA-22", "VA-23", "VA-31"], **kw})


@case
def va07_sepsis_a4101() -> Case:
    return ci_case("ci1", "Sepsis due to MSSA, ICD-10-CM A41.01 (a child of A41.0): active infection, VA-07 "
                   "critical, not eligible (VA-25).", ["VA-07", "VA-25"],
                   lambda p: p.condition("sepsis", "A41.01", onset="2026-05-29", category="encounter-diagnosis"))


@case
def va07_sepsis_snomed() -> Case:
    return ci_case("ci2", "Sepsis as SNOMED CT 91302008 (Synthea coding): VA-07.", ["VA-07", "VA-25"],
                   lambda p: p.condition("sepsis", "91302008", onset="2026-05-29", category="encounter-diagnosis"))


@case
def va07_discitis_m4636() -> Case:
    return ci_case("ci3", "Pyogenic discitis, lumbar, ICD-10-CM M46.36 (local infection): VA-07.", ["VA-07"],
                   lambda p: p.condition("discitis", "M46.36", onset="2026-05-27"))


@case
def va07_vertebral_osteomyelitis_m4626() -> Case:
    return ci_case("ci4", "Vertebral osteomyelitis, lumbar, ICD-10-CM M46.26: VA-07.", ["VA-07"],
                   lambda p: p.condition("osteo", "M46.26", onset="2026-05-27"))


def _warfarin_inr(p: Patient, loinc: str, value: float) -> None:
    p.med("warfarin", "855332", authored="2026-04-01")
    p.drop("inr")
    p.lab("inr", loinc, value, "{INR}")


@case
def va09_warfarin_scd_inr_2_5() -> Case:
    return ci_case("ci5", "On warfarin 5 mg SCD 855332 with INR 2.5 (LOINC 34714-6) and no correction documented: "
                   "coagulopathy, correctability unknown - VA-09 (correct first), eligibility pending (VA-24), "
                   "never VA-22.", ["VA-09", "VA-24"], lambda p: _warfarin_inr(p, "34714-6", 2.5))


@case
def va09_warfarin_poc_inr_46418_0() -> Case:
    return ci_case("ci6", "On warfarin SCD, point-of-care INR 3.1 (LOINC 46418-0, capillary blood): VA-09.",
                   ["VA-09"], lambda p: _warfarin_inr(p, "46418-0", 3.1))


def _plt(p: Patient, loinc: str, value: float, unit: str | None) -> None:
    p.drop("plt")
    p.lab("plt", loinc, value, unit)


@case
def va09_platelets_40_26515_7() -> Case:
    return ci_case("ci7", "Platelets 40 10*3/uL coded LOINC 26515-7: below 50 x10^9/L - VA-09, eligibility "
                   "pending (VA-24).", ["VA-09", "VA-24"], lambda p: _plt(p, "26515-7", 40, "10*3/uL"))


@case
def va09_platelets_40000_per_ul() -> Case:
    return ci_case("ci8", "Platelets 40000 /uL (UCUM '/uL', LOINC 777-3) = 40 x10^9/L: VA-09; read in the "
                   "threshold's unit, not as 40000 x10^9/L.", ["VA-09"], lambda p: _plt(p, "777-3", 40000, "/uL"))


@case
def platelets_180000_per_ul_normal() -> Case:
    p = standard("ci9")
    _plt(p, "777-3", 180000, "/uL")
    return mk("Platelets 180000 /uL (= 180 x10^9/L, normal) with INR 1.0: no coagulopathy; eligible (VA-22).",
              p, {"fire": ["VA-22"], "not_fire": ["VA-09", "VA-08", "VA-24"]})


@case
def va09_thrombocytopenia_d696() -> Case:
    return ci_case("ci10", "Thrombocytopenia D69.6 on the problem list (platelets not recent): coagulopathy "
                   "diagnosis - VA-09 (correct first / haematology), never VA-22.", ["VA-09"],
                   lambda p: (p.condition("tcp", "D69.6", onset="2026-05-10"), p.drop("plt")))


@case
def va10_contrast_allergy_snomed() -> Case:
    return ci_case("ci11", "AllergyIntolerance coded SNOMED 293637006 allergy to contrast media: VA-10 critical.",
                   ["VA-10", "VA-25"], lambda p: p.allergy("293637006", "Allergy to contrast media (finding)"))


@case
def va10_pmma_allergy_substance() -> Case:
    return ci_case("ci12", "AllergyIntolerance to the substance polymethyl methacrylate, SNOMED 427811002: bone "
                   "cement allergy, VA-10.", ["VA-10"],
                   lambda p: p.allergy("427811002", "Polymethyl methacrylate (substance)"))


@case
def va10_radiographic_dye_z91041() -> Case:
    return ci_case("ci13", "Radiographic dye allergy status Z91.041 recorded as a Condition (how many problem lists "
                   "carry it): VA-10.", ["VA-10"], lambda p: p.condition("dye", "Z91.041", onset="2019-06-01"))


# ================================================================ relative contraindications / coag suspicion
@case
def va18_severe_heart_failure() -> Case:
    p = standard("rel1")
    severe = cc(SCT, "24484000", "Severe (severity modifier) (qualifier value)")
    p.condition("hf", "84114007", onset="2022-01-10", severity=severe)
    return mk("Heart failure SNOMED 84114007 with severity 'Severe' (SNOMED 24484000): severe cardiopulmonary "
              "disease, relative contraindication VA-18 -> eligible with cautions (VA-23), not VA-22.",
              p, {"fire": ["VA-18", "VA-23"], "not_fire": ["VA-22", "VA-25"]})


@case
def va14_lumbar_stenosis_m48062() -> Case:
    p = standard("rel2", "L2")
    p.condition("stenosis", "M48.062", onset="2021-03-01")
    return mk("Degenerative lumbar spinal stenosis with neurogenic claudication M48.062: relative "
              "contraindication VA-14 -> VA-23.",
              p, {"fire": ["VA-14", "VA-23"], "not_fire": ["VA-22"]})


@case
def va19_radiculopathy_m5416() -> Case:
    p = standard("rel3", "L2")
    p.condition("radic", "M54.16", onset="2026-05-25")
    return mk("Lumbar radiculopathy M54.16 (radicular pain) at the fractured lumbar level: VA-19 relative "
              "contraindication and neuropathic adjuvant advice SUP-05; VA-23, not VA-22.",
              p, {"fire": ["VA-19", "SUP-05", "VA-23"], "not_fire": ["VA-22"]})


@case
def va12_retropulsion_local_pct() -> Case:
    p = standard("rel4")
    p.local("retro", "retropulsion-canal-compromise-pct",
            {"valueQuantity": {"value": 40, "unit": "%", "system": UCUM, "code": "%"}}, level="T12",
            when="2026-05-28")
    return mk("Retropulsion 40 % of the canal (local code: no standard exists) in an otherwise standard-coded "
              "patient: VA-12 -> VA-23 (RULE-CATALOGUE §5.5 variant).",
              p, {"fire": ["VA-12", "VA-23"], "not_fire": ["VA-22"]})


@case
def md03_warfarin_statement_no_inr() -> Case:
    p = standard("coag1")
    p.drop("inr")
    p.med("warfarin", "855332", how="statement", authored="2026-03-01")
    return mk("Warfarin 5 mg SCD recorded as a MedicationStatement, no INR: coagulopathy suspected - ask for "
              "INR/platelets (MD-03); eligibility pending, never VA-22 ('no anticoagulant' is wrong).",
              p, {"fire": ["MD-03", "VA-24"], "not_fire": ["VA-22", "MD-04"]})


@case
def md03_apixaban_scd_no_labs() -> Case:
    p = standard("coag2")
    p.drop("inr", "plt")
    p.med("doac", "1364445", authored="2026-04-11")
    return mk("On apixaban 5 mg SCD 1364445 (a DOAC, RxNorm only, no ATC), no coagulation labs: MD-03, not MD-04.",
              p, {"fire": ["MD-03"], "not_fire": ["MD-04", "VA-22"]})


@case
def md03_enoxaparin_scd_no_labs() -> Case:
    p = standard("coag3")
    p.drop("inr", "plt")
    p.med("lmwh", "854235", authored="2026-05-15")
    return mk("On enoxaparin 40 mg prefilled syringe SCD 854235 (LMWH), no labs: MD-03.",
              p, {"fire": ["MD-03"], "not_fire": ["MD-04", "VA-22"]})


@case
def md03_cirrhosis_k7460_no_labs() -> Case:
    p = standard("coag4")
    p.drop("inr", "plt")
    p.condition("liver", "K74.60", onset="2023-08-01")
    return mk("Cirrhosis K74.60 (liver disease is a reason to suspect coagulopathy, D-COAG-SUSPECTED), no labs: "
              "MD-03, not MD-04.",
              p, {"fire": ["MD-03"], "not_fire": ["MD-04", "VA-22"]})


# ================================================================ WHO ladder
def ladder(pid: str, rxcui: str | None, pain: int, desc: str, fire: list[str], not_fire: list[str],
           how: str = "concept") -> Case:
    p = standard(pid, opioid=rxcui, how=how)
    p.drop("pain")
    p.pain(pain)
    return mk(desc, p, {"fire": fire, "not_fire": not_fire})


@case
def sup_fentanyl_patch_scd_refractory() -> Case:
    return ladder("who1", "197696", 7, "Fentanyl 75 mcg/h patch SCD 197696 (step 3), NRS 7: refractory pain SUP-04; "
                  "never SUP-03 'strong opioid'.", ["SUP-04"], ["SUP-01", "SUP-02", "SUP-03"])


@case
def sup_percocet_sbd_is_step3() -> Case:
    return ladder("who2", "1049640", 8, "Percocet SBD 1049640 (oxycodone/acetaminophen): the oxycodone makes it step "
                  "3 - SUP-04, not SUP-03.", ["SUP-04"], ["SUP-03", "SUP-02", "SUP-01"])


@case
def sup_morphine_scd_statement() -> Case:
    return ladder("who3", "892582", 6, "Morphine sulfate 15 mg SCD recorded as MedicationStatement, NRS 6: step 3 - "
                  "SUP-04, not SUP-02/03.", ["SUP-04"], ["SUP-02", "SUP-03"], how="statement")


@case
def sup_tramadol_scd_severe() -> Case:
    return ladder("who4", "835603", 8, "Tramadol 50 mg SCD 835603 (step 2) with NRS 8: move to a strong opioid "
                  "(SUP-03); not refractory on step 3 (no SUP-04).", ["SUP-03"], ["SUP-04", "SUP-01"])


@case
def sup_no_analgesic_mild() -> Case:
    return ladder("who5", None, 3, "No analgesic at all, NRS 3: WHO step 1 (SUP-01).", ["SUP-01"],
                  ["SUP-03", "SUP-04"])


@case
def sup06_dexamethasone_scd_long_term() -> Case:
    p = standard("who6")
    p.med("dex", "197582", authored="2026-02-20")
    return mk("Dexamethasone 4 mg oral tablet SCD 197582 since February (> 3 months): steroid adverse-effect "
              "monitoring SUP-06.", p, {"fire": ["SUP-06"], "not_fire": ["NEU-01"]})


# ================================================================ histology / primaries
def histology(pid: str, level: str, primary: tuple[str, ...], desc: str, fire: list[str], not_fire: list[str],
              escc: str = "escc-0", met: tuple[str, ...] | None = ("C79.51", "94222008")) -> Case:
    p = standard(pid, level, primary=primary)
    if met is None:
        p.drop("met")
    if escc != "escc-0":
        p.drop("escc")
        p.local("escc", "escc-grade", {"valueCodeableConcept": cc(LOCAL, escc)}, level=level, when="2026-05-28")
    return mk(desc, p, {"fire": fire, "not_fire": not_fire})


@case
def rt08_myeloma_c9000_no_c7951() -> Case:
    return histology("hist1", "T10", ("C90.00", "109989006"),
                     "Multiple myeloma C90.00 with a pathological T10 fracture (M84.58XA) and no C79.51 (myeloma is "
                     "coded as itself): skeletal disease of a radiosensitive tumour - RT-01 and RT-08.",
                     ["RT-01", "RT-08"], ["RT-07", "MD-11"], met=None)


@case
def rt08_lymphoma_c8339() -> Case:
    return histology("hist2", "L1", ("C83.39", "118600007"),
                     "Diffuse large B-cell lymphoma, extranodal (C83.39), pathological L1 fracture, no C79.51: "
                     "skeletal lymphoma is radiosensitive - RT-01, RT-08.", ["RT-01", "RT-08"], ["RT-07"], met=None)


@case
def rt08_small_cell_lung_escc2() -> Case:
    return histology("hist3", "T8", ("C34.91", "254632001"),
                     "Small-cell lung cancer (SNOMED 254632001 + C34.91) with ESCC 2 at T8 and no deficit: "
                     "radiosensitive - RT-08; no surgical consult before RT (NEU-02 needs a non-sensitive tumour).",
                     ["RT-08"], ["NEU-02", "RT-07", "NEU-01"], escc="escc-2")


@case
def neu02_nsclc_escc2() -> Case:
    return histology("hist4", "T8", ("C34.11", "254637007"),
                     "Non-small-cell lung cancer (254637007 + C34.11) with ESCC 2 at T8, no deficit: surgical "
                     "consult for decompression/separation before RT (NEU-02); not radiosensitive (no RT-08).",
                     ["NEU-02"], ["RT-08", "NEU-01"], escc="escc-2")


@case
def rt08_seminoma_escc2() -> Case:
    p = standard("hist5", "L2", primary=("C62.10", "313429000"), birth="1990-07-02")
    p.res["patient"]["gender"] = "male"
    p.drop("escc")
    p.local("escc", "escc-grade", {"valueCodeableConcept": cc(LOCAL, "escc-2")}, level="L2", when="2026-05-28")
    return mk("Seminoma of a descended testis (313429000 + C62.10) with ESCC 2 at L2, no deficit: radiosensitive "
              "(RT-08), no NEU-02.", p, {"fire": ["RT-08"], "not_fire": ["NEU-02", "RT-07"]})


@case
def sup10_breast_hormone_sensitive() -> Case:
    p = standard("hist6")
    return mk("Breast cancer C50.911 (+ SNOMED 408643008): hormonal therapy consideration SUP-10; bone metastasis "
              "without bone-modifying agent: SUP-07.", p, {"fire": ["SUP-10", "SUP-07"], "not_fire": ["RT-08"]})


@case
def sup10_breast_snomed_only() -> Case:
    p = standard("hist9", primary=("372064008",))
    return mk("Breast cancer coded only as SNOMED 372064008 'Malignant neoplasm of female breast' (no ICD-10-CM): "
              "the primary is known (no MD-11) and hormone-sensitive (SUP-10).",
              p, {"fire": ["SUP-10"], "not_fire": ["MD-11", "RT-08"]})


@case
def primary_cervix_c539_known() -> Case:
    p = standard("hist10", primary=("C53.9",))
    return mk("Cervical cancer C53.9 (a gynaecological primary) with a T12 bone metastasis: the primary is known - "
              "no MD-11; RT-01 for the painful metastasis.", p, {"fire": ["RT-01"], "not_fire": ["MD-11"]})


@case
def primary_larynx_c329_known() -> Case:
    p = standard("hist11", primary=("C32.9",))
    p.res["patient"]["gender"] = "male"
    return mk("Laryngeal cancer C32.9 (a head-and-neck primary) with a T12 bone metastasis: the primary is known - "
              "no MD-11; RT-01.", p, {"fire": ["RT-01"], "not_fire": ["MD-11"]})


@case
def sup10_prostate_c61() -> Case:
    p = standard("hist7", "L1", primary=("C61",))
    p.res["patient"]["gender"] = "male"
    return mk("Prostate cancer C61 with an L1 bone metastasis: hormonal therapy consideration SUP-10.",
              p, {"fire": ["SUP-10", "RT-01"], "not_fire": ["RT-08"]})


@case
def rt07_renal_cell_sbrt() -> Case:
    p = standard("hist8", "L1", primary=("C64.1",))
    p.local("sins", "sins-total", {"valueInteger": 5}, level="L1", when="2026-05-28")
    p.local("le", "life-expectancy-estimate", {"valueQuantity": {"value": 18, "unit": "mo", "system": UCUM,
                                                                   "code": "mo"}})
    return mk("Renal cell carcinoma C64.1 (radioresistant), ECOG 1, no deficit, ESCC 0, SINS 5, life expectancy "
              "18 months: consider SBRT (RT-07).", p, {"fire": ["RT-07"], "not_fire": ["RT-08", "NEU-01"]})


# ================================================================ radiotherapy history
@case
def rt_prior_t4_unirradiated_l2() -> Case:
    p = standard("rth1", "L2")
    p.rt_course("T4", "2025-10-20", "2025-10-20")
    return mk("Prior palliative RT course (mCODE course summary, 8 Gy/1) to T4 in October 2025; the new painful "
              "metastasis is at L2, never irradiated: first-course options (RT-02), no re-irradiation rules.",
              p, {"fire": ["RT-01", "RT-02"], "not_fire": ["RT-10", "RT-11", "MD-12"]})


@case
def rt10_pain_after_rt_same_level() -> Case:
    p = standard("rth2")
    p.rt_course("T12", "2026-02-02", "2026-02-06", dose_cgy=2000, fractions=5)
    p.pain(7, when="2026-03-20", name="pain-after")
    return mk("20 Gy/5 to T12 ended 2026-02-06; pain scores 7 (March) and 8 (now) at the treated level, no local "
              "flag: pain persisting after RT - re-irradiation may be considered (RT-10); no first-course "
              "options (RT-02).", p, {"fire": ["RT-10"], "not_fire": ["RT-02", "RT-11"]})


@case
def rt11_recent_rt_same_level() -> Case:
    p = standard("rth3")
    p.rt_course("T12", "2026-05-18", "2026-05-18")
    return mk("8 Gy/1 to T12 two weeks ago: too early to judge the response (RT-11); no re-irradiation yet "
              "(RT-10).", p, {"fire": ["RT-11"], "not_fire": ["RT-10", "RT-02"]})


@case
def md12_history_of_irradiation_z923() -> Case:
    p = standard("rth4")
    p.condition("z923", "Z92.3", onset="2025-09-01", category="problem-list-item")
    return mk("Personal history of irradiation Z92.3 on the problem list and no RT course summary: the prior "
              "course (site, dose, dates) must be asked for (MD-12) before first-course options are offered.",
              p, {"fire": ["MD-12"], "not_fire": ["RT-02"]})


@case
def rt10_prior_rt_cpt_77427() -> Case:
    p = standard("rth5")
    p.rt_course("T12", "2026-01-12", "2026-01-16", dose_cgy=None, fractions=None,
                code=(CPT, "77427", "Radiation treatment management, 5 treatments"))
    return mk("Prior RT at T12 known only from a billing-derived Procedure (CPT 77427, January 2026), pain 8 now: "
              "re-irradiation (RT-10) with the course summary requested (MD-12); not first-course RT-02.",
              p, {"fire": ["RT-10", "MD-12"], "not_fire": ["RT-02"]})


# ================================================================ prognosis / performance
@case
def rt05_06_life_expectancy_weeks() -> Case:
    p = standard("prg1")
    p.local("le", "life-expectancy-estimate", {"valueQuantity": {"value": 3, "unit": "wk", "system": UCUM,
                                                                  "code": "wk"}})
    return mk("Life expectancy estimate 3 weeks (UCUM 'wk'): single fraction (RT-05) and goals-of-care note "
              "(RT-06).", p, {"fire": ["RT-05", "RT-06"], "not_fire": ["RT-07"]})


@case
def le_text_unit_not_months() -> Case:
    p = standard("prg2")
    p.local("le", "life-expectancy-estimate", {"valueQuantity": {"value": 2, "unit": "years"}})
    return mk("Life expectancy '2' with unit given only as the text 'years': never read as 2 months - no RT-05/RT-06; "
              "RT-01 still fires.", p, {"fire": ["RT-01"], "not_fire": ["RT-05", "RT-06"]})


@case
def prg04_karnofsky_40() -> Case:
    p = standard("prg3")
    p.drop("ecog")
    p.kps(40)
    return mk("Karnofsky 40 (LOINC 89243-0, mCODE KPS profile): poor performance status PRG-04; no SBRT (RT-07).",
              p, {"fire": ["PRG-04"], "not_fire": ["RT-07"]})


@case
def pain_loinc_38208_5() -> Case:
    p = standard("prg4")
    p.drop("pain")
    p.pain(8, loinc="38208-5")
    return mk("Pain recorded as LOINC 38208-5 'Pain severity - Reported' = 8 on oxycodone SCD: the pain score is "
              "read (no MD-05), refractory on step 3 (SUP-04), VA-22.",
              p, {"fire": ["SUP-04", "VA-22"], "not_fire": ["MD-05", "SUP-03"]})


@case
def prg04_ecog_3() -> Case:
    p = standard("prg5")
    p.drop("ecog")
    p.ecog(3)
    return mk("ECOG 3 (LOINC 89247-1, mCODE ECOG profile): poor performance status PRG-04; no SBRT (RT-07), "
              "performance status is known (no MD-10).", p, {"fire": ["PRG-04"], "not_fire": ["RT-07", "MD-10"]})


@case
def met_snomed_vertebral_column_only() -> Case:
    p = standard("met1", primary=("C61",))
    p.res["patient"]["gender"] = "male"
    p.drop("met")
    p.secondary("T12", codes=("94602001",))
    return mk("Spinal metastasis coded only as SNOMED 94602001 'Secondary malignant neoplasm of vertebral column' "
              "(no ICD-10-CM): a painful spinal metastasis - RT-01, bone-health advice SUP-07.",
              p, {"fire": ["RT-01", "SUP-07"], "not_fire": ["NEU-01"]})


@case
def md04_no_coag_labs_not_suspected() -> Case:
    p = standard("coag5")
    p.drop("inr", "plt")
    return mk("No coagulation labs and no reason to suspect coagulopathy (no anticoagulant, no coagulopathy or liver "
              "disease): routine screening optional (MD-04), no MD-03.",
              p, {"fire": ["MD-04"], "not_fire": ["MD-03", "VA-09"]})


@case
def rt13_rt_order_on_letrozole() -> Case:
    p = standard("rt13")
    p.med("ai", "200064", authored="2026-01-05")
    sr = service_request("rt13", "rt13-draft-rt", "1217123003", "Radiotherapy course of treatment (regime/therapy)",
                         "T12", system=SCT)
    return mk("order-select of a radiotherapy course (CodeX prescription, SNOMED 1217123003) to T12 while on "
              "letrozole 2.5 mg SCD 200064 (endocrine therapy, ATC L02BG04): coordinate timing with medical "
              "oncology (RT-13).", p, {"fire": ["RT-13"], "not_fire": ["NEU-01"]},
              hook="order-select", draft_orders=[sr])


# ================================================================ scope
@case
def paediatric_age_10_no_adult_ladder() -> Case:
    p = standard("ped1", "L1", primary=("C74.90",), opioid=None, birth="2016-03-01")
    p.res["patient"]["gender"] = "male"
    p.drop("pain")
    p.pain(6)
    return mk("A 10-year-old with an adrenal primary (C74.90, e.g. neuroblastoma) and a painful L1 metastasis: "
              "radiotherapy evaluation applies (RT-01) but no adult WHO ladder and no adult augmentation advice.",
              p, {"fire": ["RT-01"], "not_fire": ["SUP-01", "SUP-02", "SUP-03", "VA-22", "VA-23", "VA-24"]})


@case
def osteoporotic_m8008xa_no_cancer() -> Case:
    p = Patient("osteo1", birth="1944-02-11")
    p.condition("vcf", "M80.08XA", levels=("L1",), onset="2026-05-22")
    p.mri("24968-0", "Acute osteoporotic compression fracture of L1 with marrow oedema; no mass.")
    p.pain(7)
    p.med("tramadol", "835603")
    p.lab("plt", "777-3", 220, "10*3/uL")
    p.allergy_text()
    return mk("Age-related osteoporotic vertebral fracture M80.08XA, no cancer anywhere: out of scope of a "
              "metastatic-spine service - no cancer pathway (no RT, no cancer-pain ladder, no bone-metastasis "
              "advice).", p, {"no_cards_reason": "no cancer: an osteoporotic fracture is outside the metastatic "
                              "spine pathway", "not_fire": ["RT-01", "SUP-03", "SUP-07", "MD-11"]})


# ================================================================ partial data / other patients
@case
def bad_date_condition_among_good() -> Case:
    p = standard("bad1")
    p.condition("htn", "I10", onset="2026-02-30")
    return mk("Worked example plus a hypertension Condition whose onsetDateTime 2026-02-30 is not a date: the "
              "Condition cannot be read, so the problem list is incomplete - infection/cord compression are "
              "unknown, eligibility pending (VA-24), never 'criteria met' (VA-22).",
              p, {"fire": ["VA-24"], "not_fire": ["VA-22"]})


@case
def bad_date_sepsis_not_criteria_met() -> Case:
    p = standard("bad2")
    p.condition("sepsis", "A41.9", onset="31/05/2026", category="encounter-diagnosis")
    return mk("A sepsis Condition A41.9 with onsetDateTime '31/05/2026' (not FHIR dateTime): it must not vanish "
              "into a complete problem list - never VA-22; the painful metastasis still gets RT-01.",
              p, {"fire": ["RT-01"], "not_fire": ["VA-22", "VA-23"]})


@case
def other_patient_mscc_not_counted() -> Case:
    p = standard("own1")
    other = Patient("someone-else")
    scc = other.condition("scc", "G95.20", levels=("T12",), onset="2026-05-31")
    p.add("foreign", scc)
    return mk("Another patient's cord compression (subject Patient/someone-else) mixed into the conditions "
              "prefetch: it must not count - no emergency for this patient. A key that held another patient's data "
              "is not this patient's complete problem list, so eligibility stays pending (VA-24), never VA-22.",
              p, {"fire": ["VA-24", "RT-01"], "not_fire": ["NEU-01", "VA-22"], "absent_cards": ["emergency-mscc"]})


@case
def other_patient_sepsis_not_counted() -> Case:
    p = standard("own2")
    other = Patient("someone-else")
    p.add("foreign", other.condition("sepsis", "A41.9", onset="2026-05-29"))
    p.add("foreign-plt", other.lab("plt", "777-3", 20, "10*3/uL", when="2026-05-31"))
    return mk("Another patient's sepsis A41.9 and platelets 20 mixed into the prefetch: neither counts - no "
              "contraindication, no VA-09; the keys that held them are incomplete, so eligibility stays pending "
              "(VA-24), never VA-22.",
              p, {"fire": ["VA-24"], "not_fire": ["VA-09", "VA-25", "VA-22"]})


def main() -> None:
    written = set()
    unknown = set(XFAIL) - set(CASES)
    assert not unknown, f"XFAIL names no case: {sorted(unknown)}"
    for name, build in CASES.items():
        path = HERE / f"{name}.json"
        data = build()
        if XFAIL.get(name):
            data = {"description": data["description"], "xfail": XFAIL[name],
                    **{k: v for k, v in data.items() if k != "description"}}
        path.write_text(json.dumps(copy.deepcopy(data), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.add(path.name)
    for stale in HERE.glob("std-*.json"):
        if stale.name not in written:
            stale.unlink()
    print(f"{len(written)} cases")


if __name__ == "__main__":
    main()
