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

from . import fhirdata as fd
from .model import PATIENT_LEVEL, Fact, known, unknown
from .vocabulary import LEVEL_ORDER, LOCAL_SYSTEM, Vocabulary, codings

Resource = Mapping[str, Any]

ESCC_ORDER = ["escc-0", "escc-1a", "escc-1b", "escc-1c", "escc-2", "escc-3"]
SINS_COMPONENTS = [
    "sins-location",
    "sins-pain",
    "sins-bone-lesion",
    "sins-alignment",
    "sins-collapse",
    "sins-posterolateral",
]
TOKUHASHI_ITEMS = [
    "tokuhashi-kps-points",
    "tokuhashi-extraspinal-bone-points",
    "tokuhashi-vertebral-mets-points",
    "tokuhashi-visceral-points",
    "tokuhashi-primary-points",
    "tokuhashi-palsy-points",
]
SEVERE_SNOMED = "24484000"


@dataclass
class ExtractionInput:
    vocab: Vocabulary
    resources: Mapping[str, list[dict[str, Any]]]
    available: frozenset[str]
    thresholds: Mapping[str, float]
    now: datetime
    draft_orders: list[dict[str, Any]] = field(default_factory=list)
    surgical_backup: str = "unknown"
    _vcf_levels: dict[str, list[str]] | None = field(default=None, init=False, repr=False)
    _observations: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _by_local_code: dict[str, list[dict[str, Any]]] | None = field(default=None, init=False, repr=False)

    def of(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def has(self, category: str) -> bool:
        return category in self.available

    def days(self, key: str) -> timedelta:
        return timedelta(days=float(self.thresholds[key]))

    def counted_observations(self) -> list[dict[str, Any]]:
        """Observations that count (not entered-in-error/cancelled), latest first; computed once."""
        if self._observations is None:
            oldest = datetime.min.replace(tzinfo=self.now.tzinfo)
            found = [o for o in self.of("Observation") if fd.observation_counts(o)]
            self._observations = sorted(
                found, key=lambda o: (fd.observation_time(o) or oldest, str(o.get("id"))), reverse=True
            )
        return self._observations

    def observations_with_local_code(self, code: str) -> list[dict[str, Any]]:
        if self._by_local_code is None:
            index: dict[str, list[dict[str, Any]]] = {}
            for o in self.counted_observations():
                codes = {c["code"] for c in codings(o.get("code")) if c.get("system") == LOCAL_SYSTEM}
                for code in codes:
                    if isinstance(code, str):
                        index.setdefault(code, []).append(o)
            self._by_local_code = index
        return self._by_local_code.get(code, [])


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
    return [c for c in inp.of("Condition") if fd.condition_counts(c) and inp.vocab.concept_in(vs_id, c.get("code"))]


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
    window: str | None,
    value: Callable[[Resource], Any],
    label: str,
    level: str = PATIENT_LEVEL,
) -> Fact:
    """Latest observation with a usable value wins; outside its window it is stale (unknown)."""
    usable = [(o, value(o)) for o in obs]
    usable = [(o, v) for o, v in usable if v is not None]
    if not usable:
        return unknown(fid, f"no {label} documented", level=level)
    o, v = usable[0]
    when = fd.observation_time(o)
    note = f"{label} {_shown(v)} ({f'{when.day} {when:%b %Y}' if when else 'undated'})"  # 29 May 2026
    if len(usable) > 1:
        note += f"; latest of {len(usable)}"
    if window is not None:
        if when is None:
            return unknown(fid, f"{label} undated", [fd.ref(o)], level=level)
        if inp.now - when > inp.days(window):
            return unknown(
                fid,
                f"latest {label} is stale: {when.date().isoformat()}, older than {inp.thresholds[window]:g} days",
                [fd.ref(o)],
                level=level,
            )
    return known(fid, v, [fd.ref(o)], note, level=level)


def local_obs(inp: ExtractionInput, code: str) -> list[dict[str, Any]]:
    return inp.observations_with_local_code(code)


def local_bool(inp: ExtractionInput, fid: str, code: str, label: str, window: str | None = None) -> Fact:
    return latest(inp, fid, local_obs(inp, code), window, fd.boolean_value, label)


def levels_of(inp: ExtractionInput, res: Resource) -> list[str]:
    found = {lvl for site in fd.body_sites(res) if (lvl := inp.vocab.level_of(site))}
    return sorted(found, key=lambda lvl: LEVEL_ORDER.get(lvl, 99))


def med_records(inp: ExtractionInput, vs_id: str, *, active_only: bool) -> list[dict[str, Any]]:
    statuses = {"active"} if active_only else {"active", "completed", "stopped", "on-hold"}
    out = []
    for rtype in ("MedicationRequest", "MedicationStatement"):
        for med in inp.of(rtype):
            if med.get("status") in statuses and any(
                inp.vocab.concept_in(vs_id, c) for c in fd.medication_concepts(med)
            ):
                out.append(med)
    return out


def med_fact(inp: ExtractionInput, fid: str, vs_id: str, label: str, *, active_only: bool) -> Fact:
    found = med_records(inp, vs_id, active_only=active_only)
    if found:
        return known(fid, True, [fd.ref(m) for m in found], f"{label} on the medication list")
    if inp.has("meds"):
        return known(fid, False, note=f"no {label} on the obtained medication list")
    return unknown(fid, "medication list not available")


# ----------------------------------------------------------------------------- disease


@extractor("F-MET")
def spinal_metastasis(inp: ExtractionInput) -> list[Fact]:
    found = conditions_in(inp, "spinal-metastasis")
    spinal = [c for c in found if levels_of(inp, c) or not fd.body_sites(c)]
    if spinal:
        levels = sorted({lvl for c in spinal for lvl in levels_of(inp, c)}, key=lambda x: LEVEL_ORDER.get(x, 99))
        note = (
            f"spinal/bone metastasis at {', '.join(levels)}" if levels else "bone metastasis, vertebral level not coded"
        )
        return [known("F-MET", True, [fd.ref(c) for c in spinal], note)]
    if inp.has("conditions"):
        return [known("F-MET", False, note="no spinal metastasis on the obtained problem list")]
    return [unknown("F-MET", "problem list not available")]


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
    found = conditions_in(inp, "spinal-metastasis")
    levels = sorted({lvl for c in found for lvl in levels_of(inp, c)}, key=lambda x: LEVEL_ORDER.get(x, 99))
    if found and all(levels_of(inp, c) for c in found):
        count = known(
            "F-MET-LEVELS", len(levels), [fd.ref(c) for c in found], f"metastatic levels: {', '.join(levels)}"
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
        "imaging.window_days",
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
        inp._vcf_levels = out
    return inp._vcf_levels


@extractor("F-VCF", "F-ACUTE")
def fractures(inp: ExtractionInput) -> list[Fact]:
    levels = vcf_levels(inp)
    if not levels:
        if inp.has("conditions"):
            return [
                known("F-VCF", False, note="no pathological vertebral fracture on the obtained problem list"),
                unknown("F-ACUTE", "no fracture to date"),
            ]
        return [unknown("F-VCF", "problem list not available"), unknown("F-ACUTE", "problem list not available")]
    facts: list[Fact] = []
    for lvl, refs in levels.items():
        facts.append(known("F-VCF", True, refs, f"pathological vertebral fracture at {lvl}", level=lvl))
        facts.append(acuity(inp, lvl, single=len(levels) == 1))
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
    obs = observations(inp, lambda o: at_level(o) and any(fd.has_local_code(o, c) for c in codes))
    fact = latest(inp, "F-ACUTE", obs, "imaging.window_days", value, f"fracture acuity at {lvl}", level=lvl)
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
    w = "imaging.window_days"
    return [
        local_bool(inp, "F-POST-WALL", "posterior-wall-disruption", "posterior wall disruption", w),
        latest(
            inp,
            "F-RETRO-PCT",
            local_obs(inp, "retropulsion-canal-compromise-pct"),
            w,
            fd.numeric_value,
            "retropulsion canal compromise %",
        ),
        latest(
            inp,
            "F-INTRASPINAL-PCT",
            local_obs(inp, "intraspinal-extension-canal-compromise-pct"),
            w,
            fd.numeric_value,
            "intraspinal extension canal compromise %",
        ),
        local_bool(inp, "F-PEDICLE", "pedicle-involvement-fracture-level", "pedicle involvement", w),
        local_bool(inp, "F-BURST", "burst-fracture", "burst fracture", w),
        latest(
            inp,
            "F-HEIGHT-LOSS-PCT",
            local_obs(inp, "vertebral-height-loss-pct"),
            w,
            fd.numeric_value,
            "vertebral height loss %",
        ),
        local_bool(inp, "F-SUBLUXATION", "subluxation-translation", "subluxation/translation", w),
        local_bool(inp, "F-LYTIC", "lytic-lesion", "lytic lesion", w),
        local_bool(inp, "F-EPIDURAL", "epidural-disease", "epidural disease", w),
    ]


@extractor("F-ESCC")
def escc(inp: ExtractionInput) -> list[Fact]:
    def grade(o: Resource) -> str | None:
        answer = fd.local_answer(o)
        return answer.removeprefix("escc-") if answer in ESCC_ORDER else None

    return [latest(inp, "F-ESCC", local_obs(inp, "escc-grade"), "imaging.window_days", grade, "ESCC grade")]


@extractor("F-SINS")
def sins(inp: ExtractionInput) -> list[Fact]:
    total = latest(inp, "F-SINS", local_obs(inp, "sins-total"), "imaging.window_days", fd.numeric_value, "SINS")
    if total.known:
        return [total]
    parts = [
        latest(inp, "F-SINS", local_obs(inp, c), "imaging.window_days", fd.numeric_value, c) for c in SINS_COMPONENTS
    ]
    if all(p.known for p in parts):
        value = int(sum(float(p.value or 0) for p in parts))
        return [known("F-SINS", value, [r for p in parts for r in p.refs], f"SINS {value} computed from 6 components")]
    missing = [c for c, p in zip(SINS_COMPONENTS, parts, strict=True) if not p.known]
    if len(missing) < len(SINS_COMPONENTS):
        total.note = f"SINS components incomplete: missing {', '.join(missing)}"
    return [total]


# ----------------------------------------------------------------------------- pain and analgesia


@extractor("F-PAIN")
def pain(inp: ExtractionInput) -> list[Fact]:
    obs = observations(inp, lambda o: inp.vocab.concept_in("pain-severity", o.get("code")))
    return [latest(inp, "F-PAIN", obs, "pain.window_days", fd.numeric_value, "pain NRS")]


@extractor("F-PAIN-MIDLINE", "F-PAIN-OFF-MIDLINE", "F-PAIN-MECH")
def pain_character(inp: ExtractionInput) -> list[Fact]:
    return [
        local_bool(inp, "F-PAIN-MIDLINE", "pain-midline-reproducible", "reproducible midline pain"),
        local_bool(inp, "F-PAIN-OFF-MIDLINE", "pain-radicular-or-off-midline", "radicular/off-midline pain"),
        local_bool(inp, "F-PAIN-MECH", "pain-mechanical", "mechanical pain"),
    ]


@extractor("F-ANALG-STEP")
def analgesic_step(inp: ExtractionInput) -> list[Fact]:
    for step in (3, 2, 1):
        found = med_records(inp, f"analgesic-step{step}", active_only=False)
        if found:
            return [known("F-ANALG-STEP", step, [fd.ref(m) for m in found], f"WHO step {step} analgesic tried")]
    if inp.has("meds"):
        return [known("F-ANALG-STEP", 0, note="no analgesic on the obtained medication list")]
    return [unknown("F-ANALG-STEP", "medication list not available")]


@extractor("F-BRACE")
def brace(inp: ExtractionInput) -> list[Fact]:
    return [local_bool(inp, "F-BRACE", "brace-tried", "spinal orthosis tried")]


# ----------------------------------------------------------------------------- neurology


@extractor("F-SCC-SYMPT")
def cord_compression(inp: ExtractionInput) -> list[Fact]:
    return [condition_fact(inp, "F-SCC-SYMPT", "cord-compression", "spinal cord/cauda equina compression")]


@extractor("F-NEURO-DEFICIT")
def neuro_deficit(inp: ExtractionInput) -> list[Fact]:
    return [local_bool(inp, "F-NEURO-DEFICIT", "neuro-deficit", "neurological deficit", "imaging.window_days")]


# ----------------------------------------------------------------------------- contraindications


@extractor("F-INFECT", "F-INFECT-SCREEN")
def infection(inp: ExtractionInput) -> list[Fact]:
    return [
        condition_fact(inp, "F-INFECT", "infection", "local or systemic infection"),
        local_bool(
            inp, "F-INFECT-SCREEN", "infection-screen-negative", "clinical assessment: no infection", "lab.window_days"
        ),
    ]


@extractor("F-COAG-DX", "F-ANTICOAG", "F-PLT", "F-INR", "F-COAG-UNCORRECTABLE")
def coagulation(inp: ExtractionInput) -> list[Fact]:
    w = "lab.window_days"

    def lab(vs_id: str) -> list[dict[str, Any]]:
        return observations(inp, lambda o: inp.vocab.concept_in(vs_id, o.get("code")))

    return [
        condition_fact(inp, "F-COAG-DX", "coagulopathy", "coagulopathy/thrombocytopenia"),
        med_fact(inp, "F-ANTICOAG", "anticoagulant", "active anticoagulant", active_only=True),
        latest(inp, "F-PLT", lab("lab-platelets"), w, fd.numeric_value, "platelets ×10⁹/L"),
        latest(inp, "F-INR", lab("lab-inr"), w, fd.numeric_value, "INR"),
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
    severe = [c for c in cardio if any(cc.get("code") == SEVERE_SNOMED for cc in codings(c.get("severity")))]
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
        return observations(inp, lambda o: inp.vocab.concept_in(vs_id, o.get("code")))

    items = [latest(inp, "F-TOK-TOTAL", local_obs(inp, c), None, fd.numeric_value, c) for c in TOKUHASHI_ITEMS]
    total = latest(
        inp, "F-TOK-TOTAL", local_obs(inp, "tokuhashi-revised-total"), None, fd.numeric_value, "revised Tokuhashi total"
    )
    if not total.known and all(i.known for i in items):
        value = int(sum(float(i.value or 0) for i in items))
        total = known("F-TOK-TOTAL", value, [r for i in items for r in i.refs], f"Tokuhashi {value} from 6 items")
    return [
        latest(inp, "F-ECOG", coded("ecog"), "ps.window_days", fd.numeric_value, "ECOG"),
        latest(inp, "F-KPS", coded("karnofsky"), "ps.window_days", fd.numeric_value, "KPS"),
        life_expectancy(inp),
        total,
    ]


def life_expectancy(inp: ExtractionInput) -> Fact:
    obs = local_obs(inp, "life-expectancy-estimate")

    def months(o: Resource) -> float | None:
        q = o.get("valueQuantity") or {}
        value = fd.numeric_value(o)
        if value is None:
            return None
        unit = str(q.get("code") or q.get("unit") or "mo")
        return {"wk": value / 4.345, "d": value / 30.44, "a": value * 12}.get(unit, value)

    return latest(inp, "F-LE", obs, None, months, "life-expectancy estimate (months)")


SORG_HORIZONS = {"F-SORG-MORT-90D": (80.0, 100.0), "F-SORG-MORT-1Y": (330.0, 400.0)}
DAYS_PER_UNIT = {"d": 1.0, "wk": 7.0, "mo": 30.44, "a": 365.25}


@extractor("F-SORG-MORT-90D", "F-SORG-MORT-1Y")
def sorg(inp: ExtractionInput) -> list[Fact]:
    """PRG-03: an external SORG RiskAssessment gives the probability of death at 90 days and 1 year."""
    assessments = [
        r
        for r in inp.of("RiskAssessment")
        if r.get("status") in {"final", "amended", "corrected", "preliminary"}
        and any(fd.has_local_code({"code": r.get(k)}, "sorg-spinal-metastasis-mortality") for k in ("method", "code"))
    ]
    assessments.sort(key=lambda r: fd.resource_time(r) or datetime.min.replace(tzinfo=inp.now.tzinfo), reverse=True)
    facts = []
    for fid, (lo, hi) in SORG_HORIZONS.items():
        fact = unknown(fid, "no SORG RiskAssessment" if inp.has("prognosis") else "risk assessments not available")
        for r in assessments:
            p = _prediction_at(r, lo, hi)
            if p is not None:
                when = fd.resource_time(r)
                fact = known(
                    fid, p, [fd.ref(r)], f"SORG mortality {p:.0%} ({when.date().isoformat() if when else 'undated'})"
                )
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
        days = value * DAYS_PER_UNIT.get(str(high.get("code") or high.get("unit") or "d"), 0.0)
        if lo <= days <= hi and 0.0 <= probability <= 1.0:
            return probability
    return None


# ----------------------------------------------------------------------------- radiotherapy and drugs


@extractor("F-PRIOR-RT", "F-PRIOR-RT-DAYS", "F-PRIOR-RT-DOSE-KNOWN", "F-PAIN-PERSIST-AFTER-RT")
def prior_rt(inp: ExtractionInput) -> list[Fact]:
    courses = [
        p
        for p in inp.of("Procedure")
        if p.get("status") in {"completed", "in-progress"}
        and inp.vocab.concept_in("radiotherapy-course", p.get("code"))
    ]
    persist = local_bool(
        inp, "F-PAIN-PERSIST-AFTER-RT", "pain-persistent-after-rt", "pain persistent/recurrent after RT"
    )
    disease_levels = set(vcf_levels(inp))
    for c in conditions_in(inp, "spinal-metastasis"):
        disease_levels.update(levels_of(inp, c))
    spine = [p for p in courses if set(levels_of(inp, p)) & disease_levels or not levels_of(inp, p)]
    if not spine:
        if inp.has("procedures"):
            return [
                known("F-PRIOR-RT", False, note="no prior radiotherapy course to these levels"),
                unknown("F-PRIOR-RT-DAYS", "no prior course"),
                unknown("F-PRIOR-RT-DOSE-KNOWN", "no prior course"),
                persist,
            ]
        return [
            unknown("F-PRIOR-RT", "radiotherapy history not available"),
            unknown("F-PRIOR-RT-DAYS", "radiotherapy history not available"),
            unknown("F-PRIOR-RT-DOSE-KNOWN", "radiotherapy history not available"),
            persist,
        ]
    course = max(spine, key=lambda p: fd.resource_time(p) or inp.now.replace(year=1900))
    refs = [fd.ref(course)]
    when = fd.resource_time(course)
    levels = levels_of(inp, course)
    note = f"prior RT course {'at ' + ', '.join(levels) if levels else '(levels not coded)'}"
    facts = [known("F-PRIOR-RT", True, refs, note)]
    facts.append(
        known("F-PRIOR-RT-DAYS", (inp.now - when).days, refs, f"ended {when.date().isoformat()}")
        if when
        else unknown("F-PRIOR-RT-DAYS", "course end date not documented", refs)
    )
    dose = any("dose-delivered" in str(ext.get("url", "")) for ext in course.get("extension", []) or [])
    facts.append(
        known(
            "F-PRIOR-RT-DOSE-KNOWN",
            dose and when is not None,
            refs,
            "dose/fractions documented" if dose else "dose to volume not documented",
        )
    )
    facts.append(persist)
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
    window = inp.days("imaging.window_days")
    reports = [
        r
        for r in inp.of("DiagnosticReport") + inp.of("ImagingStudy")
        if r.get("status") in {"final", "amended", "corrected", "preliminary", "available"}
    ]

    def recent(vs_id: str) -> list[dict[str, Any]]:
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
        found = recent(vs_id)
        if found:
            facts.append(known(fid, True, [fd.ref(r) for r in found], f"{label} within window"))
        elif inp.has("imaging"):
            facts.append(known(fid, False, note=f"no {label} within {inp.thresholds['imaging.window_days']:g} days"))
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


def iter_refs(facts: Iterable[Fact]) -> set[str]:
    return {r for f in facts for r in f.refs}
