"""Clinical literals live in reviewed data (rules/*.yaml, fhir_profiles/ValueSet-*.json), never in Python.

An AST scan of the fact extractor, the card builder and the CDS Hooks layer: no string that looks like a SNOMED
CT, LOINC, ICD-10 or RxNorm code (or an LOINC answer code), no integer that could be a code (CPT, SNOMED,
RxNorm as a number), no "N days" in text, and in the clinical logic (service/facts, service/cards) no number
but 0, 1 and -1 unless ALLOWED says why it is not clinical. A window, threshold or code list belongs in
rules/thresholds.yaml, rules/facts.yaml or a ValueSet (docs/rules.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

SCANNED = ("service/facts", "service/cards", "service/cds")
CLINICAL_LOGIC = ("service/facts", "service/cards")  # where every number is checked, not only code-like ones

CODE = re.compile(
    r"^(\d{4,18}"  # SNOMED CT (6-18 digits), RxNorm (4-7 digits), CPT (5 digits)
    r"|\d{1,7}-\d"  # LOINC
    r"|LA\d{1,7}-\d"  # LOINC answer
    r"|[A-Z]\d{2}(\.?[0-9A-Z]{1,4})?)$"  # ICD-10 / ICD-10-CM
)
DAYS_IN_TEXT = re.compile(r"\b\d+(\.\d+)?\s*(days?|weeks?|months?)\b")

# (file, value) -> why this number in the clinical logic is not a clinical literal. Keep each reason honest;
# a window, threshold, dose or code never belongs here.
ALLOWED: dict[tuple[str, float], str] = {
    ("service/facts/extract.py", 99): "sort key for a vertebral level not in LEVEL_ORDER (after every real level)",
    ("service/facts/extract.py", 3): "WHO analgesic ladder step numbers: the ValueSets are analgesic-step1..3",
    ("service/facts/extract.py", 2): "WHO analgesic ladder step numbers: the ValueSets are analgesic-step1..3",
    ("service/facts/fhirdata.py", 2): "index of a reference path segment (Medication/id)",
    ("service/facts/fhirdata.py", 4): "lengths of FHIR date strings (YYYY) and path segments",
    ("service/facts/fhirdata.py", 5): "length of a FHIR date string (YYYY-MM, month at [5:7])",
    ("service/facts/fhirdata.py", 7): "length of a FHIR date string (YYYY-MM)",
    ("service/facts/fhirdata.py", 10): "length of a FHIR date string (YYYY-MM-DD)",
    ("service/facts/fhirdata.py", 3): "index of a reference path segment (Medication/id/_history/n)",
    ("service/facts/fhirdata.py", 1e100): "bound that keeps sums and unit scaling finite (MAX_MAGNITUDE)",
    ("service/facts/fhirdata.py", 0.001): "unit conversion (count per µL -> 10⁹/L)",
    ("service/facts/fhirdata.py", 1e-09): "unit conversion (count per L -> 10⁹/L)",
    ("service/facts/fhirdata.py", 1000.0): "unit conversion (10¹²/L -> 10⁹/L)",
    ("service/facts/fhirdata.py", 12.0): "unit conversion (months per year)",
    ("service/facts/fhirdata.py", 4.345): "unit conversion (weeks per month)",
    ("service/facts/fhirdata.py", 30.44): "unit conversion (days per month)",
    ("service/facts/fhirdata.py", 128): "size of the unit-spelling memos (functools.lru_cache)",
    ("service/facts/fhirdata.py", 64): "longest unit spelling (code + text) the unit-factor memo keeps",
    ("service/facts/vocabulary.py", 6): "anatomy: vertebral level names C1-C7 (range end 8)",
    ("service/facts/vocabulary.py", 8): "anatomy: vertebral level names C1-C7",
    ("service/facts/vocabulary.py", 13): "anatomy: vertebral level names T1-T12",
    ("service/cards/build.py", 140): "CDS Hooks: a card summary SHOULD be under 140 characters",
    ("service/cards/build.py", 136): "CDS Hooks summary limit less the ellipsis",
    ("service/cards/build.py", 3): "how many rule links a card carries",
}
# (file, value) -> why this integer of 1000 or more in the CDS Hooks layer is not a code
ALLOWED_LARGE: dict[tuple[str, int], str] = {
    ("service/cds/blueprint.py", 1000): "milliseconds per second",
    ("service/cds/feedback_limits.py", 1048576): "feedback body limit (1 MiB)",
    ("service/cds/feedback_limits.py", 4000): "feedback comment limit (characters)",
}


def _constants(folders: tuple[str, ...]) -> list[tuple[str, int, object]]:
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and not isinstance(node.value, bool) and id(node) not in prose:
                    found.append((rel, node.lineno, node.value))
    return found


def _unexplained(rel: str, value: float) -> bool:
    return value not in (0, 1, -1) and (rel, value) not in ALLOWED


def problems(folders: tuple[str, ...] = SCANNED, logic: tuple[str, ...] = CLINICAL_LOGIC) -> list[str]:
    out = []
    for rel, line, value in _constants(folders):
        where = f"{rel}:{line}"
        if isinstance(value, str):
            if CODE.match(value.strip()):
                out.append(f"{where}: {value!r} looks like a code: put it in a ValueSet (fhir_profiles/)")
            elif DAYS_IN_TEXT.search(value):
                out.append(f"{where}: {value!r} names a time span: make it a threshold (rules/thresholds.yaml)")
        elif isinstance(value, int) and value >= 1000 and (rel, value) not in ALLOWED_LARGE:
            out.append(f"{where}: {value} could be a code (CPT, SNOMED, RxNorm): put it in a ValueSet")
        elif isinstance(value, int | float) and rel.startswith(logic) and _unexplained(rel, value):
            out.append(f"{where}: number {value!r} in the clinical logic: data (thresholds/facts.yaml) or ALLOWED")
    return out


def test_no_clinical_literal_in_python() -> None:
    assert problems() == []


def test_every_allowed_number_is_still_there() -> None:
    """An allowance for a literal that is gone is removed, so the list stays a reviewed list."""
    present = {(rel, value) for rel, _, value in _constants(SCANNED) if isinstance(value, int | float)}
    assert set(ALLOWED) - present == set()
    assert set(ALLOWED_LARGE) - present == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('SEVERE = "24484000"\n', "looks like a code"),
        ('PLATELETS = {"777-3", "26515-7"}\n', "looks like a code"),
        ('ECOG_0 = "LA9622-7"\n', "looks like a code"),
        ('CORD = ("G95.20", "G83.4")\n', "looks like a code"),
        ("CPT = range(22510, 22516)\n", "could be a code"),
        ('NOTE = f"older than 30 days"\n', "names a time span"),
        ("WINDOW = timedelta(days=14)\n", "number 14 in the clinical logic"),
        ("HORIZONS = {'F-SORG-MORT-90D': (80.0, 100.0)}\n", "number 80.0 in the clinical logic"),
    ],
)
def test_a_literal_coming_back_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    folder = tmp_path / "service" / "facts"
    folder.mkdir(parents=True)
    (folder / "sneaked.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = problems(("service/facts",), ("service/facts",))
    assert any(expected in p for p in found), found
