"""Public keys of trusted CDS clients: JWK Sets from a URL (``jwks_uri``, allowlisted ``jku``) or a file.

A URL is fetched with requests (bounded size, no redirects, no proxy from the environment, one
overall deadline ``FETCH_DEADLINE_SECONDS`` checked between socket reads, so a server dripping a
byte a second is cut off) and cached for ``ttl`` seconds. An unknown ``kid`` triggers a refresh
right away (a rotation is picked up by its first token); further unknown kids refresh only after a
back-off that doubles from ``UNKNOWN_KID_BACKOFF_SECONDS`` up to ``UNKNOWN_KID_MAX_BACKOFF_SECONDS``,
and a successful verification with the set resets it (``verified``). Random kids thus cannot turn
the service into a JWKS hammer, nor use up the refresh a genuine rotation needs: six of them hold a
rotated key back for about a second, a sustained stream for at most the maximum back-off. A refresh that
fails keeps the keys already held: while the JWKS endpoint is down the service goes on
verifying with them. A stale key that is still known is used at once and refreshed in the
background. A file is read at start and re-read on an unknown kid (same rate limit).

Only public signature keys are kept: EC (P-256/384/521) and RSA (>= 2048 bits); symmetric
(``oct``) and other keys, keys whose ``use`` is not ``sig``, and private members are dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.http_limits import ResponseTooLarge, outgoing_session, read_limited

log = logging.getLogger("spinecds.auth")

DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_MIN_REFRESH_SECONDS = 60.0
FETCH_TIMEOUT = (3.0, 5.0)  # connect, each read
FETCH_DEADLINE_SECONDS = 5.0  # the whole fetch, however the server trickles
UNKNOWN_KID_BACKOFF_SECONDS = 1.0
UNKNOWN_KID_MAX_BACKOFF_SECONDS = 30.0
MAX_JWKS_BYTES = 256 * 1024
MIN_RSA_BITS = 2048
CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_PUBLIC_MEMBERS = {"kty", "kid", "use", "alg", "crv", "x", "y", "n", "e", "key_ops"}


class JwksError(Exception):
    """A JWK Set could not be obtained (reason safe to log)."""


@dataclass(frozen=True)
class PublicKey:
    kid: str
    kty: str
    alg: str | None  # the JWK's own "alg", if it names one
    curve_alg: str | None  # ES256/ES384/ES512 for EC keys
    key: Any  # a cryptography public key object

    def fits(self, alg: str) -> bool:
        """Can this key verify a signature made with ``alg``?"""
        if self.alg is not None and self.alg != alg:
            return False
        if alg.startswith("ES"):
            return self.kty == "EC" and self.curve_alg == alg
        return self.kty == "RSA" and alg[:2] in {"RS", "PS"}


def parse_jwks(data: Any) -> dict[str, PublicKey]:
    """The usable public signature keys of a JWK Set, by kid (a kid listed twice is dropped: ambiguous)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError('not a JWK Set ({"keys": [...]})')
    keys: dict[str, PublicKey] = {}
    duplicates: set[str] = set()
    for jwk in data["keys"]:
        key = _public_key(jwk)
        if key is None:
            continue
        if key.kid in keys:
            duplicates.add(key.kid)
        keys[key.kid] = key
    for kid in duplicates:
        log.warning("JWK Set lists kid %.80r more than once; that kid is not used", kid)
        del keys[kid]
    return keys


def _public_key(jwk: Any) -> PublicKey | None:
    if not isinstance(jwk, dict):
        return None
    kid, kty, use = jwk.get("kid"), jwk.get("kty"), jwk.get("use")
    if not isinstance(kid, str) or not kid or kty not in {"EC", "RSA"}:
        return None  # symmetric ("oct") and OKP keys are never used
    if use is not None and use != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        return None
    public = {k: v for k, v in jwk.items() if k in _PUBLIC_MEMBERS}
    public.pop("alg", None)  # PyJWK would reject an alg it cannot use; we check alg ourselves
    try:
        key = jwt.PyJWK(public).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    curve_alg: str | None = None
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve_alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        if curve_alg is None:
            return None
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return None
    else:
        return None
    return PublicKey(kid, kty, alg, curve_alg, key)


def fetch_jwks(url: str, session: requests.Session | None = None) -> dict[str, PublicKey]:
    session = session or outgoing_session()
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS

    def in_time() -> None:
        if time.monotonic() > deadline:
            raise JwksError(f"JWKS endpoint too slow (over {FETCH_DEADLINE_SECONDS:g} s)")

    timeout = (FETCH_TIMEOUT[0], min(FETCH_TIMEOUT[1], FETCH_DEADLINE_SECONDS))
    try:
        with session.get(
            url, headers={"Accept": "application/json"}, timeout=timeout, allow_redirects=False, stream=True
        ) as resp:
            if resp.status_code != 200:
                raise JwksError(f"JWKS endpoint answered HTTP {resp.status_code}")
            body = read_limited(resp, MAX_JWKS_BYTES, between_reads=in_time)
    except ResponseTooLarge as exc:
        raise JwksError("JWKS larger than allowed") from exc
    except requests.RequestException as exc:
        raise JwksError(f"JWKS endpoint unreachable ({type(exc).__name__})") from exc
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise JwksError("JWKS is not JSON") from exc
    return parse_jwks(data)


class KeySource:
    """One JWK Set with its cache. Thread-safe; one instance per URL or file per process."""

    def __init__(
        self,
        location: str,
        loader: Callable[[], dict[str, PublicKey]],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        min_refresh: float = DEFAULT_MIN_REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = location
        self._loader = loader
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._now = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, PublicKey] = {}
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None
        self._next_unknown_refresh = 0.0  # an unknown kid may refresh from then on
        self._unknown_backoff = UNKNOWN_KID_BACKOFF_SECONDS
        self._refreshing = threading.Event()
        self.fetches = 0  # attempts, for tests and diagnostics

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> KeySource:
        return cls(url, lambda: fetch_jwks(url), **kwargs)

    @classmethod
    def for_file(cls, path: Path, **kwargs: Any) -> KeySource:
        source = cls(str(path), lambda: _read_file(path), ttl=float("inf"), **kwargs)
        source.refresh()  # a broken file stops the start, see load_file_now
        return source

    def key(self, kid: str) -> PublicKey | None:
        with self._lock:
            known = self._keys.get(kid)
            now = self._now()
            fresh = self._loaded_at is not None and now - self._loaded_at < self._ttl
            if known is not None and fresh:
                return known
            if known is None and self._loaded_at is not None:
                # loaded, but not this kid: perhaps rotated (refresh now), perhaps random (back off)
                may_refresh = now >= self._next_unknown_refresh
                if may_refresh:
                    self._next_unknown_refresh = now + self._unknown_backoff
                    self._unknown_backoff = min(self._unknown_backoff * 2, UNKNOWN_KID_MAX_BACKOFF_SECONDS)
            else:  # never loaded, or stale: one attempt per interval
                last = self._last_attempt
                may_refresh = last is None or now - last >= self._min_refresh
            start = may_refresh and not self._refreshing.is_set()
            if start:
                self._last_attempt = now
                self._refreshing.set()
        if known is not None:  # stale but known: use it now, refresh behind
            if start:
                threading.Thread(target=self._refresh_then_clear, daemon=True, name="jwks-refresh").start()
            return known
        if start:
            self._refresh_then_clear()
        elif self._refreshing.is_set():
            self._wait_for_refresh()
        with self._lock:
            return self._keys.get(kid)

    def verified(self) -> None:
        """A token was verified with a key of this set: the next unknown kid refreshes at once again."""
        with self._lock:
            self._next_unknown_refresh = 0.0
            self._unknown_backoff = UNKNOWN_KID_BACKOFF_SECONDS

    def _wait_for_refresh(self) -> None:
        deadline = time.monotonic() + FETCH_TIMEOUT[0] + FETCH_DEADLINE_SECONDS + 1
        while self._refreshing.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _refresh_then_clear(self) -> None:
        try:
            self.refresh()
        finally:
            self._refreshing.clear()

    def refresh(self) -> bool:
        """Load the set now; on failure keep the keys held. True when loaded."""
        self.fetches += 1
        try:
            keys = self._loader()
        except (JwksError, OSError) as exc:
            held = len(self._keys)
            log.warning("JWKS %s not refreshed (%s); keeping %d cached key(s)", self.location, exc, held)
            return False
        with self._lock:
            self._keys = keys
            self._loaded_at = self._now()
        return True

    def load_file_now(self) -> None:
        """For files: raise when the file gives no usable key (called at start)."""
        if not self._keys:
            raise JwksError(f"{self.location}: no usable public signature key")


def _read_file(path: Path) -> dict[str, PublicKey]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise JwksError(f"{path} is not JSON") from exc
    return parse_jwks(data)
