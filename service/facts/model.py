"""Three-valued facts: every catalogue fact is asserted as known (with a value) or unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PATIENT_LEVEL = "*"

Scalar = bool | int | float | str


@dataclass
class Fact:
    """One fact of RULE-CATALOGUE §5.2 at one vertebral level (``*`` = whole patient).

    ``known`` False means not documented / not obtainable / stale: never treated as false.
    ``refs`` are the FHIR references (``Type/id``) the value came from; ``note`` explains, in
    words a clinician reads, how the value was found (or why it is unknown).
    """

    fid: str
    known: bool
    value: Scalar | None = None
    level: str = PATIENT_LEVEL
    refs: list[str] = field(default_factory=list)
    note: str = ""
    source: str = ""

    def engine_dict(self, index: int) -> dict[str, Any]:
        d: dict[str, Any] = {"t": "f", "fid": self.fid, "known": self.known, "lvl": self.level, "i": index}
        if self.known:
            d["v"] = self.value
        if self.source:
            d["src"] = self.source
        return d

    def trace(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.fid, "value": self.value if self.known else "unknown"}
        if self.level != PATIENT_LEVEL:
            out["level"] = self.level
        if self.refs:
            out["reference"] = self.refs[0]
            if len(self.refs) > 1:
                out["references"] = list(self.refs)
        if self.note:
            out["note"] = self.note
        return out


def known(
    fid: str, value: Scalar, refs: list[str] | None = None, note: str = "", level: str = PATIENT_LEVEL, source: str = ""
) -> Fact:
    return Fact(fid, True, value, level, list(refs or []), note, source)


def unknown(fid: str, note: str, refs: list[str] | None = None, level: str = PATIENT_LEVEL, source: str = "") -> Fact:
    return Fact(fid, False, None, level, list(refs or []), note, source)
