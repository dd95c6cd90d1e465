"""Generate the neurology, imaging and procedure ValueSets of fhir_profiles/ from their sources.

Run: ``.venv/bin/python scripts/gen_neuro_valuesets.py [--check]`` (``--check`` fails when a committed
file differs from what the sources give; tests/test_neuro_valuesets.py runs it).

Sources (each concept records which one it came from in ``verification-status`` and the ValueSet's
``description``):

* VSAC value-set expansions published in cqframework/ecqm-content-r4 (commit ECQM_COMMIT, mirrored at
  /work/.mirror/cqframework+ecqm-content-r4/repo): "X-Ray Study (all inclusive)"
  2.16.840.1.113883.3.464.1003.198.12.1034 (LOINC radiology codes: every CT and MR study of the
  cervical, thoracic, lumbar, sacral or whole spine), "Urinary retention" 2.16.840.1.113762.1.4.1164.52.
  Without the mirror the script keeps the committed expansion (it never guesses).
* ICD-10-CM by hierarchy (``is-a`` prefix filters, the public-domain tree) for the deficit and
  compression categories; the categories chosen are in NEURO_DEFICIT_ICD below, with why.
* RULE-CATALOGUE §4.2 for SNOMED 71286001 and the ICD-10-CM cord-compression codes; CPT 22510-22515
  (AMA; descriptors are not reproduced) for vertebral augmentation; CPT 72125-72133 (CT) and
  72141-72158 (MRI) for spine imaging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "fhir_profiles"
ECQM = Path("/work/.mirror/cqframework+ecqm-content-r4/repo")
ECQM_COMMIT = "04f5c4919ee8a56e24484c3269f74d47b03e3d75"
XRAY_VS = "input/vocabulary/valueset/external/valueset-2.16.840.1.113883.3.464.1003.198.12.1034.json"
ADVANCED_ILLNESS_VS = "input/vocabulary/valueset/external/valueset-2.16.840.1.113883.3.464.1003.110.12.1082.json"
RETENTION_VS = "input/vocabulary/valueset/external/valueset-2.16.840.1.113762.1.4.1164.52.json"
BASE = "https://fhir.spinecds.org"
STATUS_URL = f"{BASE}/StructureDefinition/verification-status"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED_COPYRIGHT = (
    "This value set includes content from SNOMED CT, copyright International Health Terminology Standards "
    "Development Organisation (IHTSDO/SNOMED International)."
)
LOINC_COPYRIGHT = (
    "This value set includes LOINC content, copyright Regenstrief Institute, Inc. (https://loinc.org/license/)."
)
CPT_COPYRIGHT = "CPT codes are copyright American Medical Association; official descriptors are not reproduced."


def concept(code: str, display: str, status: str) -> dict[str, Any]:
    return {"extension": [{"url": STATUS_URL, "valueCode": status}], "code": code, "display": display}


MALIGNANT_BLOCKS = [
    "C00-C14", "C15-C26", "C30-C39", "C40-C41", "C43-C44", "C45-C49", "C50", "C51-C58", "C60-C63", "C64-C68",
    "C69-C72", "C73-C75", "C7A", "C7B", "C76-C80", "C81-C96",
]  # fmt: skip


def isa(system: str, value: str, status: str) -> dict[str, Any]:
    return {
        "extension": [{"url": STATUS_URL, "valueCode": status}],
        "system": system,
        "filter": [{"property": "concept", "op": "is-a", "value": value}],
    }


def valueset(
    vs_id: str, name: str, title: str, description: str, includes: list[dict[str, Any]], copyright_: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "ValueSet",
        "id": vs_id,
        "url": f"{BASE}/ValueSet/{vs_id}",
        "version": "0.2.0",
        "name": name,
        "title": title,
        "status": "draft",
        "experimental": False,
        "publisher": "spinecds project",
        "description": description,
    }
    if copyright_:
        out["copyright"] = copyright_
    out["compose"] = {"include": includes}
    return out


def _vsac(path: str) -> list[dict[str, Any]] | None:
    if not ECQM.is_dir():
        return None
    text = subprocess.run(
        ["git", "-C", str(ECQM), "show", f"{ECQM_COMMIT}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    contains: list[dict[str, Any]] = json.loads(text)["expansion"]["contains"]
    return contains


SPINE_REGIONS = ("Spine", "Cervical spine", "Thoracic spine", "Lumbar spine", "Sacrum", "Spine.")


def _spine_study(display: str, modality: str) -> bool:
    """A diagnostic CT/MR study of a spine region (no guidance for an intervention, no bone density)."""
    if not display.startswith(modality + " "):
        return False
    body = display[len(modality) + 1 :]
    if "Guidance" in body or "guidance" in body or "Bone density" in body:
        return False
    return body.startswith(SPINE_REGIONS) or " spine" in body.split(" W")[0].lower().split(" views")[0]


def _committed_concepts(vs_id: str, system: str) -> list[dict[str, Any]]:
    path = PROFILES / f"ValueSet-{vs_id}.json"
    if not path.exists():
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [c for inc in doc["compose"]["include"] if inc.get("system") == system for c in inc.get("concept", [])]


def spine_loinc(modalities: tuple[str, ...], vs_id: str) -> list[dict[str, Any]]:
    contains = _vsac(XRAY_VS)
    if contains is None:
        return _committed_concepts(vs_id, LOINC)
    found = [
        concept(c["code"], c["display"], "verified-authoritative")
        for c in contains
        if c["system"] == LOINC and any(_spine_study(c["display"], m) for m in modalities)
    ]
    # catalogue §4.2 single-source codes not in the 2017 VSAC expansion stay, marked as such
    known = {c["code"] for c in found}
    legacy = {
        "36531-2": "MR Spine WO contrast",
        "36532-0": "MR Thoracic spine WO contrast",
        "36530-4": "CT Spine WO contrast",
    }
    for code, display in legacy.items():
        if code not in known and display.split(" ")[0] in modalities:
            found.append(concept(code, display, "single-source"))
    return sorted(found, key=lambda c: c["code"])


def cpt_range(first: int, last: int, what: str, status: str) -> list[dict[str, Any]]:
    return [concept(str(c), f"{what} (CPT {c}; descriptor not reproduced)", status) for c in range(first, last + 1)]


CT_SPINE_CPT = [str(c) for c in range(72125, 72134)]  # CT cervical/thoracic/lumbar spine, without/with/both contrast
MR_SPINE_CPT = ["72141", "72142", "72146", "72147", "72148", "72149", "72156", "72157", "72158"]  # MRI c/t/l spine


def cpt_list(codes: list[str], what: str) -> list[dict[str, Any]]:
    return [concept(c, f"{what} (CPT {c}; descriptor not reproduced)", "single-source") for c in codes]


def imaging_sets() -> dict[str, dict[str, Any]]:
    axial = [
        {"system": LOINC, "concept": spine_loinc(("CT", "MR"), "axial-spine-imaging")},
        {"system": CPT, "concept": cpt_list(CT_SPINE_CPT, "CT spine") + cpt_list(MR_SPINE_CPT, "MRI spine")},
    ]
    mri = [
        {"system": LOINC, "concept": spine_loinc(("MR",), "spine-mri")},
        {"system": CPT, "concept": cpt_list(MR_SPINE_CPT, "MRI spine")},
    ]
    provenance = (
        f"LOINC from the VSAC expansion 'X-Ray Study (all inclusive)' 2.16.840.1.113883.3.464.1003.198.12.1034 "
        f"(cqframework/ecqm-content-r4 commit {ECQM_COMMIT}, {XRAY_VS}): every CT/MR study whose display names "
        "the spine or a spine region (cervical, thoracic, lumbar, sacrum, whole spine), any contrast, no "
        "interventional guidance. CPT 72125-72133 (CT cervical/thoracic/lumbar spine) and 72141/72142, 72146-72149, "
        "72156-72158 (MRI cervical/thoracic/lumbar spine) as "
        "DiagnosticReport.code / ImagingStudy.procedureCode. Generated by scripts/gen_neuro_valuesets.py."
    )
    return {
        "axial-spine-imaging": valueset(
            "axial-spine-imaging",
            "AxialSpineImaging",
            "Axial spine imaging (CT / MRI, every spine region)",
            "DiagnosticReport.code / ImagingStudy.procedureCode values for axial (CT or MR) imaging of any spine "
            "region. A matching study within imaging.window_days sets F-AXIAL-IMG (MD-02); the MR codes also set "
            "F-MRI. " + provenance + " Facts (RULE-CATALOGUE 5.2): F-AXIAL-IMG, F-MRI.",
            axial,
            f"{LOINC_COPYRIGHT} {CPT_COPYRIGHT}",
        ),
        "spine-mri": valueset(
            "spine-mri",
            "SpineMri",
            "Spine MRI (every spine region)",
            "DiagnosticReport.code / ImagingStudy.procedureCode values for MRI of any spine region. Sets F-MRI. "
            + provenance
            + " Facts (RULE-CATALOGUE 5.2): F-MRI, F-ACUTE.",
            mri,
            f"{LOINC_COPYRIGHT} {CPT_COPYRIGHT}",
        ),
    }


def cord_compression() -> dict[str, Any]:
    return valueset(
        "cord-compression",
        "CordCompression",
        "Spinal cord / cauda equina compression",
        "Condition.code (problem list), DiagnosticReport.conclusionCode and Observation.code/valueCodeableConcept "
        "(imaging finding) values for spinal cord or cauda equina compression. F-SCC-SYMPT is true from an "
        "active, non-refuted Condition or from an imaging conclusion within imaging.window_days (NICE CG75 "
        "defines MSCC as compression that causes or threatens neurological disability); F-SCC-SYMPT feeds "
        "D-MSCC -> NEU-01 (critical) and VA-06. Sources: RULE-CATALOGUE 4.2 (SNOMED 71286001, ICD-10-CM "
        "G95.20/G95.29 as is-a G95.2, G83.4); SNOMED 192970008 cauda equina syndrome from several independent "
        "public code lists. Note: SNOMED 58718002 is rheumatic fever, not cord compression. Generated by "
        "scripts/gen_neuro_valuesets.py. Facts (RULE-CATALOGUE 5.2): F-SCC-SYMPT.",
        [
            {
                "system": SCT,
                "concept": [
                    concept("71286001", "Spinal cord compression", "verified-secondary"),
                    concept("192970008", "Cauda equina syndrome", "verified-secondary"),
                ],
            },
            isa(ICD, "G95.2", "verified-secondary"),
            {"system": ICD, "concept": [concept("G83.4", "Cauda equina syndrome", "single-source")]},
        ],
        SNOMED_COPYRIGHT,
    )


# ICD-10-CM categories that document a neurological deficit of the kind NICE CG75 lists for suspected
# MSCC ("limb weakness, difficulty in walking, sensory loss, bladder or bowel dysfunction"), with what is
# left out and why.
NEURO_DEFICIT_ICD: list[tuple[str, str, str]] = [
    ("G82.2", "Paraplegia (is-a: G82.20-G82.22)", "is-a"),
    ("G82.5", "Quadriplegia (is-a: G82.50-G82.54)", "is-a"),
    ("G83.1", "Monoplegia of lower limb (is-a)", "is-a"),
    ("G83.2", "Monoplegia of upper limb (is-a)", "is-a"),
    ("G83.0", "Diplegia of upper limbs", "code"),
    ("G83.3", "Monoplegia, unspecified (is-a)", "is-a"),
    ("G83.81", "Brown-Sequard syndrome", "code"),
    ("G83.82", "Anterior cord syndrome", "code"),
    ("G83.83", "Posterior cord syndrome", "code"),
    ("G83.9", "Paralytic syndrome, unspecified", "code"),
    ("G99.2", "Myelopathy in diseases classified elsewhere", "code"),
    ("R26.0", "Ataxic gait", "code"),
    ("R26.1", "Paralytic gait", "code"),
    ("R26.2", "Difficulty in walking, not elsewhere classified", "code"),
    ("R26.89", "Other abnormalities of gait and mobility", "code"),
    ("R26.9", "Unspecified abnormalities of gait and mobility", "code"),
    ("R29.898", "Other symptoms and signs involving the musculoskeletal system (limb weakness)", "code"),
    ("R20.0", "Anesthesia of skin", "code"),
    ("R20.1", "Hypoesthesia of skin", "code"),
    ("R32", "Unspecified urinary incontinence", "code"),
    ("R15", "Fecal incontinence (is-a: R15.0-R15.9)", "is-a"),
]
EXCLUDED_NOTE = (
    "Left out on purpose: G83.4 cauda equina syndrome (in cord-compression), G83.5 locked-in state and G83.84 "
    "Todd's paralysis (not spinal), R33.0 drug-induced retention (opioids), R26.81 unsteadiness on feet, "
    "R20.2/R20.3/R20.8/R20.9 paraesthesia and other positive sensory symptoms (chemotherapy neuropathy), M62.81 "
    "generalised muscle weakness and R53.1 weakness (not focal; cachexia, deconditioning)."
)


def neuro_deficit() -> dict[str, Any]:
    includes: list[dict[str, Any]] = []
    explicit = [
        concept(code, display, "verified-secondary") for code, display, kind in NEURO_DEFICIT_ICD if kind == "code"
    ]
    for code, _display, kind in NEURO_DEFICIT_ICD:
        if kind == "is-a":
            includes.append(isa(ICD, code, "verified-secondary"))
    retention = _vsac(RETENTION_VS)
    if retention is None:
        icd_retention = [c for c in _committed_concepts("neuro-deficit", ICD) if c["code"].startswith("R33")]
        sct_retention = [
            c for c in _committed_concepts("neuro-deficit", SCT) if c["code"] in {"267064002", "236648008"}
        ]
    else:
        icd_retention = [
            concept(c["code"], c["display"], "verified-authoritative")
            for c in retention
            if c["system"] == ICD and c["code"] != "R33.0"
        ]
        sct_retention = [
            concept(c["code"], c["display"], "verified-authoritative")
            for c in retention
            if c["system"] == SCT and c["code"] in {"267064002", "236648008"}
        ]
    includes.append({"system": ICD, "concept": explicit + icd_retention})
    includes.append(
        {
            "system": SCT,
            "concept": sct_retention
            + [
                concept("60389000", "Paraplegia", "single-source"),
                concept("72042002", "Incontinence of feces", "verified-secondary"),
            ],
        }
    )
    return valueset(
        "neuro-deficit",
        "NeurologicalDeficit",
        "Neurological deficit of spinal origin (motor, sensory, sphincter)",
        "Condition.code values that document a neurological deficit: paraplegia/quadriplegia/monoplegia and cord "
        "syndromes, myelopathy, gait disturbance, limb weakness, sensory loss, urinary retention, urinary and "
        "faecal incontinence (NICE CG75's symptoms of suspected MSCC). An active, non-refuted Condition sets "
        "F-NEURO-DEFICIT; with onset (else recorded date) within neuro.new_deficit_window_days it is a new deficit "
        "(F-NEURO-DEFICIT-NEW), which with a spinal metastasis is suspected MSCC (D-MSCC -> NEU-01). ICD-10-CM "
        "by hierarchy (is-a = prefix); urinary retention from the VSAC expansion 'Urinary retention' "
        f"2.16.840.1.113762.1.4.1164.52 (cqframework/ecqm-content-r4 commit {ECQM_COMMIT}). {EXCLUDED_NOTE} "
        "Generated by scripts/gen_neuro_valuesets.py. Facts (RULE-CATALOGUE 5.2): F-NEURO-DEFICIT.",
        includes,
        SNOMED_COPYRIGHT,
    )


def augmentation_sets() -> dict[str, dict[str, Any]]:
    note = (
        "CPT 22510-22512 percutaneous vertebroplasty (cervicothoracic, lumbosacral, each additional) and 22513-22515 "
        "percutaneous vertebral augmentation with cavity creation (kyphoplasty; thoracic, lumbar, each additional), "
        "the codes mCODE's CancerRelatedSurgicalProcedureVS admits from CPT. The SNOMED codes of version 0.1.0 were "
        "removed: 447766008 fails the SNOMED CT Verhoeff check digit, 429616001 and 392010000 could not be traced "
        "to a published source (tests/test_neuro_valuesets.py checks every SNOMED id's check digit). No SNOMED "
        "procedure code is listed until one is traced to a published value set. Generated by "
        "scripts/gen_neuro_valuesets.py."
    )
    return {
        "vertebral-augmentation-procedure": valueset(
            "vertebral-augmentation-procedure",
            "VertebralAugmentationProcedure",
            "Vertebral augmentation (vertebroplasty / kyphoplasty) procedure",
            "Procedure.code / ServiceRequest.code for vertebroplasty or kyphoplasty: a draft order in hook context "
            "draftOrders (F-ORDER-VA, F-LEVELS-REQ; VA-26, VA-27) and prior augmentation Procedures per level "
            "(F-PRIOR-VA). " + note + " Facts (RULE-CATALOGUE 5.2): F-LEVELS-REQ.",
            [
                {
                    "system": CPT,
                    "concept": cpt_range(
                        22510, 22515, "Percutaneous vertebroplasty / vertebral augmentation", "single-source"
                    ),
                }
            ],
            CPT_COPYRIGHT,
        ),
        "kyphoplasty-procedure": valueset(
            "kyphoplasty-procedure",
            "KyphoplastyProcedure",
            "Kyphoplasty procedure",
            "Subset of vertebral-augmentation-procedure that identifies kyphoplasty (cavity-creation augmentation) "
            "orders for VA-32. " + note + " Facts (RULE-CATALOGUE 5.2): F-LEVELS-REQ.",
            [
                {
                    "system": CPT,
                    "concept": cpt_range(
                        22513, 22515, "Percutaneous vertebral augmentation with cavity creation", "single-source"
                    ),
                }
            ],
            CPT_COPYRIGHT,
        ),
    }


def spine_region() -> dict[str, Any]:
    codes = [
        ("3572006", "Vertebral body structure"),
        ("35769007", "Thoracic vertebral column structure"),
        ("73903008", "Lumbar vertebral column structure"),
        ("87141009", "Sacral vertebral column structure"),
        ("2748008", "Spinal cord structure"),
        ("61853006", "Spinal canal structure"),
    ]
    return valueset(
        "spine-region",
        "SpineRegion",
        "Spine body sites without a vertebral level",
        "Procedure.bodySite values that place a radiotherapy course on the spine without naming its vertebral levels: "
        "such a course leaves F-PRIOR-RT(level) unknown for the levels it does not name, where a course coded only "
        "at a non-spinal site (chest wall, breast, pelvis) covers no vertebral level. Codes from RULE-CATALOGUE 4.2 "
        "(mCODE CM_TG263.fsh, HL7/fhir-mCODE-ig). Generated by scripts/gen_neuro_valuesets.py. Facts (RULE-CATALOGUE "
        "5.2): F-PRIOR-RT.",
        [{"system": SCT, "concept": [concept(c, d, "verified-authoritative") for c, d in codes]}],
        SNOMED_COPYRIGHT,
    )


def scope_sets() -> dict[str, dict[str, Any]]:
    gen = "Generated by scripts/gen_neuro_valuesets.py."
    illness = _vsac(ADVANCED_ILLNESS_VS)
    if illness is None:
        cirrhosis = _committed_concepts("liver-disease", SCT)
    else:
        seen: set[str] = set()
        cirrhosis = []
        for c in illness:
            if c["system"] == SCT and "cirrhosis" in c["display"].lower() and c["code"] not in seen:
                seen.add(c["code"])
                cirrhosis.append(concept(c["code"], c["display"], "verified-authoritative"))
        cirrhosis.sort(key=lambda c: c["code"])
    return {
        "skeletal-haematological": valueset(
            "skeletal-haematological",
            "SkeletalHaematologicalMalignancy",
            "Haematological malignancy of bone (myeloma, solitary plasmacytoma)",
            "Condition.code values for haematological malignancies that are skeletal disease by nature: multiple "
            "myeloma (ICD-10-CM is-a C90.0, SNOMED 109989006) and solitary plasmacytoma (is-a C90.3). A patient with "
            "one has skeletal disease for F-MET even without a C79.51 bone-metastasis code (issue 13; RULE-CATALOGUE "
            "4.3 'myeloma/lymphoma may be coded without mCODE profile - query by code'); the vertebral level comes "
            "from bodySite when coded. Extramedullary plasmacytoma (C90.2) is not bone disease. "
            + gen
            + " Facts (RULE-CATALOGUE 5.2): F-MET.",
            [
                isa(ICD, "C90.0", "verified-secondary"),
                isa(ICD, "C90.3", "verified-secondary"),
                {"system": SCT, "concept": [concept("109989006", "Multiple myeloma", "single-source")]},
            ],
            SNOMED_COPYRIGHT,
        ),
        "lymphoma": valueset(
            "lymphoma",
            "Lymphoma",
            "Lymphoma (ICD-10-CM C81-C88)",
            "Condition.code values for lymphoma (ICD-10-CM is-a C81-C86, C88). A lymphoma counts as spinal disease "
            "for F-MET only with a vertebral bodySite (lymphoma is not skeletal by nature). "
            + gen
            + " Facts (RULE-CATALOGUE 5.2): F-MET.",
            [isa(ICD, code, "verified-secondary") for code in ("C81", "C82", "C83", "C84", "C85", "C86", "C88")],
            "",
        ),
        "malignancy": valueset(
            "malignancy",
            "Malignancy",
            "Any malignant neoplasm (scope of the cancer pathway)",
            "Condition.code values that put a patient in the service's scope (cancer-related spine disease): every "
            "ICD-10-CM malignant neoplasm (is-a C: C00-C96, C4A, C7A, C7B), pathological fracture in neoplastic "
            "disease (is-a M84.5), and the SNOMED roots 363346000 / 128462008 and bone-metastasis codes of "
            "RULE-CATALOGUE 4.2. Without any (and without a primary-cancer or spinal-metastasis Condition) F-SCOPE is "
            "'no-cancer': an osteoporotic fracture gets no cancer-pain ladder and no augmentation advice from the "
            "cancer sources. " + gen + " Facts (RULE-CATALOGUE 5.2): F-SCOPE.",
            [
                # the blocks of ICD-10-CM chapter 2 that make up C00-C96 (malignant neoplasms); one include each:
                # several filters in one include would be ANDed
                *[isa(ICD, block, "verified-secondary") for block in MALIGNANT_BLOCKS],
                isa(ICD, "M84.5", "verified-secondary"),
                {
                    "system": SCT,
                    "concept": [
                        concept("363346000", "Malignant neoplastic disease", "verified-authoritative"),
                        concept("128462008", "Secondary malignant neoplastic disease", "verified-authoritative"),
                        concept("94222008", "Secondary malignant neoplasm of bone", "verified-secondary"),
                        concept("109989006", "Multiple myeloma", "single-source"),
                    ],
                },
            ],
            SNOMED_COPYRIGHT,
        ),
        "liver-disease": valueset(
            "liver-disease",
            "LiverDisease",
            "Chronic liver disease (cirrhosis, hepatic failure)",
            "Condition.code values for cirrhosis and hepatic failure: a reason to suspect coagulopathy (RULE-CATALOGUE "
            "5.3 D-COAG-SUSPECTED 'known liver disease', SC-46), so platelets and INR are asked for (MD-03). ICD-10-CM "
            "is-a K70.3 alcoholic cirrhosis, K70.4 alcoholic hepatic failure, K72 hepatic failure, K74 fibrosis and "
            "cirrhosis of liver; SNOMED: the cirrhosis concepts of the VSAC expansion 'Advanced Illness' "
            f"2.16.840.1.113883.3.464.1003.110.12.1082 (cqframework/ecqm-content-r4 commit {ECQM_COMMIT}). "
            + gen
            + " Facts (RULE-CATALOGUE 5.2): F-LIVER-DISEASE.",
            [isa(ICD, code, "verified-secondary") for code in ("K70.3", "K70.4", "K72", "K74")]
            + [{"system": SCT, "concept": cirrhosis}],
            SNOMED_COPYRIGHT,
        ),
    }


def all_sets() -> dict[str, dict[str, Any]]:
    out = {"cord-compression": cord_compression(), "neuro-deficit": neuro_deficit(), "spine-region": spine_region()}
    out.update(imaging_sets())
    out.update(scope_sets())
    out.update(augmentation_sets())
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Writes the definitions (everything but ``expansion``, which ``scripts/terminology generate`` owns and
    which a write keeps); ``--check`` compares the definitions only."""
    check = "--check" in argv
    stale = []
    for vs_id, doc in all_sets().items():
        path = PROFILES / f"ValueSet-{vs_id}.json"
        current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        expansion = current.pop("expansion", None)
        if check:
            if render(current) != render(doc):
                stale.append(path.name)
        else:
            path.write_text(render({**doc, "expansion": expansion} if expansion else doc), encoding="utf-8")
    if stale:
        print("stale (run scripts/gen_neuro_valuesets.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
