"""Fact extraction: FHIR resources -> every fact of RULE-CATALOGUE §5.2, true/false/unknown.

No rule ever reasons over the absence of a fact: each extractor below asserts its fact either
known (with the FHIR references it came from) or unknown (with the reason). Absence of a code
becomes *false* only where the catalogue treats the source list as complete documentation
("closed world": the problem list, the medication list, the allergy list, the RT course list),
and only when that list was actually obtained; otherwise the fact is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.engine.schema import FactSpec

from . import fhirdata as fd
from .model import PATIENT_LEVEL, Fact, known, unknown
from .vocabulary import LEVEL_ORDER, LOCAL_SYSTEM, Vocabulary, codings

Resource = Mapping[str, Any]


@dataclass
class ExtractionInput:
    vocab: Vocabulary
    resources: Mapping[str, list[dict[str, Any]]]
    available: frozenset[str]
    thresholds: Mapping[str, float]
    now: datetime
    draft_orders: list[dict[str, Any]] = field(default_factory=list)
    surgical_backup: str = "unknown"
    # rules/facts.yaml: each fact's time window and, for a prediction, its horizon (threshold names). Required:
    # without the declarations a stale value would be read as current.
    facts: Mapping[str, FactSpec] = field(kw_only=True)
    _vcf_levels: dict[str, list[str]] | None = field(default=None, init=False, repr=False)
    # per-request memos (docs/performance.md, round 4): each Observation's time is parsed once, the counting
    # Observations are indexed by coding in input order, and only the lists a fact asks for are sorted
    _counted: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _keys: dict[int, tuple[datetime, str]] = field(default_factory=dict, init=False, repr=False)
    _times: dict[int, datetime | None] = field(default_factory=dict, init=False, repr=False)
    _observations: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _indexes: dict[str, dict[tuple[str, str], list[int]]] = field(default_factory=dict, init=False, repr=False)
    _counting_conditions: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _conditions: dict[str, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)
    _skeletal: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def of(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def has(self, category: str) -> bool:
        return category in self.available

    def days(self, key: str) -> timedelta:
        return timedelta(days=float(self.thresholds[key]))

    def window_name(self, fid: str, value: Any = None) -> str | None:
        """The threshold that is the fact's window (facts.yaml ``window:``; for a false value ``window_if_false:``
        when declared: a reassuring finding goes stale sooner), or None for a fact without one."""
        spec = self.facts[fid]
        if value is False and spec.window_if_false is not None:
            return spec.window_if_false
        return spec.window

    def window_days(self, fid: str, value: Any = None) -> float:
        """The fact's window in days; a fact read within a window must declare one in facts.yaml."""
        name = self.window_name(fid, value)
        if name is None:
            raise LookupError(f"{fid} is read within a time window but declares no window: in rules/facts.yaml")
        return float(self.thresholds[name])

    def window_for(self, fid: str, value: Any = None) -> timedelta:
        return timedelta(days=self.window_days(fid, value))

    def summed_codes(self, fid: str) -> list[str]:
        """The local codes whose values add up to the fact when no total is documented (facts.yaml ``summed``)."""
        return [code for s in self.facts[fid].sources if s.summed for code in s.local_codes]

    def observation_time(self, obs: Resource) -> datetime | None:
        """``fd.observation_time``, read once per Observation of this request."""
        key = id(obs)
        if key in self._times:
            return self._times[key]
        t = self._times[key] = fd.observation_time(obs)
        return t

    def _counting(self) -> list[dict[str, Any]]:
        """Observations that count (not entered-in-error/cancelled), in input order; computed once."""
        if self._counted is None:
            self._counted = [o for o in self.of("Observation") if fd.observation_counts(o)]
        return self._counted

    def counted_observations(self) -> list[dict[str, Any]]:
        """Observations that count (not entered-in-error/cancelled), latest first; computed once."""
        if self._observations is None:
            self._observations = self._at(range(len(self._counting())))
        return self._observations

    def observations_with_local_code(self, code: str) -> list[dict[str, Any]]:
        return self._at(self._coding_index("code").get((LOCAL_SYSTEM, code), []))

    def observations_in(self, vs_id: str, element: str = "code") -> list[dict[str, Any]]:
        """Counting observations whose ``element`` has a coding in the ValueSet, latest first: the same list as
        ``observations(inp, lambda o: inp.vocab.concept_in(vs_id, o.get(element)))``, from an index of the
        observations by coding built once per request (each distinct coding is looked up once per ValueSet)."""
        return self._at(self._positions_in(vs_id, element))

    def _positions_in(self, vs_id: str, element: str) -> list[int]:
        self.vocab.used.add(vs_id)
        vs = self.vocab.valueset(vs_id)
        found: set[int] = set()
        for (system, code), positions in self._coding_index(element).items():
            if vs.contains(system, code):
                found.update(positions)
        return sorted(found)

    def _at(self, positions: Iterable[int]) -> list[dict[str, Any]]:
        """The counting Observations at these input positions (ascending), latest first.

        A stable sort (``reverse`` keeps the input order of equal keys), so the list is exactly the
        subsequence of counted_observations() these positions make: only the lists a fact asks for are sorted.
        """
        counted, keys = self._counting(), self._keys
        positions = list(positions)
        oldest = datetime.min.replace(tzinfo=self.now.tzinfo)
        for i in positions:  # the sort key: (its time, else the oldest instant; its id), once per Observation
            if i not in keys:
                keys[i] = (self.observation_time(counted[i]) or oldest, str(counted[i].get("id")))
        return [counted[i] for i in sorted(positions, key=keys.__getitem__, reverse=True)]

    def _coding_index(self, element: str) -> dict[tuple[str, str], list[int]]:
        """(system, code) of ``element`` -> input positions of the counting Observations, ascending; computed once."""
        index = self._indexes.get(element)
        if index is None:
            index = {}
            for i, o in enumerate(self._counting()):
                concept = o.get(element)
                if concept is None:  # most Observations have no valueCodeableConcept
                    continue
                if type(concept) is dict:  # the usual case, read without a call: one coding, nothing to deduplicate
                    coding = concept.get("coding")
                    if type(coding) is list and len(coding) == 1 and type(only := coding[0]) is dict:
                        system, code = only.get("system"), only.get("code")
                        if isinstance(system, str) and isinstance(code, str):
                            positions = index.get((system, code))
                            if positions is None:
                                index[(system, code)] = [i]
                            else:
                                positions.append(i)
                        continue
                found = codings(concept)
                for system, code in {(c.get("system"), c.get("code")) for c in found}:
                    if isinstance(system, str) and isinstance(code, str):
                        index.setdefault((system, code), []).append(i)
            self._indexes[element] = index
        return index


Extractor = Callable[[ExtractionInput], list[Fact]]
EXTRACTORS: dict[str, Extractor] = {}  # fact id -> the extractor that asserts it
_ORDERED: list[Extractor] = []  # each extractor once, in registration order


def extractor(*fids: str) -> Callable[[Extractor], Extractor]:
    def register(fn: Extractor) -> Extractor:
        for fid in fids:
            EXTRACTORS[fid] = fn
        _ORDERED.append(fn)
        return fn

    return register


def extract_facts(inp: ExtractionInput) -> list[Fact]:
    facts: list[Fact] = []
    for fn in _ORDERED:
        facts.extend(fn(inp))
    facts.sort(key=lambda f: (f.fid, LEVEL_ORDER.get(f.level, -1), str(f.value)))
    return facts


# ----------------------------------------------------------------------------- helpers


def conditions_in(inp: ExtractionInput, vs_id: str) -> list[dict[str, Any]]:
    """Counting Conditions (active, not refuted) coded in the ValueSet, in input order; a new list each call."""
    found = inp._conditions.get(vs_id)
    if found is None:
        if inp._counting_conditions is None:
            inp._counting_conditions = [c for c in inp.of("Condition") if fd.condition_counts(c)]
        found = inp._conditions[vs_id] = [
            c for c in inp._counting_conditions if inp.vocab.concept_in(vs_id, c.get("code"))
        ]
    return list(found)


def condition_fact(inp: ExtractionInput, fid: str, vs_id: str, label: str) -> Fact:
    """Problem-list fact: true if coded, false if the list was obtained without it, else unknown."""
    found = conditions_in(inp, vs_id)
    if found:
        return known(fid, True, [fd.ref(c) for c in found], f"{label} on the problem list")
    if inp.has("conditions"):
        return known(fid, False, note=f"no active {label} on the obtained problem list")
    return unknown(fid, "problem list not available")


def observations(inp: ExtractionInput, match: Callable[[Resource], bool]) -> list[dict[str, Any]]:
    """Counting observations that match, latest first."""
    return [o for o in inp.counted_observations() if match(o)]


def _shown(value: Any) -> str:
    """A value as a clinician reads it in a note: yes/no, no float noise (8.0 -> 8, 1.380897 -> 1.38)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.3g}"
    return str(value)


def latest(
    inp: ExtractionInput,
    fid: str,
    obs: list[dict[str, Any]],
    value: Callable[[Resource], Any],
    label: str,
    level: str = PATIENT_LEVEL,
) -> Fact:
    """Latest observation with a usable value wins; outside the fact's window (facts.yaml) it is stale (unknown)."""
    first: tuple[Resource, Any] | None = None
    count = 0  # observations with a usable value
    for o in obs:
        v = value(o)
        if v is not None:
            count += 1
            if first is None:
                first = (o, v)
    return _latest_of(inp, fid, first, count, label, level)


def _latest_of(
    inp: ExtractionInput, fid: str, first: tuple[Resource, Any] | None, count: int, label: str, level: str
) -> Fact:
    """The fact of the latest usable observation ``first`` (and its value) of ``count`` usable ones."""
    if first is None:
        return unknown(fid, f"no {label} documented", level=level)
    o, v = first
    when = inp.observation_time(o)
    note = f"{label} {_shown(v)} ({f'{when.day} {when:%b %Y}' if when else 'undated'})"  # 29 May 2026
    if count > 1:
        note += f"; latest of {count}"
    if inp.window_name(fid, v) is not None:
        if when is None:
            return unknown(fid, f"{label} undated", [fd.ref(o)], level=level)
        if inp.now - when > inp.window_for(fid, v):
            return unknown(
                fid,
                f"latest {label} is stale: {when.date().isoformat()}, older than {inp.window_days(fid, v):g} days",
                [fd.ref(o)],
                level=level,
            )
    return known(fid, v, [fd.ref(o)], note, level=level)


def measured(inp: ExtractionInput, fid: str, obs: list[dict[str, Any]], unit: str, label: str) -> Fact:
    """Latest value converted into the threshold's unit; the latest with a unit that cannot be read is unknown."""
    first: tuple[Resource, float] | None = None
    count = 0  # values converted into ``unit``
    valued = False  # an observation with a numeric value came before
    for o in obs:
        try:
            in_unit = fd.quantity_in(o, unit)
        except fd.UnitProblem as problem:  # raised only for a numeric value
            if not valued:
                return unknown(fid, f"{label}: {problem}; value not compared", [fd.ref(o)])
            continue
        if in_unit is None:
            valued = valued or fd.numeric_value(o) is not None  # None too for a value too large once converted
            continue
        valued = True
        count += 1
        if first is None:
            first = (o, in_unit)
    return _latest_of(inp, fid, first, count, label, PATIENT_LEVEL)


def local_obs(inp: ExtractionInput, code: str) -> list[dict[str, Any]]:
    return inp.observations_with_local_code(code)


def local_bool(inp: ExtractionInput, fid: str, code: str, label: str) -> Fact:
    return latest(inp, fid, local_obs(inp, code), fd.boolean_value, label)


def levels_of(inp: ExtractionInput, res: Resource) -> list[str]:
    found = {lvl for site in fd.body_sites(res) if (lvl := inp.vocab.level_of(site))}
    return sorted(found, key=lambda lvl: LEVEL_ORDER.get(lvl, 99))


def med_records(
    inp: ExtractionInput, vs_id: str, *, active_only: bool, unresolved: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Orders/statements in the status window whose drug is in the ValueSet; those whose
    ``medicationReference`` cannot be resolved are appended to ``unresolved`` when given."""
    statuses = {"active"} if active_only else {"active", "completed", "stopped", "on-hold"}
    medications = fd.medications_by_id(inp.of("Medication"))
    out = []
    for rtype in ("MedicationRequest", "MedicationStatement"):
        for med in inp.of(rtype):
            if med.get("status") not in statuses:
                continue
            concepts = fd.medication_concepts(med, medications)
            if concepts is None:
                if unresolved is not None:
                    unresolved.append(med)
            elif any(inp.vocab.concept_in(vs_id, c) for c in concepts):
                out.append(med)
    return out


def med_fact(inp: ExtractionInput, fid: str, vs_id: str, label: str, *, active_only: bool) -> Fact:
    unresolved: list[dict[str, Any]] = []
    found = med_records(inp, vs_id, active_only=active_only, unresolved=unresolved)
    if found:
        return known(fid, True, [fd.ref(m) for m in found], f"{label} on the medication list")
    if unresolved:
        return unknown(
            fid,
            f"{len(unresolved)} medication record(s) reference a Medication that is not in the data",
            [fd.ref(m) for m in unresolved],
        )
    if inp.has("meds"):
        return known(fid, False, note=f"no {label} on the obtained medication list")
    return unknown(fid, "medication list not available")


# ----------------------------------------------------------------------------- disease


def nonspecific_only(inp: ExtractionInput, cond: Resource) -> bool:
    """Coded only as a secondary cancer without a site (ValueSet secondary-malignancy-nonspecific, mCODE's
    "secondary malignant neoplastic disease"): a metastasis somewhere, not a bone metastasis, unless the
    Condition names a vertebral level."""
    found = codings(cond.get("code"))
    return bool(found) and all(inp.vocab.concept_in("secondary-malignancy-nonspecific", {"coding": [c]}) for c in found)


def skeletal_conditions(inp: ExtractionInput) -> list[dict[str, Any]]:  # in input order, like conditions_in
    """Conditions that put disease in the spine: a bone/spinal metastasis (a nonspecific secondary only with
    a vertebral level), myeloma or solitary plasmacytoma of bone (skeletal by nature), or a lymphoma with a
    vertebral bodySite or beside a pathological vertebral fracture (the fracture is the skeletal disease)."""
    if inp._skeletal is not None:
        return list(inp._skeletal)
    found = []
    for c in conditions_in(inp, "spinal-metastasis"):
        levels = levels_of(inp, c)
        if levels or (not fd.body_sites(c) and not nonspecific_only(inp, c)):
            found.append(c)
    found += [c for c in conditions_in(inp, "skeletal-haematological") if c not in found]
    fractured = bool(conditions_in(inp, "pathological-vcf"))
    found += [c for c in conditions_in(inp, "lymphoma") if c not in found and (levels_of(inp, c) or fractured)]
    inp._skeletal = found
    return list(found)


@extractor("F-MET")
def spinal_metastasis(inp: ExtractionInput) -> list[Fact]:
    spinal = skeletal_conditions(inp)
    if spinal:
        levels = sorted({lvl for c in spinal for lvl in levels_of(inp, c)}, key=lambda x: LEVEL_ORDER.get(x, 99))
        note = (
            f"spinal/bone metastasis at {', '.join(levels)}" if levels else "bone metastasis, vertebral level not coded"
        )
        if any(inp.vocab.concept_in("skeletal-haematological", c.get("code")) for c in spinal):
            note += " (myeloma/plasmacytoma: skeletal disease)"
        return [known("F-MET", True, sorted(fd.ref(c) for c in spinal), note)]  # not in input order
    if inp.has("conditions"):
        return [known("F-MET", False, note="no spinal metastasis on the obtained problem list")]
    return [unknown("F-MET", "problem list not available")]


def age_years(inp: ExtractionInput) -> int | None:
    for patient in inp.of("Patient")[:1]:
        born = fd.parse_time(patient.get("birthDate"))
        if born is not None:
            now = inp.now
            return now.year - born.year - ((now.month, now.day) < (born.month, born.day))
    return None


@extractor("F-SCOPE")
def scope(inp: ExtractionInput) -> list[Fact]:
    """Who the service's cancer-pain and augmentation advice is for: an adult with cancer ("adult-cancer"), or
    out of scope: "paediatric" (age below scope.adult_min_age_years) or "no-cancer" (e.g. an osteoporotic
    fracture: no malignancy on the obtained problem list). Unknown without a birth date or problem list."""
    age = age_years(inp)
    adult_at = inp.thresholds["scope.adult_min_age_years"]
    if age is not None and age < adult_at:
        return [known("F-SCOPE", "paediatric", [], f"age {age} years (below {adult_at:g})")]
    cancer = (
        conditions_in(inp, "malignancy")
        + conditions_in(inp, "primary-cancer")
        + conditions_in(inp, "spinal-metastasis")
    )
    if age is None:
        return [unknown("F-SCOPE", "patient birth date not documented")]
    if cancer:
        first = min(fd.ref(c) for c in cancer)
        return [known("F-SCOPE", "adult-cancer", [first], f"age {age} years; cancer on the problem list")]
    if inp.has("conditions"):
        return [known("F-SCOPE", "no-cancer", [], f"age {age} years; no malignancy on the obtained problem list")]
    return [unknown("F-SCOPE", "problem list not available")]


@extractor("F-LIVER-DISEASE")
def liver_disease(inp: ExtractionInput) -> list[Fact]:
    """Chronic liver disease (cirrhosis): a reason to suspect coagulopathy (D-COAG-SUSPECTED, SC-46)."""
    return [condition_fact(inp, "F-LIVER-DISEASE", "liver-disease", "cirrhosis / chronic liver disease")]


@extractor("F-PRIM", "F-MYELOMA", "F-PRIM-HORMONE", "F-PRIM-SEED-DELTA")
def primary(inp: ExtractionInput) -> list[Fact]:
    prims = [
        c for c in conditions_in(inp, "primary-cancer") if not inp.vocab.concept_in("spinal-metastasis", c.get("code"))
    ]
    if not prims:
        why = (
            "no primary cancer on the obtained problem list" if inp.has("conditions") else "problem list not available"
        )
        return [unknown(f, why) for f in ("F-PRIM", "F-MYELOMA", "F-PRIM-HORMONE", "F-PRIM-SEED-DELTA")]
    refs = [fd.ref(c) for c in prims]

    def any_in(vs_id: str) -> bool:
        return any(inp.vocab.concept_in(vs_id, c.get("code")) for c in prims)

    if any_in("primary-radiosensitive"):
        cls = "sensitive"
    elif any_in("primary-radioresistant"):
        cls = "resistant"
    else:
        cls = "intermediate"
    return [
        known("F-PRIM", cls, refs, f"primary cancer; radiosensitivity class (anchors): {cls}"),
        known("F-MYELOMA", any_in("myeloma"), refs),
        known("F-PRIM-HORMONE", any_in("primary-hormone-sensitive"), refs),
        known("F-PRIM-SEED-DELTA", any_in("primary-seed-anchor-discrepancy"), refs),
    ]


@extractor("F-MET-LEVELS", "F-LESION-SIZE")
def metastatic_burden(inp: ExtractionInput) -> list[Fact]:
    """How many vertebral levels carry metastasis, and the largest lesion diameter (SUP-09)."""
    found = skeletal_conditions(inp)
    levels = sorted({lvl for c in found for lvl in levels_of(inp, c)}, key=lambda x: LEVEL_ORDER.get(x, 99))
    if found and all(levels_of(inp, c) for c in found):
        count = known(
            "F-MET-LEVELS", len(levels), sorted(fd.ref(c) for c in found), f"metastatic levels: {', '.join(levels)}"
        )
    elif found:
        count = unknown("F-MET-LEVELS", "a metastasis without a coded vertebral level", [fd.ref(c) for c in found])
    elif inp.has("conditions"):
        count = known("F-MET-LEVELS", 0, note="no spinal metastasis on the obtained problem list")
    else:
        count = unknown("F-MET-LEVELS", "problem list not available")
    size = latest(
        inp,
        "F-LESION-SIZE",
        local_obs(inp, "lesion-max-diameter"),
        fd.numeric_value,
        "largest lesion diameter (cm)",
    )
    return [count, size]


# ----------------------------------------------------------------------------- fracture


def vcf_levels(inp: ExtractionInput) -> dict[str, list[str]]:
    """Fractured level -> the Condition references documenting it (computed once per request)."""
    if inp._vcf_levels is None:
        out: dict[str, list[str]] = {}
        for c in conditions_in(inp, "pathological-vcf"):
            for lvl in levels_of(inp, c) or ["unspecified"]:
                out.setdefault(lvl, []).append(fd.ref(c))
        # a recent imaging conclusion (DiagnosticReport.conclusionCode, finding Observation) documents a
        # fracture too: at the finding's level, or "unspecified" when neither it nor the problem list names one
        for r in imaging_findings(inp, "F-VCF", "pathological-vcf"):
            levels = levels_of(inp, r)
            if levels or not out:
                for lvl in levels or ["unspecified"]:
                    out.setdefault(lvl, []).append(fd.ref(r))
        inp._vcf_levels = out
    return inp._vcf_levels


@extractor("F-VCF", "F-ACUTE", "F-ACUTE-LEVELS")
def fractures(inp: ExtractionInput) -> list[Fact]:
    levels = vcf_levels(inp)
    if not levels:
        if inp.has("conditions"):
            return [
                known("F-VCF", False, note="no pathological vertebral fracture on the obtained problem list"),
                unknown("F-ACUTE", "no fracture to date"),
                known("F-ACUTE-LEVELS", 0, note="no pathological vertebral fracture on the obtained problem list"),
            ]
        return [
            unknown("F-VCF", "problem list not available"),
            unknown("F-ACUTE", "problem list not available"),
            unknown("F-ACUTE-LEVELS", "problem list not available"),
        ]
    facts: list[Fact] = []
    acute: list[Fact] = []
    for lvl, refs in levels.items():
        facts.append(known("F-VCF", True, refs, f"pathological vertebral fracture at {lvl}", level=lvl))
        facts.append(acuity(inp, lvl, single=len(levels) == 1))
        if facts[-1].known and facts[-1].value in {"acute", "subacute"} and lvl in LEVEL_ORDER:
            acute.append(facts[-1])
    # VA-26 at every hook: how many fractured levels are acute or subacute (a lower bound when some are unknown)
    acute.sort(key=lambda f: LEVEL_ORDER.get(f.level, 99))
    names = [f.level for f in acute]
    facts.append(
        known(
            "F-ACUTE-LEVELS",
            len(acute),
            [r for f in acute for r in f.refs[:1]],
            f"acute/subacute fractures at {', '.join(names)}" if names else "no fracture documented as acute",
        )
    )
    return facts


def acuity(inp: ExtractionInput, lvl: str, *, single: bool) -> Fact:
    """F-ACUTE(level) from the local acuity, STIR and bone-scan findings at that level."""

    def at_level(o: Resource) -> bool:
        obs_levels = levels_of(inp, o)
        return lvl in obs_levels or (not obs_levels and single)

    def value(o: Resource) -> str | None:
        if fd.has_local_code(o, "vcf-acuity"):
            answer = fd.local_answer(o)
            return answer if answer in {"acute", "subacute", "chronic"} else None
        flag = fd.boolean_value(o)
        if flag is None:
            return None
        return "acute" if flag else "chronic"

    codes = ("vcf-acuity", "stir-hyperintense-vertebra", "bone-scan-uptake-acute")
    coded = sorted({i for c in codes for i in inp._coding_index("code").get((LOCAL_SYSTEM, c), [])})
    obs = [o for o in inp._at(coded) if at_level(o)]
    fact = latest(inp, "F-ACUTE", obs, value, f"fracture acuity at {lvl}", level=lvl)
    if fact.known and fact.refs:
        basis = next(o for o in obs if fd.ref(o) == fact.refs[0])
        if fd.has_local_code(basis, "bone-scan-uptake-acute"):
            fact.source = "bone-scan"
            if fact.value == "chronic" and conditions_in(inp, "myeloma"):
                # VA-28: in myeloma a normal bone scan can be false-negative, so it cannot establish
                # a chronic fracture; acuity stays unknown until MRI with STIR.
                return unknown(
                    "F-ACUTE",
                    f"myeloma: normal bone scan at {lvl} may be false-negative; acuity not established",
                    fact.refs,
                    level=lvl,
                    source="bone-scan",
                )
    return fact


@extractor(
    "F-POST-WALL",
    "F-RETRO-PCT",
    "F-INTRASPINAL-PCT",
    "F-PEDICLE",
    "F-BURST",
    "F-HEIGHT-LOSS-PCT",
    "F-SUBLUXATION",
    "F-LYTIC",
    "F-EPIDURAL",
)
def morphology(inp: ExtractionInput) -> list[Fact]:
    return [
        local_bool(inp, "F-POST-WALL", "posterior-wall-disruption", "posterior wall disruption"),
        latest(
            inp,
            "F-RETRO-PCT",
            local_obs(inp, "retropulsion-canal-compromise-pct"),
            fd.numeric_value,
            "retropulsion canal compromise %",
        ),
        latest(
            inp,
            "F-INTRASPINAL-PCT",
            local_obs(inp, "intraspinal-extension-canal-compromise-pct"),
            fd.numeric_value,
            "intraspinal extension canal compromise %",
        ),
        local_bool(inp, "F-PEDICLE", "pedicle-involvement-fracture-level", "pedicle involvement"),
        local_bool(inp, "F-BURST", "burst-fracture", "burst fracture"),
        latest(
            inp,
            "F-HEIGHT-LOSS-PCT",
            local_obs(inp, "vertebral-height-loss-pct"),
            fd.numeric_value,
            "vertebral height loss %",
        ),
        local_bool(inp, "F-SUBLUXATION", "subluxation-translation", "subluxation/translation"),
        local_bool(inp, "F-LYTIC", "lytic-lesion", "lytic lesion"),
        local_bool(inp, "F-EPIDURAL", "epidural-disease", "epidural disease"),
    ]


@extractor("F-ESCC")
def escc(inp: ExtractionInput) -> list[Fact]:
    def grade(o: Resource) -> str | None:  # an answer of ValueSet escc-grade: escc-<a value of F-ESCC>
        answer = fd.local_answer(o)
        if answer is None or not inp.vocab.concept_in("escc-grade", o.get("valueCodeableConcept")):
            return None
        value = answer.removeprefix("escc-")
        return value if value in inp.facts["F-ESCC"].values else None

    return [latest(inp, "F-ESCC", local_obs(inp, "escc-grade"), grade, "ESCC grade")]


@extractor("F-SINS")
def sins(inp: ExtractionInput) -> list[Fact]:
    total = latest(inp, "F-SINS", local_obs(inp, "sins-total"), fd.numeric_value, "SINS")
    if total.known:
        return [total]
    components = inp.summed_codes("F-SINS")
    parts = [latest(inp, "F-SINS", local_obs(inp, c), fd.numeric_value, c) for c in components]
    if parts and all(p.known for p in parts):
        value = int(sum(float(p.value or 0) for p in parts))
        refs = [r for p in parts for r in p.refs]
        return [known("F-SINS", value, refs, f"SINS {value} computed from {len(parts)} components")]
    missing = [c for c, p in zip(components, parts, strict=True) if not p.known]
    if len(missing) < len(components):
        total.note = f"SINS components incomplete: missing {', '.join(missing)}"
    return [total]


# ----------------------------------------------------------------------------- pain and analgesia


@extractor("F-PAIN")
def pain(inp: ExtractionInput) -> list[Fact]:
    obs = inp.observations_in("pain-severity")
    return [latest(inp, "F-PAIN", obs, fd.numeric_value, "pain NRS")]


@extractor("F-PAIN-MIDLINE", "F-PAIN-OFF-MIDLINE", "F-PAIN-MECH")
def pain_character(inp: ExtractionInput) -> list[Fact]:
    return [
        local_bool(inp, "F-PAIN-MIDLINE", "pain-midline-reproducible", "reproducible midline pain"),
        off_midline_pain(inp),
        local_bool(inp, "F-PAIN-MECH", "pain-mechanical", "mechanical pain"),
    ]


def off_midline_pain(inp: ExtractionInput) -> Fact:
    """Radicular pain on the problem list (radiculopathy, sciatica) is radicular pain; otherwise the focused
    exam decides. A problem list without it says nothing about the exam, so it never makes the fact false."""
    radicular = conditions_in(inp, "radicular-pain")
    if radicular:
        return known("F-PAIN-OFF-MIDLINE", True, [fd.ref(c) for c in radicular], "radicular pain on the problem list")
    return local_bool(inp, "F-PAIN-OFF-MIDLINE", "pain-radicular-or-off-midline", "radicular/off-midline pain")


@extractor("F-ANALG-STEP")
def analgesic_step(inp: ExtractionInput) -> list[Fact]:
    unresolved: list[dict[str, Any]] = []
    for step in (3, 2, 1):
        found = med_records(inp, f"analgesic-step{step}", active_only=False, unresolved=unresolved)
        if found and (step == 3 or not unresolved):
            return [known("F-ANALG-STEP", step, [fd.ref(m) for m in found], f"WHO step {step} analgesic tried")]
        if unresolved:  # an order whose drug cannot be read may be a higher step
            refs = sorted({fd.ref(m) for m in unresolved})
            return [
                unknown(
                    "F-ANALG-STEP", f"{len(refs)} medication record(s) reference a Medication not in the data", refs
                )
            ]
    if inp.has("meds"):
        return [known("F-ANALG-STEP", 0, note="no analgesic on the obtained medication list")]
    return [unknown("F-ANALG-STEP", "medication list not available")]


@extractor("F-BRACE")
def brace(inp: ExtractionInput) -> list[Fact]:
    return [local_bool(inp, "F-BRACE", "brace-tried", "spinal orthosis tried")]


# ----------------------------------------------------------------------------- neurology


REPORT_STATUSES = {"final", "amended", "corrected", "preliminary", "available"}


def imaging_reports(inp: ExtractionInput) -> list[dict[str, Any]]:
    """DiagnosticReports and ImagingStudies that count (not registered, cancelled or entered in error)."""
    return [r for r in inp.of("DiagnosticReport") + inp.of("ImagingStudy") if r.get("status") in REPORT_STATUSES]


def finding_observations(inp: ExtractionInput, vs_id: str) -> list[dict[str, Any]]:
    """Counting finding Observations, latest first, whose ``valueCodeableConcept`` is in ``vs_id``, or whose
    ``code`` is and whose value is not ``false`` (a negated finding does not count)."""
    counted = inp._counting()
    by_value = set(inp._positions_in(vs_id, "valueCodeableConcept"))
    by_code = {i for i in inp._positions_in(vs_id, "code") if fd.boolean_value(counted[i]) is not False}
    return inp._at(sorted(by_value | by_code))


def imaging_findings(inp: ExtractionInput, fid: str, vs_id: str) -> list[dict[str, Any]]:
    """Imaging conclusions coded in ``vs_id`` within the window of ``fid`` (facts.yaml), latest first.

    A DiagnosticReport's ``conclusionCode``, or a finding Observation whose ``valueCodeableConcept`` is in
    the ValueSet, or whose ``code`` is and whose value is not ``false`` (a negated finding does not count).
    """
    window = inp.window_for(fid)
    found = []
    for r in inp.of("DiagnosticReport"):
        if r.get("status") in REPORT_STATUSES and any(
            inp.vocab.concept_in(vs_id, c) for c in r.get("conclusionCode") or []
        ):
            found.append(r)
    found += finding_observations(inp, vs_id)
    dated = [(r, fd.resource_time(r)) for r in found]
    recent = [(r, t) for r, t in dated if t is not None and inp.now - t <= window]
    recent.sort(key=lambda rt: (rt[1], str(rt[0].get("id"))), reverse=True)
    return [r for r, _ in recent]


@extractor("F-SCC-SYMPT")
def cord_compression(inp: ExtractionInput) -> list[Fact]:
    """Cord / cauda equina compression on the problem list or in a recent imaging conclusion."""
    coded = sorted(conditions_in(inp, "cord-compression"), key=fd.ref)
    imaged = imaging_findings(inp, "F-SCC-SYMPT", "cord-compression")
    if coded or imaged:
        parts = ["on the problem list"] if coded else []
        for r in imaged[:1]:
            when = fd.resource_time(r)
            parts.append(f"on imaging ({fd.ref(r)}, {when.date().isoformat() if when else 'undated'})")
        return [
            known(
                "F-SCC-SYMPT",
                True,
                [fd.ref(c) for c in coded + imaged],
                "spinal cord/cauda equina compression " + " and ".join(parts),
            )
        ]
    if inp.has("conditions"):
        return [
            known("F-SCC-SYMPT", False, note="no cord/cauda equina compression on the problem list or recent imaging")
        ]
    return [unknown("F-SCC-SYMPT", "problem list not available")]


def onset_time(cond: Resource) -> datetime | None:
    """When a condition began: onset, else the date it was recorded (an Observation: when it was observed)."""
    if cond.get("resourceType") == "Observation":
        return fd.observation_time(cond)
    period = cond.get("onsetPeriod") or {}
    for value in (cond.get("onsetDateTime"), period.get("start") if isinstance(period, Mapping) else None):
        t = fd.parse_time(value)
        if t:
            return t
    return fd.parse_time(cond.get("recordedDate"))


@extractor("F-NEURO-DEFICIT", "F-NEURO-DEFICIT-NEW")
def neuro_deficit(inp: ExtractionInput) -> list[Fact]:
    """A neurological deficit (problem list or exam), and whether it is new (neuro.new_deficit_window_days).

    F-NEURO-DEFICIT: a deficit Condition (standard codes, ValueSet neuro-deficit) or the local exam finding
    within the neurological exam's window (facts.yaml). F-NEURO-DEFICIT-NEW: a deficit with onset (else recorded
    date), or an exam finding it (when no coded deficit explains it), within the new-deficit window; unknown when
    a deficit has no date or no exam is recorded.
    """
    exam = local_bool(inp, "F-NEURO-DEFICIT", "neuro-deficit", "neurological deficit")
    findings = finding_observations(inp, "neuro-deficit")
    recent = inp.window_for("F-NEURO-DEFICIT", True)  # a deficit finding is an observation at a time, like the exam
    findings = [o for o in findings if (t := inp.observation_time(o)) is not None and inp.now - t <= recent]
    coded = sorted(conditions_in(inp, "neuro-deficit") + findings, key=fd.ref)
    window = inp.window_for("F-NEURO-DEFICIT-NEW")
    days = f"{inp.window_days('F-NEURO-DEFICIT-NEW'):g} days"
    if coded:
        deficit = known("F-NEURO-DEFICIT", True, [fd.ref(c) for c in coded], "neurological deficit on the problem list")
    else:
        deficit = exam
    dated = [(c, onset_time(c)) for c in coded]
    new = [(c, t) for c, t in dated if t is not None and inp.now - t <= window]
    undated = [c for c, t in dated if t is None]
    exam_time = None
    if exam.known and exam.value is True and exam.refs:
        exam_obs = next((o for o in local_obs(inp, "neuro-deficit") if fd.ref(o) == exam.refs[0]), None)
        exam_time = fd.observation_time(exam_obs) if exam_obs else None
    if new:
        first = min(t for _, t in new)
        fresh = known(
            "F-NEURO-DEFICIT-NEW",
            True,
            [fd.ref(c) for c, _ in new],
            f"new neurological deficit: onset {first.date().isoformat()}, within {days}",
        )
    elif exam_time is not None and inp.now - exam_time <= window and not coded:
        fresh = known(
            "F-NEURO-DEFICIT-NEW",
            True,
            list(exam.refs),
            f"neurological deficit found on exam {exam_time.date().isoformat()}, within {days}",
        )
    elif undated:
        fresh = unknown(
            "F-NEURO-DEFICIT-NEW",
            "neurological deficit coded without onset or recorded date",
            [fd.ref(c) for c in undated],
        )
    elif coded:
        oldest = min(t for _, t in dated if t is not None)
        fresh = known(
            "F-NEURO-DEFICIT-NEW",
            False,
            [fd.ref(c) for c in coded],
            f"neurological deficit known since {oldest.date().isoformat()}, before the last {days}",
        )
    elif exam.known and exam.value is True:
        fresh = unknown(
            "F-NEURO-DEFICIT-NEW",
            f"deficit on exam older than {days}: whether it is new is not documented",
            list(exam.refs),
        )
    elif exam.known:
        fresh = known("F-NEURO-DEFICIT-NEW", False, list(exam.refs), "no neurological deficit on the recent exam")
    else:
        fresh = unknown("F-NEURO-DEFICIT-NEW", exam.note or "no neurological exam documented")
    return [deficit, fresh]


# ----------------------------------------------------------------------------- contraindications


@extractor("F-INFECT", "F-INFECT-SCREEN")
def infection(inp: ExtractionInput) -> list[Fact]:
    return [
        condition_fact(inp, "F-INFECT", "infection", "local or systemic infection"),
        local_bool(inp, "F-INFECT-SCREEN", "infection-screen-negative", "clinical assessment: no infection"),
    ]


@extractor("F-COAG-DX", "F-ANTICOAG", "F-PLT", "F-INR", "F-COAG-UNCORRECTABLE")
def coagulation(inp: ExtractionInput) -> list[Fact]:
    def lab(vs_id: str) -> list[dict[str, Any]]:
        return inp.observations_in(vs_id)

    return [
        condition_fact(inp, "F-COAG-DX", "coagulopathy", "coagulopathy/thrombocytopenia"),
        med_fact(inp, "F-ANTICOAG", "anticoagulant", "active anticoagulant", active_only=True),
        measured(inp, "F-PLT", lab("lab-platelets"), fd.UNIT_FOR_VALUESET["lab-platelets"], "platelets ×10⁹/L"),
        measured(inp, "F-INR", lab("lab-inr"), fd.UNIT_FOR_VALUESET["lab-inr"], "INR"),
        local_bool(inp, "F-COAG-UNCORRECTABLE", "coagulopathy-uncorrectable", "coagulopathy judged uncorrectable"),
    ]


@extractor("F-ALLERGY-PMMA", "F-ALLERGY-CONTRAST")
def allergies(inp: ExtractionInput) -> list[Fact]:
    records = [a for a in inp.of("AllergyIntolerance") if fd.allergy_counts(a)]
    nka = bool(local_obs(inp, "no-known-allergy"))
    facts = []
    for fid, vs_id, label in (
        ("F-ALLERGY-PMMA", "allergy-bone-cement", "bone cement (PMMA) allergy"),
        ("F-ALLERGY-CONTRAST", "allergy-contrast", "radiographic contrast allergy"),
    ):
        hits = [a for a in records if inp.vocab.concept_in(vs_id, a.get("code"))]
        hits += conditions_in(inp, vs_id)
        if hits:
            facts.append(known(fid, True, [fd.ref(a) for a in hits], label))
        elif inp.has("allergies") and (records or nka):
            facts.append(
                known(
                    fid,
                    False,
                    [fd.ref(a) for a in records[:1]],
                    f"allergy list reviewed ({len(records)} entries), no {label}",
                )
            )
        else:
            facts.append(unknown(fid, "no allergy list or 'no known allergies' documented"))
    return facts


@extractor("F-STENOSIS-NONCANCER", "F-CARDIOPULM-SEVERE")
def comorbidity(inp: ExtractionInput) -> list[Fact]:
    cardio = conditions_in(inp, "cardiopulmonary-disease")
    severe = [c for c in cardio if inp.vocab.concept_in("condition-severity-severe", c.get("severity"))]
    if severe:
        cp = known("F-CARDIOPULM-SEVERE", True, [fd.ref(c) for c in severe], "severe cardiopulmonary disease")
    elif cardio:
        cp = unknown(
            "F-CARDIOPULM-SEVERE", "cardiopulmonary disease coded without severity", [fd.ref(c) for c in cardio]
        )
    elif inp.has("conditions"):
        cp = known("F-CARDIOPULM-SEVERE", False, note="no heart failure/COPD on the obtained problem list")
    else:
        cp = unknown("F-CARDIOPULM-SEVERE", "problem list not available")
    return [condition_fact(inp, "F-STENOSIS-NONCANCER", "stenosis-noncancer", "non-cancer spinal stenosis"), cp]


@extractor("F-PRONE-OK")
def prone(inp: ExtractionInput) -> list[Fact]:
    return [local_bool(inp, "F-PRONE-OK", "prone-tolerance", "able to lie prone")]


@extractor("F-BACKUP")
def backup(inp: ExtractionInput) -> list[Fact]:
    if inp.surgical_backup == "unknown":
        return [unknown("F-BACKUP", "site has not configured SPINECDS_SPINE_SURGICAL_BACKUP")]
    return [known("F-BACKUP", inp.surgical_backup == "true", note="site configuration")]


# ----------------------------------------------------------------------------- performance, prognosis


@extractor("F-ECOG", "F-KPS", "F-LE", "F-TOK-TOTAL")
def performance(inp: ExtractionInput) -> list[Fact]:
    def coded(vs_id: str) -> list[dict[str, Any]]:
        return inp.observations_in(vs_id)

    items = [
        latest(inp, "F-TOK-TOTAL", local_obs(inp, c), fd.numeric_value, c) for c in inp.summed_codes("F-TOK-TOTAL")
    ]
    total = latest(
        inp, "F-TOK-TOTAL", local_obs(inp, "tokuhashi-revised-total"), fd.numeric_value, "revised Tokuhashi total"
    )
    if not total.known and items and all(i.known for i in items):
        value = int(sum(float(i.value or 0) for i in items))
        refs = [r for i in items for r in i.refs]
        total = known("F-TOK-TOTAL", value, refs, f"Tokuhashi {value} from {len(items)} items")
    return [
        latest(inp, "F-ECOG", coded("ecog"), fd.numeric_value, "ECOG"),
        latest(inp, "F-KPS", coded("karnofsky"), fd.numeric_value, "KPS"),
        life_expectancy(inp),
        total,
    ]


def life_expectancy(inp: ExtractionInput) -> Fact:
    """In months; a unit given only as text ("years", "weeks") is read, a missing or unknown one is unknown."""
    obs = local_obs(inp, "life-expectancy-estimate")
    return measured(inp, "F-LE", obs, "mo", "life-expectancy estimate (months)")


@extractor("F-SORG-MORT-90D", "F-SORG-MORT-1Y")
def sorg(inp: ExtractionInput) -> list[Fact]:
    """PRG-03: an external SORG RiskAssessment gives the probability of death at 90 days and 1 year: the latest
    assessment with a prediction at the fact's horizon (facts.yaml), unknown when it is older than the window."""
    assessments = [
        r
        for r in inp.of("RiskAssessment")
        if r.get("status") in {"final", "amended", "corrected", "preliminary"}
        and any(fd.has_local_code({"code": r.get(k)}, "sorg-spinal-metastasis-mortality") for k in ("method", "code"))
    ]
    assessments.sort(key=lambda r: fd.resource_time(r) or datetime.min.replace(tzinfo=inp.now.tzinfo), reverse=True)
    facts = []
    for fid in ("F-SORG-MORT-90D", "F-SORG-MORT-1Y"):
        horizon = inp.facts[fid].horizon
        if horizon is None:
            raise LookupError(f"{fid} declares no horizon: in rules/facts.yaml")
        lo, hi = inp.thresholds[horizon.low], inp.thresholds[horizon.high]
        if assessments:  # on record, but none predicts at this horizon
            fact = unknown(fid, f"no SORG prediction at {lo:g}-{hi:g} days on record", [fd.ref(r) for r in assessments])
        else:
            fact = unknown(fid, "no SORG RiskAssessment" if inp.has("prognosis") else "risk assessments not available")
        for r in assessments:
            p = _prediction_at(r, lo, hi)
            if p is not None:
                when = fd.resource_time(r)
                if when is None:
                    fact = unknown(fid, "SORG RiskAssessment undated", [fd.ref(r)])
                elif inp.now - when > inp.window_for(fid):
                    fact = unknown(
                        fid,
                        f"latest SORG RiskAssessment is stale: {when.date().isoformat()}, "
                        f"older than {inp.window_days(fid):g} days",
                        [fd.ref(r)],
                    )
                else:
                    fact = known(fid, p, [fd.ref(r)], f"SORG mortality {p:.0%} ({when.date().isoformat()})")
                break
        facts.append(fact)
    return facts


def _prediction_at(assessment: Resource, lo: float, hi: float) -> float | None:
    for pred in assessment.get("prediction") or []:
        if not isinstance(pred, Mapping) or not isinstance(pred.get("probabilityDecimal"), int | float):
            continue
        high = (pred.get("whenRange") or {}).get("high") or {}
        if not isinstance(high, Mapping) or not isinstance(high.get("value"), int | float):
            continue
        value, probability = fd.finite_number(high["value"]), fd.finite_number(pred["probabilityDecimal"])
        if value is None or probability is None:  # e.g. 10**400: no float holds it (found by hypothesis)
            continue
        try:  # a horizon without a unit is in days; one whose unit cannot be read is no horizon
            days = fd.quantity_in({"valueQuantity": high}, "d")
        except fd.UnitProblem:
            continue
        if days is not None and lo <= days <= hi and 0.0 <= probability <= 1.0:
            return probability
    return None


# ----------------------------------------------------------------------------- radiotherapy and drugs


def disease_levels(inp: ExtractionInput) -> list[str]:
    """Vertebral levels with a spinal metastasis or a pathological fracture, in spine order."""
    found = {lvl for lvl in vcf_levels(inp) if lvl in LEVEL_ORDER}
    for c in skeletal_conditions(inp):
        found.update(levels_of(inp, c))
    return sorted(found, key=lambda lvl: LEVEL_ORDER.get(lvl, 99))


def rt_courses(inp: ExtractionInput) -> list[dict[str, Any]]:
    """Radiotherapy course Procedures that happened (completed or in progress), latest first."""
    courses = [
        p
        for p in inp.of("Procedure")
        if p.get("status") in {"completed", "in-progress"}
        and inp.vocab.concept_in("radiotherapy-course", p.get("code"))
    ]
    oldest = datetime.min.replace(tzinfo=inp.now.tzinfo)
    return sorted(courses, key=lambda p: (fd.resource_time(p) or oldest, str(p.get("id"))), reverse=True)


def course_label(inp: ExtractionInput, course: Resource) -> str:
    when = fd.resource_time(course)
    levels = levels_of(inp, course)
    where = ", ".join(levels) if levels else "site not coded"
    return f"{fd.ref(course)} at {where}, ended {when.date().isoformat() if when else 'on a date not documented'}"


def course_site(inp: ExtractionInput, course: Resource) -> str:
    """'levels' (vertebral levels coded), 'spine' (the spine without levels, or no site: coverage unknown) or
    'elsewhere' (only non-spinal sites, e.g. chest wall or breast: covers no vertebral level)."""
    if levels_of(inp, course):
        return "levels"
    sites = fd.body_sites(course)
    if not sites or any(inp.vocab.concept_in("spine-region", site) for site in sites):
        return "spine"
    return "elsewhere"


def pain_after_rt(inp: ExtractionInput, courses: list[dict[str, Any]]) -> Fact:
    """Pain persisting or recurring after RT: the latest dated pain score within the fact's window at/after a
    course ended, at a treated level or without a level; else the local clinician flag."""
    flag = local_bool(inp, "F-PAIN-PERSIST-AFTER-RT", "pain-persistent-after-rt", "pain persistent/recurrent after RT")
    window = inp.window_for("F-PAIN-PERSIST-AFTER-RT")
    scores = [
        o for o in inp.observations_in("pain-severity") if (t := inp.observation_time(o)) and inp.now - t <= window
    ]
    for course in courses:
        ended = fd.resource_time(course)
        treated = set(levels_of(inp, course))
        if ended is None or course.get("status") != "completed" or course_site(inp, course) == "elsewhere":
            continue
        for o in scores:  # latest first
            when, value = inp.observation_time(o), fd.numeric_value(o)
            at = set(levels_of(inp, o))
            if when is None or value is None or when < ended or (at and treated and not at & treated):
                continue
            label = f"pain NRS {value:g} on {when.date().isoformat()} after RT course {course_label(inp, course)}"
            return known("F-PAIN-PERSIST-AFTER-RT", value >= 1, [fd.ref(o), fd.ref(course)], label)
    return flag


@extractor("F-PRIOR-RT", "F-PRIOR-RT-DAYS", "F-PRIOR-RT-DOSE-KNOWN", "F-PAIN-PERSIST-AFTER-RT")
def prior_rt(inp: ExtractionInput) -> list[Fact]:
    """Prior radiotherapy per diseased vertebral level (F-PRIOR-RT(level)), with the interval and dose of the
    latest course covering the level. RT to T4 says nothing about an unirradiated L2; a course whose only
    sites are elsewhere (chest wall) covers no level; a course without a site, a spine site without levels or a
    history of irradiation (Z92.3) leaves the uncovered levels unknown."""
    courses = rt_courses(inp)
    persist = pain_after_rt(inp, courses)
    located: dict[str, list[dict[str, Any]]] = {}
    unlocated = []
    for course in courses:
        kind = course_site(inp, course)
        if kind == "levels":
            for lvl in levels_of(inp, course):
                located.setdefault(lvl, []).append(course)
        elif kind == "spine":
            unlocated.append(course)
    history = conditions_in(inp, "history-of-irradiation")
    levels = disease_levels(inp)
    elsewhere_note = "; ".join(course_label(inp, c) for cs in located.values() for c in cs[:1])
    facts: list[Fact] = []
    irradiated = False
    for lvl in levels or [PATIENT_LEVEL]:
        covering = located.get(lvl, []) if lvl != PATIENT_LEVEL else []
        if covering:
            irradiated = True
            course = covering[0]
            refs = [fd.ref(course)]
            when = fd.resource_time(course)
            facts.append(known("F-PRIOR-RT", True, refs, f"prior RT course {course_label(inp, course)}", level=lvl))
            facts.append(
                known("F-PRIOR-RT-DAYS", (inp.now - when).days, refs, f"ended {when.date().isoformat()}", level=lvl)
                if when
                else unknown("F-PRIOR-RT-DAYS", "course end date not documented", refs, level=lvl)
            )
            dose = any("dose-delivered" in str(ext.get("url", "")) for ext in course.get("extension", []) or [])
            facts.append(
                known(
                    "F-PRIOR-RT-DOSE-KNOWN",
                    dose and when is not None,
                    refs,
                    "dose/fractions documented" if dose else "dose to volume not documented",
                    level=lvl,
                )
            )
            continue
        where = f"at {lvl}" if lvl != PATIENT_LEVEL else "to the spinal disease (its level is not coded)"
        if unlocated:
            facts.append(
                unknown(
                    "F-PRIOR-RT",
                    f"radiotherapy course without vertebral levels: {course_label(inp, unlocated[0])}",
                    [fd.ref(c) for c in unlocated],
                    level=lvl,
                )
            )
        elif history and not located:  # with course summaries on record, Z92.3 is taken to refer to them
            facts.append(
                unknown(
                    "F-PRIOR-RT",
                    "history of irradiation on the problem list: site and dates not documented",
                    [fd.ref(c) for c in history],
                    level=lvl,
                )
            )
        elif lvl == PATIENT_LEVEL and located:
            facts.append(unknown("F-PRIOR-RT", f"prior spine RT ({elsewhere_note}); metastasis level not coded"))
        elif inp.has("procedures"):
            other = f" (prior course: {elsewhere_note})" if elsewhere_note else ""
            facts.append(known("F-PRIOR-RT", False, note=f"no prior radiotherapy {where}{other}", level=lvl))
        else:
            facts.append(unknown("F-PRIOR-RT", "radiotherapy history not available", level=lvl))
    if not irradiated and history and not located:
        # Z92.3 alone: radiotherapy was given, and what is missing is known to be missing (the course summary)
        refs = [fd.ref(c) for c in history]
        facts += [
            unknown("F-PRIOR-RT-DAYS", "history of irradiation on the problem list: dates not documented", refs),
            known("F-PRIOR-RT-DOSE-KNOWN", False, refs, "history of irradiation: dose to volume not documented"),
        ]
    elif not irradiated:
        why = (
            "no prior course to the diseased levels" if inp.has("procedures") else "radiotherapy history not available"
        )
        facts += [unknown("F-PRIOR-RT-DAYS", why), unknown("F-PRIOR-RT-DOSE-KNOWN", why)]
    return facts + [persist]


@extractor("F-PRIOR-VA")
def prior_augmentation(inp: ExtractionInput) -> list[Fact]:
    """Prior vertebroplasty/kyphoplasty per level (completed Procedures, CPT 22510-22515): true at each level it
    treated, false at the other diseased levels when the procedure list was obtained; a procedure without a
    level leaves the untreated levels unknown."""
    done = [
        p
        for p in inp.of("Procedure")
        if p.get("status") == "completed" and inp.vocab.concept_in("vertebral-augmentation-procedure", p.get("code"))
    ]
    treated: dict[str, list[dict[str, Any]]] = {}
    unlocated = []
    for p in done:
        for lvl in levels_of(inp, p) or ["?"]:
            if lvl == "?":
                unlocated.append(p)
            else:
                treated.setdefault(lvl, []).append(p)
    facts = []
    for lvl, procs in sorted(treated.items(), key=lambda kv: LEVEL_ORDER.get(kv[0], 99)):
        when = fd.resource_time(procs[0])
        day = when.date().isoformat() if when else "date not documented"
        facts.append(
            known("F-PRIOR-VA", True, [fd.ref(p) for p in procs], f"vertebral augmentation at {lvl} ({day})", level=lvl)
        )
    for lvl in disease_levels(inp):
        if lvl in treated:
            continue
        if unlocated:
            facts.append(
                unknown(
                    "F-PRIOR-VA", "prior augmentation without a coded level", [fd.ref(p) for p in unlocated], level=lvl
                )
            )
        elif inp.has("procedures"):
            facts.append(known("F-PRIOR-VA", False, note=f"no prior augmentation at {lvl}", level=lvl))
        else:
            facts.append(unknown("F-PRIOR-VA", "procedure history not available", level=lvl))
    if not facts:
        facts.append(
            known("F-PRIOR-VA", False, note="no prior vertebral augmentation")
            if inp.has("procedures") and not unlocated
            else unknown("F-PRIOR-VA", "procedure history not available" if not unlocated else "level not coded")
        )
    return facts


@extractor("F-STEROID", "F-BMA", "F-SYSTX")
def drugs(inp: ExtractionInput) -> list[Fact]:
    return [
        med_fact(inp, "F-STEROID", "corticosteroid", "active corticosteroid", active_only=True),
        med_fact(inp, "F-BMA", "bone-modifying-agent", "bisphosphonate/denosumab", active_only=False),
        med_fact(inp, "F-SYSTX", "systemic-anticancer-therapy", "active systemic anticancer therapy", active_only=True),
    ]


# ----------------------------------------------------------------------------- imaging


@extractor("F-AXIAL-IMG", "F-MRI")
def imaging(inp: ExtractionInput) -> list[Fact]:
    reports = imaging_reports(inp)

    def recent(fid: str, vs_id: str) -> list[dict[str, Any]]:
        window = inp.window_for(fid)
        out = []
        for r in reports:
            concepts = [r.get("code")] + list(r.get("procedureCode") or [])
            when = fd.resource_time(r)
            if any(inp.vocab.concept_in(vs_id, c) for c in concepts) and when and inp.now - when <= window:
                out.append(r)
        return out

    facts = []
    for fid, vs_id, label in (
        ("F-AXIAL-IMG", "axial-spine-imaging", "CT/MRI of the spine"),
        ("F-MRI", "spine-mri", "MRI of the spine"),
    ):
        found = recent(fid, vs_id)
        if found:
            facts.append(known(fid, True, [fd.ref(r) for r in found], f"{label} within window"))
        elif inp.has("imaging"):
            facts.append(known(fid, False, note=f"no {label} within {inp.window_days(fid):g} days"))
        else:
            facts.append(unknown(fid, "imaging reports not available"))
    return facts


# ----------------------------------------------------------------------------- draft orders (order-select/sign)


@extractor("F-ORDER-VA", "F-ORDER-KYPHO", "F-LEVELS-REQ", "F-ORDER-LEVEL-NO-VCF", "F-ORDER-RT")
def draft_orders(inp: ExtractionInput) -> list[Fact]:
    va = [o for o in inp.draft_orders if inp.vocab.concept_in("vertebral-augmentation-procedure", o.get("code"))]
    rt = [o for o in inp.draft_orders if inp.vocab.concept_in("radiotherapy-course", o.get("code"))]
    facts = [
        known("F-ORDER-VA", bool(va), [fd.ref(o) for o in va]),
        known("F-ORDER-RT", bool(rt), [fd.ref(o) for o in rt]),
    ]
    facts.append(
        known(
            "F-ORDER-KYPHO",
            any(inp.vocab.concept_in("kyphoplasty-procedure", o.get("code")) for o in va),
            [fd.ref(o) for o in va],
        )
    )
    if not va:
        return facts + [
            unknown("F-LEVELS-REQ", "no draft vertebral augmentation order"),
            unknown("F-ORDER-LEVEL-NO-VCF", "no draft vertebral augmentation order"),
        ]
    requested = sorted({lvl for o in va for lvl in levels_of(inp, o)}, key=lambda x: LEVEL_ORDER.get(x, 99))
    refs = [fd.ref(o) for o in va]
    if not requested:
        return facts + [
            unknown("F-LEVELS-REQ", "draft order has no coded vertebral levels", refs),
            unknown("F-ORDER-LEVEL-NO-VCF", "draft order has no coded vertebral levels", refs),
        ]
    facts.append(known("F-LEVELS-REQ", len(requested), refs, f"levels requested: {', '.join(requested)}"))
    fractured = set(vcf_levels(inp))
    without = [lvl for lvl in requested if lvl not in fractured]
    if inp.has("conditions"):
        facts.append(
            known(
                "F-ORDER-LEVEL-NO-VCF",
                bool(without),
                refs,
                f"requested without documented fracture: {', '.join(without)}"
                if without
                else "every requested level has a documented fracture",
            )
        )
    else:
        facts.append(unknown("F-ORDER-LEVEL-NO-VCF", "problem list not available", refs))
    return facts


def catalogue_fact_ids() -> list[str]:
    return sorted(EXTRACTORS)
