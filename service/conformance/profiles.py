"""The spinecds StructureDefinitions (``fhir_profiles/StructureDefinition-*.json``) as checks.

Only the constraints our differentials use are interpreted: the element that decides whether a
resource is meant for a profile (``code`` / ``medication[x]`` bound to a ValueSet or fixed by a
pattern), minimum cardinality, choice types, required bindings (against our own ValueSets) and
integer value ranges. Each element's ``comment`` names what the rules lose when it is missing.
This is not a general FHIR validator: use the HL7 validator for that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.facts.fhirdata import finite_number
from service.facts.vocabulary import Vocabulary, codings

Resource = Mapping[str, Any]
CONSEQUENCE_PREFIX = "spinecds: when absent or outside the binding: "
CODE_ELEMENTS = ("code", "medication[x]")


@dataclass(frozen=True)
class ElementRule:
    name: str  # element name within the resource: "bodySite", "value[x]"
    min: int
    types: tuple[str, ...]
    valueset: str | None  # ValueSet id of a required binding
    min_value: int | None
    max_value: int | None
    consequence: str


@dataclass(frozen=True)
class Profile:
    id: str
    url: str
    noun: str  # "secondary cancer condition of the spine"
    type: str
    base: str
    code_valueset: str | None
    code_pattern: tuple[str, str] | None
    code_extensible: bool  # any code of this meaning belongs (near misses are findings)
    code_consequence: str
    rules: tuple[ElementRule, ...]


@dataclass
class Assessment:
    profile: Profile
    issues: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return not self.issues


# Choice types a profile excludes (its base does: mCODE's effective[x] has no instant, its course summary's
# performed[x] is a Period; our scores are integers) but the fact extractor still reads
# (service/facts/fhirdata.py observation_time, resource_time, numeric_value). validate reports them as
# profile findings and says so, rather than claiming the fact is lost.
READ_ANYWAY = frozenset({"effectiveInstant", "performedDateTime", "valueQuantity"})
READ_ANYWAY_NOTE = "spinecds still reads it, other FHIR validators reject it against this profile"


def _valueset_id(binding: Mapping[str, Any] | None) -> str | None:
    if not binding or binding.get("strength") != "required":
        return None
    return str(binding.get("valueSet", "")).rsplit("/", 1)[-1] or None


def load_profiles(directory: str | Path) -> list[Profile]:
    profiles = []
    for path in sorted(Path(directory).glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text(encoding="utf-8"))
        if sd.get("kind") != "resource":
            continue  # extensions (verification-status) constrain no resource the service reads
        rtype = sd["type"]
        elements = sd["differential"]["element"]
        root = next(e for e in elements if e["path"] == rtype)
        code_vs: str | None = None
        pattern: tuple[str, str] | None = None
        extensible = False
        code_consequence = ""
        rules = []
        for e in elements:
            if e["path"] == rtype or ":" in e["id"]:
                continue  # root, and slices (informative only)
            name = e["path"].split(".", 1)[1]
            binding = e.get("binding") or {}
            if name in CODE_ELEMENTS:
                code_vs = str(binding.get("valueSet", "")).rsplit("/", 1)[-1] or None
                extensible = binding.get("strength") == "extensible"
                code_consequence = str(e.get("comment", "")).removeprefix(CONSEQUENCE_PREFIX)
                if "patternCodeableConcept" in e:
                    c = e["patternCodeableConcept"]["coding"][0]
                    pattern = (c["system"], c["code"])
                continue
            comment = str(e.get("comment", ""))
            rules.append(
                ElementRule(
                    name,
                    int(e.get("min", 0)),
                    tuple(t["code"] for t in e.get("type", [])),
                    _valueset_id(binding),
                    e.get("minValueInteger"),
                    e.get("maxValueInteger"),
                    comment.removeprefix(CONSEQUENCE_PREFIX) if comment.startswith(CONSEQUENCE_PREFIX) else "",
                )
            )
        noun = str(root.get("short") or sd["title"])
        profiles.append(
            Profile(
                sd["id"],
                sd["url"],
                noun[:1].lower() + noun[1:],
                rtype,
                sd["baseDefinition"],
                code_vs,
                pattern,
                extensible,
                code_consequence,
                tuple(rules),
            )
        )
    return profiles


def _values(resource: Resource, name: str, types: Iterable[str]) -> tuple[str | None, list[Any]]:
    """(element key found, its values as a list). Choice elements search ``nameType`` keys."""
    if name.endswith("[x]"):
        stem = name[:-3]
        for key, value in resource.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                return key, [value]
        return None, []
    value = resource.get(name)
    if value is None or value == [] or value == {}:
        return None, []
    return name, value if isinstance(value, list) else [value]


def _code_concepts(resource: Resource) -> list[Any]:
    if resource.get("resourceType") == "MedicationRequest":
        concept = resource.get("medicationCodeableConcept")
        return [concept] if concept else []
    return [resource.get("code")]


class ProfileSet:
    def __init__(self, profiles: list[Profile], vocab: Vocabulary):
        self.profiles = profiles
        self.vocab = vocab

    @classmethod
    def load(cls, directory: str | Path) -> ProfileSet:
        return cls(load_profiles(directory), Vocabulary.load(directory))

    def candidates(self, resource: Resource) -> list[Profile]:
        """Profiles the resource is meant for: same type and its code in the profile's code binding."""
        found = [(c.get("system"), c.get("code")) for concept in _code_concepts(resource) for c in codings(concept)]
        return [
            p
            for p in self.profiles
            if p.type == resource.get("resourceType")
            and any(self._code_fits(p, system, code) for system, code in found)
        ]

    def _code_fits(self, profile: Profile, system: Any, code: Any) -> bool:
        if profile.code_pattern:
            return (system, code) == profile.code_pattern
        return bool(profile.code_valueset) and self.vocab.valueset(str(profile.code_valueset)).contains(system, code)

    def near_misses(self, resource: Resource) -> list[str]:
        """A resource that claims a profile's base (meta.profile) whose code our extensible binding lacks."""
        claimed = set((resource.get("meta") or {}).get("profile") or [])
        hits = {p.id for p in self.candidates(resource)}
        out = []
        for p in self.profiles:
            if p.type == resource.get("resourceType") and p.base in claimed and p.code_extensible and p.id not in hits:
                shown = (
                    ", ".join(
                        f"{c.get('system')}|{c.get('code')}" for cc in _code_concepts(resource) for c in codings(cc)
                    )
                    or "no coding"
                )
                why = f": {p.code_consequence}" if p.code_consequence else ""
                out.append(f"{p.noun}: code {shown} is not in ValueSet {p.code_valueset}{why}")
        return out

    def assess(self, resource: Resource) -> list[Assessment]:
        return [self._assess(p, resource) for p in self.candidates(resource)]

    def _assess(self, profile: Profile, resource: Resource) -> Assessment:
        result = Assessment(profile)
        for rule in profile.rules:
            key, values = _values(resource, rule.name, rule.types)
            label = rule.name.replace("[x]", "")
            why = f": {rule.consequence}" if rule.consequence else ""
            if key is None:
                if rule.min >= 1:
                    result.issues.append(f"{profile.noun} without {label}{why}")
                continue
            if rule.name.endswith("[x]") and rule.types:
                suffix = key[len(rule.name) - 3 :]
                if suffix[:1].lower() + suffix[1:] not in rule.types and suffix not in rule.types:
                    allowed = ", ".join(rule.types)
                    lenient = key in READ_ANYWAY
                    note = f": {READ_ANYWAY_NOTE}" if lenient else why
                    result.issues.append(f"{profile.noun}: {key} is not one of {allowed}{note}")
                    if not lenient:
                        continue
            coded = not rule.name.endswith("[x]") or key.endswith(("CodeableConcept", "Coding"))
            if rule.valueset and coded:
                vs = self.vocab.valueset(rule.valueset)
                for value in values:
                    if not any(vs.contains(c.get("system"), c.get("code")) for c in codings(value)):
                        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings(value)) or "no coding"
                        result.issues.append(f"{profile.noun}: {label} {shown} is not in ValueSet {rule.valueset}{why}")
            if rule.min_value is not None or rule.max_value is not None:
                number = _number(values[0])
                low = rule.min_value if rule.min_value is not None else float("-inf")
                high = rule.max_value if rule.max_value is not None else float("inf")
                if number is not None and not low <= number <= high:
                    result.issues.append(f"{profile.noun}: {key} {number:g} outside {low}..{high}")
        return result


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return finite_number(value)  # 10**400 is no number (float() would raise OverflowError)
    if isinstance(value, Mapping) and isinstance(value.get("value"), int | float):
        return finite_number(value["value"])
    return None
