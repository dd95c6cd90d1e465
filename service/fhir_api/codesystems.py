"""CodeSystems the service defines from its rule base, built the same way for the FHIR package
(``fhir_profiles/CodeSystem-override-reason.json``, written by ``scripts/fhir-package generate``) and for
``GET /fhir/CodeSystem/override-reason``: one source, ``rules/cards.yaml`` ``override_reasons``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CANONICAL_BASE = "https://fhir.spinecds.org"
OVERRIDE_REASON_ID = "override-reason"
OVERRIDE_REASON_URL = f"{CANONICAL_BASE}/CodeSystem/{OVERRIDE_REASON_ID}"
PACKAGE_VERSION = "0.1.0"


def override_reason_codesystem(reasons: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The CodeSystem of the reasons a clinician can give when overriding a card (CDS Hooks overrideReasons)."""
    return {
        "resourceType": "CodeSystem",
        "id": OVERRIDE_REASON_ID,
        "url": OVERRIDE_REASON_URL,
        "version": PACKAGE_VERSION,
        "name": "SpinecdsOverrideReason",
        "title": "spinecds card override reasons",
        "status": "draft",
        "experimental": False,
        "publisher": "spinecds project",
        "description": "Reasons a clinician can give when overriding a spinecds card (CDS Hooks 2.0 "
        "Card.overrideReasons, returned in feedback). Generated from rules/cards.yaml override_reasons; do not "
        "edit by hand.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(reasons),
        "concept": [{"code": str(r["code"]), "display": str(r["display"])} for r in reasons],
    }
