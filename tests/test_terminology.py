"""Generated terminology: expansions are current, and real EHR codes land in the right class.

The RxNorm codes below are real clinical-drug codes (SCD/SBD) with their RxNorm names, as published in
the CDC opioid CDS and VSAC eCQM value sets (service/terminology/sources/).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from service.facts.vocabulary import Vocabulary
from service.terminology.expand import PROFILES, generate
from service.terminology.harvest import SOURCES

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(PROFILES)


def test_committed_expansions_are_current() -> None:
    """Regenerating from the committed extracts and the ICD-10-CM package changes nothing."""
    assert generate(write=False) == []


def test_a_changed_source_makes_its_expansion_stale(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES, sources)
    warfarin = json.loads((sources / "vsac-warfarin.json").read_text())
    warfarin["contains"] = [c for c in warfarin["contains"] if c["code"] != "855332"]
    (sources / "vsac-warfarin.json").write_text(json.dumps(warfarin))
    assert generate(PROFILES, sources, write=False) == ["anticoagulant"]


def test_every_expansion_records_its_sources() -> None:
    for path in PROFILES.glob("ValueSet-*.json"):
        expansion = json.loads(path.read_text()).get("expansion")
        if expansion:
            assert expansion["timestamp"] and expansion["total"] == len(expansion["contains"])
            assert [p for p in expansion["parameter"] if p["name"] == "source"], path.name


DRUGS = [
    ("analgesic-step3", "1049621", "oxycodone hydrochloride 5 MG Oral Tablet"),
    ("analgesic-step3", "1049623", "oxycodone hydrochloride 5 MG Oral Tablet [Roxicodone]"),
    ("analgesic-step3", "892582", "morphine sulfate 15 MG Oral Tablet"),
    ("analgesic-step3", "1732136", "1 ML Morphine Sulfate 5 MG/ML Injection"),
    ("analgesic-step3", "1603495", "72 HR fentanyl 0.0375 MG/HR Transdermal System"),
    ("analgesic-step3", "897696", "hydromorphone hydrochloride 2 MG Oral Tablet"),
    ("analgesic-step3", "864706", "methadone hydrochloride 10 MG Oral Tablet"),
    ("analgesic-step3", "825411", "tapentadol 50 MG Oral Tablet"),
    ("analgesic-step3", "1432969", "168 HR buprenorphine 0.015 MG/HR Transdermal System"),
    ("analgesic-step3", "1491832", "12 HR Acetaminophen 325 MG / Oxycodone Hydrochloride 7.5 MG ER Oral Tablet"),
    ("analgesic-step2", "835603", "tramadol hydrochloride 50 MG Oral Tablet"),
    ("analgesic-step2", "835605", "tramadol hydrochloride 50 MG Oral Tablet [Ultram]"),
    ("analgesic-step2", "993781", "acetaminophen 300 MG / codeine phosphate 30 MG Oral Tablet"),
    ("analgesic-step2", "1234871", "acetaminophen / caffeine / dihydrocodeine bitartrate 16 MG Oral Capsule"),
    ("analgesic-step1", "1665461", "1 ML Ketorolac Tromethamine 30 MG/ML Injection"),
    ("anticoagulant", "855332", "Warfarin Sodium 5 MG Oral Tablet"),
    ("anticoagulant", "1364445", "apixaban 5 MG Oral Tablet"),
    ("anticoagulant", "1232086", "rivaroxaban 20 MG Oral Tablet"),
    ("anticoagulant", "1037045", "dabigatran etexilate 150 MG Oral Capsule"),
    ("anticoagulant", "1599555", "edoxaban 60 MG Oral Tablet"),
    ("anticoagulant", "854235", "0.4 ML Enoxaparin sodium 100 MG/ML Prefilled Syringe"),
    ("anticoagulant", "1361226", "heparin sodium, porcine 1000 UNT/ML Injectable Solution"),
    ("anticoagulant", "861360", "0.5 ML Fondaparinux sodium 5 MG/ML Prefilled Syringe"),
    ("corticosteroid", "197582", "Dexamethasone 4 MG Oral Tablet"),
    ("corticosteroid", "312615", "Prednisone 20 MG Oral Tablet"),
    ("corticosteroid", "259966", "Methylprednisolone 4 MG Oral Tablet"),
    ("neuropathic-adjuvant", "596930", "duloxetine 30 MG Delayed Release Oral Capsule"),
    ("neuropathic-adjuvant", "310431", "gabapentin 300 MG Oral Capsule"),
    ("neuropathic-adjuvant", "105029", "gabapentin 300 MG Oral Capsule [Neurontin]"),
    ("neuropathic-adjuvant", "483450", "pregabalin 75 MG Oral Capsule"),
    ("systemic-anticancer-therapy", "1115447", "1 ML Leuprolide Acetate 11.25 MG/ML Prefilled Syringe"),
]
CLASSES = sorted({vs for vs, _, _ in DRUGS})


@pytest.mark.parametrize(("vs_id", "code", "name"), DRUGS)
def test_real_clinical_drug_codes_are_in_their_class_only(vocab: Vocabulary, vs_id: str, code: str, name: str) -> None:
    coding = {"system": RXNORM, "code": code, "display": name}
    assert vocab.coding_in(vs_id, coding), name
    assert [other for other in CLASSES if other != vs_id and vocab.coding_in(other, coding)] == [], name


def test_antitussive_codeine_is_no_analgesic_step(vocab: Vocabulary) -> None:
    # VSAC schedule II/III opioids list it; it is a cough syrup, not a WHO step 2 analgesic
    coding = {"system": RXNORM, "code": "1356800"}
    assert not vocab.coding_in("analgesic-step2", coding)


@pytest.mark.parametrize(
    ("vs_id", "code"),
    [
        ("infection", "A41.01"),  # MSSA sepsis
        ("infection", "A40.3"),
        ("infection", "M46.36"),  # pyogenic discitis, lumbar
        ("infection", "M46.26"),
        ("infection", "M46.47"),
        ("infection", "M46.56"),
        ("infection", "M4636"),  # sent without the dot
        ("myeloma", "C90.00"),
        ("myeloma", "C90.31"),
        ("primary-radiosensitive", "C83.30"),
        ("primary-radiosensitive", "C85.90"),
        ("primary-radiosensitive", "C90.01"),
        ("primary-cancer", "C56.1"),  # ovary
        ("primary-cancer", "C53.9"),  # cervix
        ("primary-cancer", "C01"),  # base of tongue
        ("primary-cancer", "C32.0"),  # glottis
        ("primary-cancer", "C74.90"),  # adrenal (neuroblastoma)
        ("primary-cancer", "C88.0"),
        ("coagulopathy", "D68.32"),  # haemorrhagic disorder due to extrinsic circulating anticoagulants
        ("coagulopathy", "D69.59"),  # other secondary thrombocytopenia
        ("coagulopathy", "D65"),
    ],
)
def test_icd10cm_descendants(vocab: Vocabulary, vs_id: str, code: str) -> None:
    assert vocab.coding_in(vs_id, {"system": ICD, "code": code})


@pytest.mark.parametrize("code", ["M46.9", "A49.01", "C79.51", "C90", "X90.00"])
def test_icd10cm_neighbours_stay_out(vocab: Vocabulary, code: str) -> None:
    assert not vocab.coding_in("infection", {"system": ICD, "code": code})
    assert not vocab.coding_in("primary-cancer", {"system": ICD, "code": code}) or code == "C90"


@pytest.mark.parametrize(
    ("vs_id", "code"),
    [
        ("lab-inr", "6301-6"),
        ("lab-inr", "34714-6"),
        ("lab-inr", "46418-0"),  # point-of-care, capillary blood
        ("lab-inr", "38875-1"),
        ("lab-platelets", "777-3"),
        ("lab-platelets", "26515-7"),
        ("lab-platelets", "778-1"),
        ("pain-severity", "72514-3"),
        ("pain-severity", "38208-5"),
        ("ecog", "89247-1"),
        ("karnofsky", "89243-0"),
    ],
)
def test_loinc_variants(vocab: Vocabulary, vs_id: str, code: str) -> None:
    assert vocab.coding_in(vs_id, {"system": LOINC, "code": code})


def test_thrombophilia_is_no_bleeding_coagulopathy(vocab: Vocabulary) -> None:
    for code in ("D68.51", "D68.61", "D68.69"):
        assert not vocab.coding_in("coagulopathy", {"system": ICD, "code": code})


def test_pain_interference_is_not_pain_severity(vocab: Vocabulary) -> None:
    assert not vocab.coding_in("pain-severity", {"system": LOINC, "code": "77565-0"})


@pytest.mark.parametrize(
    ("vs_id", "code", "name"),
    [
        ("primary-radiosensitive", "254632001", "Small cell carcinoma of lung"),
        ("primary-radiosensitive", "255107005", "Seminoma of testis"),
        ("primary-radioresistant", "254637007", "Non-small cell lung cancer"),
        ("myeloma", "94704006", "Multiple myeloma in remission"),
        ("primary-cancer", "254632001", "Small cell carcinoma of lung"),
    ],
)
def test_snomed_from_published_sets(vocab: Vocabulary, vs_id: str, code: str, name: str) -> None:
    assert vocab.coding_in(vs_id, {"system": SCT, "code": code}), name


def test_non_small_cell_and_non_seminoma_are_not_radiosensitive(vocab: Vocabulary) -> None:
    for code in ("254637007", "432082001"):
        assert not vocab.coding_in("primary-radiosensitive", {"system": SCT, "code": code})


@pytest.mark.parametrize(
    ("key", "vs_ids"),
    [("labs", ["lab-platelets", "lab-inr", "lab-pt", "lab-aptt"]), ("ps_pain", ["ecog", "karnofsky", "pain-severity"])],
)
def test_prefetch_asks_for_every_loinc_code_the_valuesets_hold(vocab: Vocabulary, key: str, vs_ids: list[str]) -> None:
    from service.cds.definitions import PREFETCH

    asked = set(re.findall(r"http://loinc\.org\|([0-9-]+)", PREFETCH[key]))
    held = {code for vs_id in vs_ids for system, code in vocab.valueset(vs_id).codes if system == LOINC}
    assert asked == held
