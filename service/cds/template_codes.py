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
from functools import cache
from pathlib import Path

GENERATED = Path(__file__).resolve().parent / "template_codes.json"
# prefetch key -> the ValueSets whose codes its template searches (the one place this is written)
TEMPLATE_VALUESETS: dict[str, tuple[str, ...]] = {
    "labs": ("lab-platelets", "lab-inr", "lab-pt", "lab-aptt"),
    "ps_pain": ("ecog", "karnofsky", "pain-severity"),
    "procedures": ("radiotherapy-course", "vertebral-augmentation-procedure"),
}


def generate(profiles_dir: Path) -> str:
    """template_codes.json's text: prefetch key -> the ``system|code`` values of its ValueSets, sorted."""
    from service.facts.vocabulary import read_valueset

    out: dict[str, list[str]] = {}
    for key, vs_ids in TEMPLATE_VALUESETS.items():
        found: set[tuple[str, str]] = set()
        for vs_id in vs_ids:
            vs = read_valueset(profiles_dir / f"ValueSet-{vs_id}.json")
            if vs.prefixes:
                raise ValueError(f"ValueSet {vs_id}: a filter cannot be listed in a search")
            found |= vs.codes
        out[key] = [f"{system}|{code}" for system, code in sorted(found)]
    doc = {
        "generatedBy": "python -m service.cds.template_codes",
        "from": "fhir_profiles/ValueSet-<id>.json",
        "templates": out,
    }
    return json.dumps(doc, indent=1) + "\n"


def code_search(key: str) -> str:
    """The ``code`` search value of prefetch key ``key``: every code of its ValueSets."""
    return ",".join(_load()[key])


@cache
def _load() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(GENERATED.read_text(encoding="utf-8"))["templates"]
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
