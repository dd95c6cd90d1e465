"""The codes the prefetch templates search for, generated from their ValueSets in ``fhir_profiles/``.

The templates (``service/cds/definitions.py``) list every code of the lab, score and procedure ValueSets in
their ``code=`` search. The codes are kept once, in the ValueSets; ``template_codes.json`` beside this module
is generated from them so that an installed service (the image ships ``fhir_profiles/`` elsewhere, at
``SPINECDS_PROFILES_DIR``) reads the same list without the source tree. A test fails when it is stale.

    python -m service.cds.template_codes           # rewrite template_codes.json
    python -m service.cds.template_codes --check   # exit 1 when it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GENERATED = Path(__file__).resolve().parent / "template_codes.json"
TEMPLATE_VALUESETS = (
    "lab-platelets",
    "lab-inr",
    "lab-pt",
    "lab-aptt",
    "ecog",
    "karnofsky",
    "pain-severity",
    "radiotherapy-course",
    "vertebral-augmentation-procedure",
)


def generate(profiles_dir: Path) -> str:
    """template_codes.json's text: ValueSet id -> its ``system|code`` values, sorted."""
    from service.facts.vocabulary import read_valueset

    out: dict[str, list[str]] = {}
    for vs_id in TEMPLATE_VALUESETS:
        vs = read_valueset(profiles_dir / f"ValueSet-{vs_id}.json")
        if vs.prefixes:
            raise ValueError(f"ValueSet {vs_id}: a filter cannot be listed in a search")
        out[vs_id] = [f"{system}|{code}" for system, code in sorted(vs.codes)]
    doc = {
        "generatedBy": "python -m service.cds.template_codes",
        "from": "fhir_profiles/ValueSet-<id>.json",
        "valueSets": out,
    }
    return json.dumps(doc, indent=1) + "\n"


def load() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(GENERATED.read_text(encoding="utf-8"))["valueSets"]
    return data


def main(argv: list[str]) -> int:
    profiles = Path(__file__).resolve().parents[2] / "fhir_profiles"
    text = generate(profiles)
    if "--check" in argv:
        if GENERATED.read_text(encoding="utf-8") != text:
            print(f"{GENERATED} is stale: run python -m service.cds.template_codes", file=sys.stderr)
            return 1
        return 0
    GENERATED.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
