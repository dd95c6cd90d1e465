"""Terminology loaded from the FHIR ValueSets in ``fhir_profiles/``: the single source of codes.

Matching is on system and code only, never display text. A ValueSet's codes are its
``expansion.contains`` (generated from published value sets and the ICD-10-CM tree by
``scripts/terminology generate``, docs/terminology.md) plus its explicit ``compose`` concepts.
ICD-10-CM codes match with or without the dot. An ICD-10-CM ``is-a`` filter is resolved by the
expansion, which must be present; ATC is hierarchical by code prefix, so an ATC ``is-a`` filter
matches every code that starts with it. SNOMED ``is-a`` needs a terminology server and is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_SYSTEM = "https://fhir.spinecds.org/CodeSystem/spinecds-local"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
PREFIX_HIERARCHY_SYSTEMS = frozenset({"http://www.whocc.no/atc"})
LEVEL_DESIGNATION = "vertebral-level"


def _norm(code: str) -> str:
    return code.replace(".", "").upper()


def _dotless(system: str, code: str) -> tuple[str, str] | None:
    """ICD-10-CM codes are also matched as sent without the dot (M4636 for M46.36)."""
    return (system, _norm(code)) if system == ICD10CM else None


@dataclass
class CompiledValueSet:
    id: str
    url: str
    codes: set[tuple[str, str]] = field(default_factory=set)
    prefixes: dict[str, list[str]] = field(default_factory=dict)

    def contains(self, system: str | None, code: str | None) -> bool:
        if not system or not code:
            return False
        if (system, code) in self.codes or _dotless(system, code) in self.codes:
            return True
        if system in self.prefixes:
            normalized = _norm(code)
            return any(normalized.startswith(p) for p in self.prefixes[system])
        return False


class VocabularyError(ValueError):
    pass


class Vocabulary:
    """All ValueSets by id, plus the vertebral-level designations."""

    def __init__(self, valuesets: Mapping[str, CompiledValueSet], levels: Mapping[tuple[str, str], str]):
        self._valuesets = dict(valuesets)
        self._levels = dict(levels)
        self.used: set[str] = set()

    @classmethod
    def load(cls, directory: str | Path) -> Vocabulary:
        valuesets: dict[str, CompiledValueSet] = {}
        levels: dict[tuple[str, str], str] = {}
        for path in sorted(Path(directory).glob("ValueSet-*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            vs = _compile(resource, levels)
            valuesets[vs.id] = vs
        if not valuesets:
            raise VocabularyError(f"no ValueSet-*.json found in {directory}")
        # local level codes (C1..S1) are levels by themselves
        for code in _local_level_codes():
            levels.setdefault((LOCAL_SYSTEM, code), code)
        return cls(valuesets, levels)

    @property
    def ids(self) -> list[str]:
        return sorted(self._valuesets)

    def valueset(self, vs_id: str) -> CompiledValueSet:
        try:
            return self._valuesets[vs_id]
        except KeyError as exc:
            raise VocabularyError(f"unknown ValueSet {vs_id!r}") from exc

    def coding_in(self, vs_id: str, coding: Mapping[str, Any]) -> bool:
        self.used.add(vs_id)
        return self.valueset(vs_id).contains(coding.get("system"), coding.get("code"))

    def concept_in(self, vs_id: str, concept: Any) -> bool:
        """True when any coding of a CodeableConcept (dict) is in the ValueSet."""
        self.used.add(vs_id)
        vs = self.valueset(vs_id)
        return any(vs.contains(c.get("system"), c.get("code")) for c in codings(concept))

    def level_of(self, concept: Any) -> str | None:
        for c in codings(concept):
            level = self._levels.get((c.get("system") or "", c.get("code") or ""))
            if level:
                return level
        return None


def codings(concept: Any) -> Sequence[Mapping[str, Any]]:
    if type(concept) is dict or isinstance(concept, Mapping):  # the type test first: faster
        coding = concept.get("coding")
        if isinstance(coding, list):
            return [c for c in coding if (type(c) is dict or isinstance(c, Mapping))]
    return []


def read_valueset(path: str | Path) -> CompiledValueSet:
    """One ValueSet file, compiled as :meth:`Vocabulary.load` compiles it."""
    return _compile(json.loads(Path(path).read_text(encoding="utf-8")), {})


def _compile(resource: Mapping[str, Any], levels: dict[tuple[str, str], str]) -> CompiledValueSet:
    vs_id = str(resource.get("id") or "")
    if resource.get("resourceType") != "ValueSet" or not vs_id:
        raise VocabularyError("not a ValueSet with an id")
    vs = CompiledValueSet(id=vs_id, url=str(resource.get("url", "")))
    expansion = resource.get("expansion") or {}
    for member in expansion.get("contains", []):
        _add(vs, member["system"], member["code"])
    for include in resource.get("compose", {}).get("include", []):
        system = include.get("system")
        if not system:
            raise VocabularyError(f"ValueSet {vs_id}: include without system")
        for concept in include.get("concept", []):
            _add(vs, system, concept["code"])
            for d in concept.get("designation", []):
                if d.get("use", {}).get("code") == LEVEL_DESIGNATION:
                    levels[(system, concept["code"])] = d["value"]
        for flt in include.get("filter", []):
            if flt.get("op") == "is-a" and system == ICD10CM and expansion.get("contains"):
                continue  # resolved by the generated expansion
            if flt.get("op") != "is-a" or system not in PREFIX_HIERARCHY_SYSTEMS:
                raise VocabularyError(
                    f"ValueSet {vs_id}: filter {flt.get('op')} on {system} needs a terminology server"
                )
            vs.prefixes.setdefault(system, []).append(_norm(flt["value"]))
    return vs


def _add(vs: CompiledValueSet, system: str, code: str) -> None:
    vs.codes.add((system, code))
    dotless = _dotless(system, code)
    if dotless:
        vs.codes.add(dotless)


def _local_level_codes() -> list[str]:
    return [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]


LEVEL_ORDER = {code: i for i, code in enumerate(_local_level_codes())}
