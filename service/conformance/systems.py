"""Code system URIs: the ones FHIR R4 defines for the terminologies the rules read, and the near
misses EHR interfaces send instead (``http://snomed.org/sct``, ``http://loinc.org/``, OIDs).

A coding with a near-miss system is never recognised by a ValueSet, so the fact it should feed is
silently unknown or false: ``spinecds validate`` reports it as an error. Canonical URIs from
https://terminology.hl7.org (External code systems) and the FHIR R4 terminology page.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

CANONICAL: dict[str, str] = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://unitsofmeasure.org": "UCUM",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://www.whocc.no/atc": "ATC",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://radlex.org": "RadLex",
}

# OIDs of the same code systems (HL7 OID registry); FHIR requires the URI instead
OIDS: dict[str, str] = {
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.6.8": "http://unitsofmeasure.org",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.6.73": "http://www.whocc.no/atc",
    "2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
}

# host/path spellings seen for the same systems (compared without scheme, "www.", case and trailing "/")
ALIASES: dict[str, str] = {
    "snomed.org/sct": "http://snomed.info/sct",
    "snomed.info": "http://snomed.info/sct",
    "snomed.org": "http://snomed.info/sct",
    "snomed.info/id": "http://snomed.info/sct",
    "loinc.org/loinc": "http://loinc.org",
    "hl7.org/fhir/sid/icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "hl7.org/fhir/sid/icd10": "http://hl7.org/fhir/sid/icd-10",
    "nlm.nih.gov/research/umls/rxnorm/": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "unitsofmeasure.org/ucum": "http://unitsofmeasure.org",
    "ama-assn.org/go/cpt-4": "http://www.ama-assn.org/go/cpt",
}


def _normal(uri: str) -> str:
    text = uri.strip().lower()
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    return text.removeprefix("www.").rstrip("/#")


_BY_NORMAL = {_normal(uri): uri for uri in CANONICAL} | {_normal(k): v for k, v in ALIASES.items()}


def intended_system(system: str) -> str | None:
    """The canonical URI a near-miss ``system`` stands for; None when it is canonical or unrelated."""
    if system in CANONICAL:
        return None
    oid = system.removeprefix("urn:oid:")
    if oid != system and oid in OIDS:
        return OIDS[oid]
    return _BY_NORMAL.get(_normal(system))


def _codings(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        if isinstance(node.get("system"), str) and ("code" in node or "value" in node):
            yield path, node
        for key, value in node.items():
            yield from _codings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for value in node:
            yield from _codings(value, path)


def system_findings(resource: Mapping[str, Any]) -> list[str]:
    out = []
    for path, coding in _codings(resource, ""):
        system = str(coding["system"])
        intended = intended_system(system)
        if intended is not None:
            out.append(
                f"{path}: system {system[:80]!r} is not the FHIR URI of {CANONICAL[intended]} ({intended}): "
                "no ValueSet recognises this code"
            )
    return out
