"""Prometheus metrics (prometheus-client).

Under ``spinecds serve`` every gunicorn worker writes its samples to ``PROMETHEUS_MULTIPROC_DIR``
(set before this module is imported: ``service.ops.metrics_dir``) and ``/metrics`` aggregates them
(multiprocess mode); without that variable (in-process tests, ``flask run``)
the process-local default registry is exposed. Labels carry only bounded, non-patient values:
service id, hook, route template, status code, rule ID, card indicator, prefetch key, reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from service.ops.metrics_dir import MULTIPROC_ENV

T = TypeVar("T")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "spinecds_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "spinecds_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
SERVICE_LATENCY = Histogram(
    "spinecds_cds_service_duration_seconds",
    "CDS service call latency (request parsing to cards), by service and hook",
    ["service", "hook"],
    buckets=_LATENCY_BUCKETS,
)
SERVICE_CALLS = Counter(
    "spinecds_cds_service_calls_total", "CDS service calls by service, hook and result", ["service", "hook", "result"]
)
CARDS = Counter("spinecds_cards_total", "Cards issued, once per rule ID in the card's trace", ["rule", "indicator"])
PREFETCH_FETCHES = Counter(
    "spinecds_prefetch_fallback_fetches_total",
    "Prefetch keys fetched from the EHR's FHIR server because the request lacked them",
    ["key", "result"],
)
PREFETCH_LATENCY = Histogram(
    "spinecds_prefetch_fallback_fetch_duration_seconds",
    "Latency of prefetch fallback fetches (paging included)",
    ["key"],
    buckets=_LATENCY_BUCKETS,
)
AUTH_FAILURES = Counter("spinecds_auth_failures_total", "Refused CDS client authentications by reason", ["reason"])
FEEDBACK = Counter(
    "spinecds_feedback_items_total", "Feedback items stored, by service and outcome", ["service", "outcome"]
)
AUDIT_MISSED = Counter(
    "spinecds_issued_card_audit_missed_total",
    "Issued-card audit rows not recorded (database failing or slow); the cards were answered",
    ["reason"],
)


def issued_card_audit_missed(reason: str, count: int) -> None:
    """``reason``: ``unreachable``, ``skipped`` or ``failed`` (a closed set)."""
    AUDIT_MISSED.labels(reason).inc(count)


# the method label is one of these or "other": a caller inventing method names adds no series
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"})


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    """``route`` is a route template or ``unmatched``; ``method`` is folded into ``HTTP_METHODS`` + other."""
    HTTP_REQUESTS.labels(method if method in HTTP_METHODS else "other", route, str(status)).inc()
    HTTP_LATENCY.labels(route).observe(seconds)


def observe_service_call(service: str, hook: str, result: str, seconds: float | None = None) -> None:
    """``result`` is ``ok`` or a short failure class (``412``, ``400`` …); latency only for answered calls."""
    SERVICE_CALLS.labels(service, hook, result).inc()
    if seconds is not None:
        SERVICE_LATENCY.labels(service, hook).observe(seconds)


def cards_issued(cards: Iterable[dict[str, Any]]) -> None:
    for card in cards:
        trace = card.get("extension", {}).get("org.spinecds.trace", {})
        indicator = str(card.get("indicator", "unknown"))
        for rule in trace.get("rules", []) or ["none"]:
            CARDS.labels(str(rule), indicator).inc()


def timed_fetch(key: str, fetch: Callable[[], T]) -> T:
    """Run one prefetch fallback fetch, counting it (``ok``/``failed``) and timing it."""
    started = time.perf_counter()
    result = "failed"
    try:
        value = fetch()
        result = "ok"
        return value
    finally:
        PREFETCH_FETCHES.labels(key, result).inc()
        PREFETCH_LATENCY.labels(key).observe(time.perf_counter() - started)


def auth_failure(reason: str) -> None:
    """Count a refused authentication. ``reason`` must be a short fixed code (e.g. ``expired``), never token text."""
    AUTH_FAILURES.labels(reason).inc()


def feedback_stored(service: str, outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        FEEDBACK.labels(service, outcome).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (aggregated across workers in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """gunicorn ``child_exit`` hook: drop the dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
