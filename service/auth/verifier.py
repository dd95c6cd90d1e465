"""Verification of the CDS client's JWT (CDS Hooks 2.0 "Trusting CDS Clients" and best practices).

In order, every step refusing with a short, stable reason code (``AuthFailure.reason``, logged
and counted, never returned to the caller):

1. ``Authorization: Bearer <JWT>``, a compact JWS of at most ``MAX_TOKEN_BYTES``;
2. header: a JSON object without duplicate members; ``alg`` among the accepted asymmetric
   algorithms (``none`` and HMAC never); ``typ`` = ``JWT``; ``kid`` present; no ``crit``;
3. ``iss`` on the issuers file; a ``jku`` header only when allowlisted for that issuer;
4. the key: ``kid`` in the issuer's JWK Set (refreshed on an unknown kid, rate-limited), of the
   type and curve the ``alg`` needs; the signature is checked by PyJWT with that key only;
5. claims: ``aud`` = the public URL of the endpoint called; ``exp`` not past and ``iat`` not in
   the future (with leeway); ``nbf`` if present; lifetime ``exp - iat`` at most the maximum;
   ``jti`` present; ``tenant`` on the issuer's list when it has one;
6. ``jti`` not seen before (replay store in the database, shared by all instances).

Embedded keys (``jwk``, ``x5c``, ``x5u`` headers) are never used.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .issuers import Issuer
from .jwks import KeySource, PublicKey
from .replay import ReplayStore

MAX_TOKEN_BYTES = 8192
MAX_JTI_LENGTH = 256
_COMPACT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")  # an empty signature: alg none


class AuthFailure(Exception):
    """The token is refused; ``reason`` is a short fixed code, safe to log and to use as a metric label."""

    def __init__(
        self,
        reason: str,
        *,
        iss: str | None = None,
        kid: str | None = None,
        jti: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.kid = kid
        self.jti = jti
        self.detail = detail  # for the integrator, in the log only: which claim failed and what was expected


@dataclass(frozen=True)
class CdsClient:
    """Who called, from a verified token (safe to log: no token text)."""

    iss: str
    jti: str
    kid: str
    tenant: str | None
    sub: str | None = None  # the client id (CDS Hooks: the EHR's client_id for this service)


def _b64json(segment: str, reason: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise AuthFailure(reason) from None
    if not isinstance(value, dict):
        raise AuthFailure(reason)
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _number(value: Any) -> float | None:
    """A finite NumericDate, else None (also for an integer too large for a float: 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _storable_text(value: str) -> bool:
    """Text a database column can hold as written: valid Unicode (no lone surrogate), no control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


class JwtVerifier:
    def __init__(
        self,
        issuers: dict[str, Issuer],
        replay: ReplayStore,
        *,
        leeway: float,
        max_lifetime: float,
        now: Callable[[], float],
        source_factory: Callable[[str], KeySource] = KeySource.for_url,
    ) -> None:
        self._issuers = issuers
        self._replay = replay
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._now = now
        self._source_factory = source_factory
        self._sources: dict[str, KeySource] = {}
        self._lock = threading.Lock()
        for issuer in issuers.values():
            if issuer.jwks_file is not None:
                source = KeySource.for_file(issuer.jwks_file)
                source.load_file_now()
                self._sources[f"file:{issuer.jwks_file}"] = source

    def source(self, location: str) -> KeySource:
        """The cached key source for a URL (jwks_uri or allowlisted jku): one per URL per process."""
        with self._lock:
            source = self._sources.get(location)
            if source is None:
                source = self._source_factory(location)
                self._sources[location] = source
            return source

    def verify(self, authorization: str | None, audience: str) -> CdsClient:
        token = _bearer(authorization)
        if not _COMPACT.match(token):
            raise AuthFailure("malformed")
        head, body, _sig = token.split(".")
        header = _b64json(head, "bad_header")
        claims = _b64json(body, "bad_payload")  # unverified: only to find the issuer
        alg, kid = header.get("alg"), header.get("kid")
        iss_claim = claims.get("iss")
        iss = iss_claim if isinstance(iss_claim, str) else None
        jti_claim = claims.get("jti")
        jti = jti_claim if isinstance(jti_claim, str) else None
        kid_s = kid if isinstance(kid, str) else None
        try:
            return self._verify(token, header, claims, audience, alg, kid_s, iss, jti)
        except AuthFailure as failure:
            failure.iss, failure.kid, failure.jti = iss, kid_s, jti
            raise

    def _verify(
        self,
        token: str,
        header: dict[str, Any],
        claims: dict[str, Any],
        audience: str,
        alg: Any,
        kid: str | None,
        iss: str | None,
        jti: str | None,
    ) -> CdsClient:
        if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
            raise AuthFailure("alg_forbidden")
        if "crit" in header:
            raise AuthFailure("crit_header")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthFailure("typ")
        if not kid or len(kid) > 256:
            raise AuthFailure("kid_missing")
        issuer = self._issuers.get(iss) if iss is not None else None
        if issuer is None:
            raise AuthFailure("unknown_issuer")
        if alg not in issuer.algorithms:
            raise AuthFailure("alg_not_accepted")
        source, key = self._key(issuer, header.get("jku"), kid, alg)
        try:
            verified = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": [],
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthFailure("bad_signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthFailure("bad_signature") from None
        if verified != claims:
            raise AuthFailure("bad_payload")  # cannot happen with one parser; refuse rather than guess
        source.verified()  # a genuine signature: unknown kids of this set may refresh at once again
        return self._claims(issuer, claims, audience, kid, jti)

    def _key(self, issuer: Issuer, jku: Any, kid: str, alg: str) -> tuple[KeySource, PublicKey]:
        # Keys exchanged out of band (file, jwks_uri) always count for their issuer; a jku header must be
        # allowlisted for the issuer (else refused outright) and is consulted after them.
        if jku is not None and (
            not isinstance(jku, str) or (jku not in issuer.jku_allowlist and jku != issuer.jwks_uri)
        ):
            raise AuthFailure("jku_not_allowed")
        locations: list[str] = []
        if issuer.jwks_file is not None:
            locations.append(f"file:{issuer.jwks_file}")
        if issuer.jwks_uri is not None:
            locations.append(issuer.jwks_uri)
        if isinstance(jku, str) and jku not in locations:
            locations.append(jku)
        if not locations:
            raise AuthFailure("jku_missing")  # this issuer's keys are only reachable through jku
        for location in locations:
            source = self.source(location)
            key = source.key(kid)
            if key is not None:
                if not key.fits(alg):
                    raise AuthFailure("key_mismatch")
                return source, key
        raise AuthFailure("unknown_kid")

    def _claims(self, issuer: Issuer, claims: dict[str, Any], audience: str, kid: str, jti: str | None) -> CdsClient:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        wanted = audience.rstrip("/")
        if not any(isinstance(a, str) and a.rstrip("/") == wanted for a in auds):
            got = [a[:200] for a in auds if isinstance(a, str)][:3]
            raise AuthFailure(
                "aud",
                detail=f"aud mismatch: expected {wanted!r} (SPINECDS_PUBLIC_BASE_URL + path), token has {got!r}",
            )
        now = self._now()
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is None or iat is None:
            raise AuthFailure("exp_iat_missing")
        if now > exp + self._leeway:
            raise AuthFailure("expired")
        if iat > now + self._leeway:
            raise AuthFailure("iat_future")
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None or nbf > now + self._leeway:
                raise AuthFailure("nbf")
        if exp - iat > self._max_lifetime:
            raise AuthFailure("lifetime")
        if not jti or len(jti) > MAX_JTI_LENGTH:
            raise AuthFailure("jti_missing")
        if not _storable_text(jti):
            raise AuthFailure("jti_invalid")  # a lone surrogate or NUL would fail in the replay store (a 500)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthFailure("tenant")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise AuthFailure("tenant")
        if not self._replay.first_use(issuer.iss, jti, math.ceil(exp + self._leeway), now):
            raise AuthFailure("replay")
        sub = claims.get("sub")
        return CdsClient(issuer.iss, jti, kid, tenant, sub if isinstance(sub, str) else None)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthFailure("missing_token")
    if len(authorization) > MAX_TOKEN_BYTES + 16:
        raise AuthFailure("oversized")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthFailure("not_bearer")
    return parts[1]
