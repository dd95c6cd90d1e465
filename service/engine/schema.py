"""The shape of every rule file (``rules/*.yaml``), as typed models that refuse unknown keys.

One model per file kind: :class:`RulesFile` (``rules-*.yaml``), :class:`DerivedFile`
(``derived.yaml``), :class:`FactsFile` (``facts.yaml``), :class:`CardsFile` (``cards.yaml``) and
:class:`ThresholdsFile` (``thresholds.yaml``). Cross-file checks (a comparator against the fact it
reads, a card group that exists, ...) are in :mod:`service.engine.ruleset`; this module only says
what a well-formed file looks like. docs/rules.md explains every key to an informaticist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SUMMARY_MAX = 140  # CDS Hooks: a card summary "SHOULD be under 140 characters"
CONCLUSIONS = (
    "EMERGENCY",
    "CONTRAINDICATED_ABSOLUTE",
    "CAUTION_RELATIVE",
    "NOT_ELIGIBLE",
    "ELIGIBLE",
    "ELIGIBLE_WITH_CAUTIONS",
    "RECOMMEND",
    "NEEDS_DATA",
    "INFO",
)
COMPARATORS = ("is", "in", "not", "gte", "gt", "lte", "lt", "unknown", "known")
CATEGORIES = ("conditions", "labs", "ps_pain", "findings", "meds", "allergies", "procedures", "imaging", "prognosis")

_FIELD = {"is": "is_", "in": "in_", "not": "not_"}  # comparators that are Python keywords

Text = Annotated[str, StringConstraints(min_length=1)]
RuleId = Annotated[str, StringConstraints(pattern=r"^((VA|MD|RT|NEU|SUP|PRG)-\d+|D-[A-Z0-9-]+)$")]
FactId = Annotated[str, StringConstraints(pattern=r"^F-[A-Z0-9-]+$")]
DerivedId = Annotated[str, StringConstraints(pattern=r"^D-[A-Z0-9-]+$")]
Scalar = bool | int | float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- rules-*.yaml


class Pattern(Strict):
    """One fact pattern of a rule's ``match``: a fact (or derived fact) and exactly one comparator."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    fact: FactId | None = None
    derived: DerivedId | None = None
    is_: Scalar | None = Field(None, alias="is")
    in_: list[Scalar] | None = Field(None, alias="in")
    not_: Scalar | None = Field(None, alias="not")
    gte: int | float | str | None = None
    gt: int | float | str | None = None
    lte: int | float | str | None = None
    lt: int | float | str | None = None
    unknown: bool | None = None
    known: bool | None = None
    same_level: str | None = None
    src: str | None = None
    src_not: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_target_one_comparator(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if ("fact" in data) == ("derived" in data):
                raise ValueError("name exactly one of fact or derived")
            ops = [k for k in COMPARATORS if k in data]
            if len(ops) != 1:
                raise ValueError(f"exactly one comparator of {', '.join(COMPARATORS)} (found {ops or 'none'})")
            if data.get(ops[0]) is None:
                raise ValueError(f"{ops[0]}: needs a value")
        return data

    @property
    def target(self) -> str:
        return self.fact or self.derived or ""

    @property
    def op(self) -> str:
        return next(name for name in COMPARATORS if getattr(self, _FIELD.get(name, name)) is not None)

    @property
    def operand(self) -> Any:
        return getattr(self, _FIELD.get(self.op, self.op))


Match = Annotated[dict[str, Pattern], Field(min_length=1)]


class Derive(Strict):
    fact: DerivedId
    value: Scalar = True


class Quote(Strict):
    seed: Text
    text: Text


class Conclude(Strict):
    type: Literal[CONCLUSIONS]  # type: ignore[valid-type]
    card: Text
    indicator: Literal["info", "warning", "critical"]
    summary: Annotated[str, StringConstraints(min_length=1, max_length=SUMMARY_MAX)]
    text: Text
    quotes: list[Quote] = []
    thresholds: list[Text] = []
    suggestions: list[Text] = []
    draft_suggestions: list[Text] = []


class RuleSpec(Strict):
    id: RuleId
    title: Text
    catalogue: str = ""
    sources: Annotated[list[Text], Field(min_length=1)]
    match: Match | None = None
    match_any: Annotated[list[Match], Field(min_length=1)] | None = None
    derive: Derive | None = None
    conclude: Conclude | None = None
    unknown_variant: bool = True

    @model_validator(mode="after")
    def _shape(self) -> RuleSpec:
        if (self.match is None) == (self.match_any is None):
            raise ValueError("use exactly one of match or match_any")
        if self.derive is None and self.conclude is None:
            raise ValueError("a rule needs derive, conclude or both")
        return self

    @property
    def branches(self) -> list[dict[str, Pattern]]:
        return self.match_any if self.match_any is not None else [self.match or {}]


class RulesFile(Strict):
    rules: list[dict[str, Any]]  # each rule is validated on its own (RuleSpec) so one bad rule hides no other


# ----------------------------------------------------------------------------- derived.yaml


class DerivedSpec(Strict):
    id: DerivedId
    description: Text
    values: Annotated[list[Text], Field(min_length=1)]
    sources: list[Text] = []


class DerivedFile(Strict):
    derived: list[DerivedSpec]


# ----------------------------------------------------------------------------- facts.yaml


class FactSource(Strict):
    """Where a fact comes from: a FHIR resource type, the elements read, and the ValueSets its codes must be in."""

    resource: Text  # FHIR resource type, or "site configuration" / "hook context"
    elements: list[Text] = []
    valuesets: list[Text] = []  # ids of fhir_profiles/ValueSet-<id>.json
    local_codes: list[Text] = []  # codes of the spinecds local CodeSystem (only where no standard code exists)
    summed: bool = False  # the fact is the sum of these codes' values (all of them) when no total is documented
    any_age: bool = False  # a dated record read whatever its date (note says why); else the fact declares a window
    note: str = ""


class ClosedWorld(Strict):
    """Absence on the obtained, complete lists means ``absent`` (never on a list not obtained)."""

    lists: Annotated[list[Literal[CATEGORIES]], Field(min_length=1)]  # type: ignore[valid-type]
    absent: Scalar = False


class Horizon(Strict):
    """Which prediction of a risk assessment the fact is: one whose ``whenRange.high`` lies from ``low`` to ``high``
    (threshold names, days)."""

    low: Text
    high: Text


class FactSpec(Strict):
    type: Literal["boolean", "number", "enum", "string"]
    values: list[Text] = []
    unit: str = ""
    per: Literal["patient", "level"] = "patient"
    meaning: Text
    sources: Annotated[list[FactSource], Field(min_length=1)]
    window: str | None = None  # a threshold name (days): older evidence is stale
    window_if_false: str | None = None  # a shorter window for a false (reassuring) value of a boolean fact
    horizon: Horizon | None = None  # a prediction's horizon (RiskAssessment.prediction.whenRange)
    closed_world: ClosedWorld | None = None
    algorithm: str = ""  # where Python computes the value (SINS from components, acuity, ...)

    @model_validator(mode="after")
    def _values_for_enums_only(self) -> FactSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum fact lists its values")
        if self.type != "enum" and self.values:
            raise ValueError("values: only for type enum")
        return self


class FactsFile(Strict):
    facts: dict[FactId, FactSpec]


# ----------------------------------------------------------------------------- cards.yaml


class SourceLink(Strict):
    label: Text
    url: str = ""


class CardGroup(Strict):
    title: Text
    order: Annotated[list[RuleId], Field(min_length=1)]
    orders: list[Literal["va", "rt", "other"]] = []
    suppresses: list[Text] = []
    source: SourceLink
    decision: str | None = None  # a key of decisions
    needs_data_to: str | None = None  # a key of decisions


class Coding(Strict):
    system: Text
    code: Text
    display: str = ""


class DoseTiming(Strict):
    """How often a proposed dose is given (FHIR Timing.repeat): ``frequency`` times per ``period`` ``periodUnit``."""

    frequency: Annotated[int, Field(ge=1)]
    period: Annotated[float, Field(gt=0)]
    periodUnit: Literal["h", "d", "wk"]  # noqa: N815 (the FHIR element name)


class Suggestion(Strict):
    label: Text
    code_text: str = ""
    code: Coding | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None
    specialty: str = ""
    unless: FactId | None = None  # not suggested when this fact is true
    source: SourceLink | None = None
    resource: Literal["ServiceRequest", "MedicationRequest"] | None = None
    medication: Coding | None = None
    dose_mg: float | None = None
    dosage_text: str = ""
    timing: DoseTiming | None = None

    @model_validator(mode="after")
    def _a_medication_proposal_is_complete(self) -> Suggestion:
        complete = self.medication and self.dose_mg and self.dosage_text and self.timing
        if self.resource == "MedicationRequest" and not complete:
            raise ValueError("a MedicationRequest suggestion gives medication, dose_mg, dosage_text and timing")
        return self


class DraftSuggestion(Strict):
    label: Text
    order: Text  # a ValueSet id the draft's code must be in
    action: Literal["delete", "update"]
    keep: Literal["fractured-levels"] | None = None


class Decision(Strict):
    title: Text
    specialties: list[Text] = []
    fold_into: list[Text] = []
    asks: bool = False


class Reference(Strict):
    label: Text
    url: str = ""


class OverrideReason(Strict):
    code: Text
    display: Text


class CardsFile(Strict):
    decisions: dict[str, Decision] = {}
    withhold: dict[RuleId, list[RuleId]] = {}  # a fired rule withholds these from the response
    references: dict[str, Reference] = {}
    cards: dict[str, CardGroup]
    suggestions: dict[str, Suggestion] = {}
    draft_suggestions: dict[str, DraftSuggestion] = {}
    override_reasons: list[OverrideReason] = []


# ----------------------------------------------------------------------------- thresholds.yaml


class Threshold(Strict):
    label: str = ""  # the words a card uses for it
    value: int | float
    unit: Text
    basis: Text
    source: Text

    @model_validator(mode="before")
    @classmethod
    def _number_not_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("value"), bool):
            raise ValueError("value: a number, not true/false")
        return data


class ThresholdsFile(Strict):
    thresholds: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")], Threshold]
