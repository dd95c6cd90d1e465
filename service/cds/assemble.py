"""Build the one ``Pipeline`` every entry point runs: the app, ``spinecds evaluate``, the bench.

The only difference between them is whether the service may call an EHR's ``fhirServer``: the app
allows the hosts of ``SPINECDS_FHIR_SERVER_ALLOWLIST``; offline evaluation never fetches (an empty
allowlist; ``spinecds evaluate`` also drops ``fhirServer`` from each request).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from service.config import Settings
from service.engine.ruleset import RuleBase, load_rulebase
from service.engine.runtime import RuleEngine
from service.facts.vocabulary import Vocabulary
from service.fhir.allowlist import FhirServerAllowlist
from service.fhir.client import FetchLimits

from .pipeline import Pipeline


def load_rules(settings: Settings) -> RuleBase:
    """The rule base of ``SPINECDS_RULES_DIR`` with the site's ``SPINECDS_THRESHOLDS_FILE`` applied."""
    return load_rulebase(settings.rules_dir, settings.threshold_overrides)


def _fetch_limits(settings: Settings, *, offline: bool = False) -> FetchLimits:
    """Bounds on fetching from ``fhirServer``; ``offline``: nothing may be fetched."""
    return FetchLimits(
        settings.fhir_connect_timeout,
        settings.fhir_read_timeout,
        settings.fhir_max_pages,
        settings.fhir_max_response_bytes,
        max_total_bytes=settings.fhir_max_total_bytes,
        allowlist=FhirServerAllowlist() if offline else settings.fhir_servers,
    )


def build_pipeline(
    settings: Settings, clock: Callable[[], datetime] | None = None, *, offline: bool = False
) -> Pipeline:
    """Rules (with threshold overrides), rule engine, vocabulary and fetch limits, assembled once.

    ``offline=True``: no fhirServer is ever called, whatever ``SPINECDS_FHIR_SERVER_ALLOWLIST`` says.
    """
    return Pipeline(
        RuleEngine(load_rules(settings)),
        Vocabulary.load(settings.profiles_dir),
        _fetch_limits(settings, offline=offline),
        settings.spine_surgical_backup,
        settings.public_base_url,
        clock or (lambda: datetime.now(UTC)),
    )
