"""The Flask side: every CDS Hooks endpoint (discovery, service calls, feedback) needs a valid JWT
when ``SPINECDS_AUTH=required``.

Discovery is protected too: CDS Hooks 2.0 has the client send the JWT on every request to a
service that requires authentication (the sandbox does so), and a hospital service has no reason
to describe itself to strangers. CORS preflights (OPTIONS) carry no credentials and pass.
Health probes, ``/rules``, ``/openapi.json`` and the console are outside ``/cds-services``.

A refused token gets 401 with one fixed OperationOutcome and ``WWW-Authenticate: Bearer``,
whatever the reason; the reason goes to the log (with ``iss``, ``kid`` and ``jti``, never the
token) and to the metric ``spinecds_auth_failures_total{reason}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request

from service.config import Settings
from service.errors import error_response

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .verifier import JwtVerifier

log = logging.getLogger("spinecds.auth")
audit = logging.getLogger("spinecds.audit")
PROTECTED_PREFIX = "/cds-services"
# the console's try-it API parses what it is sent like a service call does: the same token is required
PROTECTED_PATHS = frozenset({"/console/api/requests"})
UNAUTHORIZED_MESSAGE = "authentication required"
RETRY_AFTER_SECONDS = "5"


def _safe(value: str | None) -> str:
    """A caller-chosen string fit for one log line: printable, short, quoted."""
    if value is None:
        return "-"
    return repr("".join(c if c.isprintable() else "?" for c in value[:120]))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:600])


def unauthorized() -> Response:
    response = error_response(401, UNAUTHORIZED_MESSAGE)
    response.headers["WWW-Authenticate"] = 'Bearer realm="spinecds"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit_calls(app: Flask) -> None:
    """One ``spinecds.audit`` line per CDS Hooks request: who (issuer, client id, tenant) called which service,
    and the status. No patient data: the path holds only the service id; no body, no token."""

    @app.after_request
    def audit_line(response: Response) -> Response:
        path = request.path
        if request.method != "OPTIONS" and (path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")):
            client = g.get("cds_client")
            service = (request.view_args or {}).get("service_id")
            audit.info(
                "audit: %s %s status=%d iss=%s client=%s tenant=%s service=%s",
                request.method,
                "feedback" if path.endswith("/feedback") else "discovery" if path == PROTECTED_PREFIX else "call",
                response.status_code,
                _safe(client.iss) if client else "unauthenticated",
                _safe(client.sub) if client else "-",
                _safe(client.tenant) if client else "-",
                _safe(service) if isinstance(service, str) else "-",
            )
        return response


def _count(reason: str) -> None:
    from service.ops import metrics  # imported when first needed: the gate module loads before metrics

    metrics.auth_failure(reason)


def install_auth(
    app: Flask,
    settings: Settings,
    db: Engine,
    clock: Callable[[], datetime],
    on_failure: Callable[[str], None] = _count,
) -> JwtVerifier | None:
    """Require a JWT on /cds-services when auth is required; a loud warning when it is not."""
    _audit_calls(app)
    if settings.auth != "required":
        log.warning(
            "CDS CLIENT AUTHENTICATION IS DISABLED (SPINECDS_AUTH=%s): any caller reaching this port can call "
            "the services. Use only for development or behind a trusted gateway; set SPINECDS_AUTH=required "
            "and SPINECDS_ISSUERS_FILE in production.",
            settings.auth,
        )
        return None
    # imported only when required: PyJWT and cryptography cost ~0.15 s of every start
    from .replay import ReplayStore, ReplayStoreUnavailable
    from .verifier import AuthFailure, JwtVerifier

    issuers = settings.trusted_issuers  # parsed once, when the settings were validated
    verifier = JwtVerifier(
        issuers,
        ReplayStore(db),
        leeway=float(settings.jwt_leeway_seconds),
        max_lifetime=float(settings.jwt_max_lifetime_seconds),
        now=lambda: clock().timestamp(),
    )
    base = settings.public_base_url.rstrip("/")
    log.info("CDS client authentication required: %d trusted issuer(s): %s", len(issuers), ", ".join(sorted(issuers)))

    def check() -> Response | None:
        path = request.path
        protected = path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/") or path in PROTECTED_PATHS
        if request.method == "OPTIONS" or not protected:
            return None
        try:
            g.cds_client = verifier.verify(request.headers.get("Authorization"), base + path)
        except AuthFailure as failure:
            log.warning(
                "JWT refused: %s (iss=%s kid=%s jti=%s endpoint=%s)%s",
                failure.reason,
                _safe(failure.iss),
                _safe(failure.kid),
                _safe(failure.jti),
                _safe(path),
                f": {_printable(failure.detail)}" if failure.detail else "",
            )
            on_failure(failure.reason)
            return unauthorized()
        except ReplayStoreUnavailable as exc:
            if request.method == "GET" and path == PROTECTED_PREFIX:
                # discovery holds no patient data: a token verified in every other respect passes
                # while the replay store is out, so EHRs keep seeing the services (calls still 503)
                log.warning("JWT replay not checked for discovery: replay store unavailable (%s)", exc)
                return None
            log.error("JWT not checked: replay store unavailable (%s); answering 503", exc)
            on_failure("replay_store_unavailable")
            response = error_response(503, "authentication cannot be completed now; retry later")
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        client = g.cds_client
        log.debug("JWT accepted: iss=%s tenant=%s jti=%s", _safe(client.iss), _safe(client.tenant), _safe(client.jti))
        return None

    app.before_request(check)
    app.extensions["spinecds.auth"] = verifier
    return verifier
