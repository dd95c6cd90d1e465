"""Trusted CDS clients: the issuers file (``SPINECDS_ISSUERS_FILE``, YAML or JSON).

```yaml
issuers:
  - iss: https://ehr.example.org
    jwks_uri: https://ehr.example.org/.well-known/jwks.json
  - iss: https://closed.example.org
    jwks_file: /etc/spinecds/closed-jwks.json    # closed networks; relative paths: from this file
    tenants: [t1]                                # optional: the token's tenant must be one of these
    jku_allowlist: [https://closed.example.org/jwks]  # optional: jku headers honoured for this issuer
    algorithms: [ES384]                          # optional: narrower than SPINECDS_JWT_ALGORITHMS
```

Every mistake stops the start with a message naming ``SPINECDS_ISSUERS_FILE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from service.config_errors import PREFIX, ConfigError
from service.fhir.allowlist import is_loopback

VAR = f"{PREFIX}ISSUERS_FILE"
ALGORITHMS_VAR = f"{PREFIX}JWT_ALGORITHMS"
# Asymmetric JWS algorithms (RFC 7518). "none" and HMAC (HS*) are never accepted, whatever is configured.
ASYMMETRIC = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_FIELDS = {"iss", "jwks_uri", "jwks_file", "tenants", "jku_allowlist", "algorithms"}


@dataclass(frozen=True)
class Issuer:
    iss: str
    jwks_uri: str | None
    jwks_file: Path | None
    tenants: frozenset[str] | None
    jku_allowlist: frozenset[str]
    algorithms: frozenset[str]


def parse_algorithms(raw: str | list[Any], where: str = ALGORITHMS_VAR) -> frozenset[str]:
    names = [a.strip() for a in raw.split(",")] if isinstance(raw, str) else raw
    algs: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        if name.lower() == "none" or name.upper().startswith("HS"):
            raise ConfigError(f"{where}: {name!r} is never accepted (CDS Hooks forbids none and symmetric algorithms)")
        if name not in ASYMMETRIC:
            raise ConfigError(f"{where}: unknown algorithm {name!r}; choose from {', '.join(sorted(ASYMMETRIC))}")
        algs.add(name)
    if not algs:
        raise ConfigError(f"{where}: at least one algorithm is needed")
    return frozenset(algs)


def check_key_url(url: Any, where: str) -> str:
    """A JWKS URL: absolute https, or http on a loopback host (development and tests)."""
    if not isinstance(url, str):
        raise ConfigError(f"{where}: must be a URL string")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: {url!r} is not a URL") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username is not None:
        raise ConfigError(f"{where}: {url!r} must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{where}: {url!r} must use https (http only for loopback hosts)")
    return url


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: must be a non-empty list of strings")
    return list(value)


def _issuer(entry: Any, index: int, base: Path, algorithms: frozenset[str]) -> Issuer:
    where = f"{VAR}: issuers[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ConfigError(f"{where}.iss: required string")
    jwks_uri = entry.get("jwks_uri")
    if jwks_uri is not None:
        jwks_uri = check_key_url(jwks_uri, f"{where}.jwks_uri")
    jwks_file: Path | None = None
    if entry.get("jwks_file") is not None:
        if not isinstance(entry["jwks_file"], str):
            raise ConfigError(f"{where}.jwks_file: must be a path")
        from .jwks import JwksError, parse_jwks  # here: PyJWT and cryptography cost ~0.2 s, needed only for a file

        jwks_file = (base / entry["jwks_file"]).resolve()
        if not jwks_file.is_file():
            raise ConfigError(f"{where}.jwks_file: no such file {str(jwks_file)!r}")
        try:
            usable = parse_jwks(json.loads(jwks_file.read_text(encoding="utf-8")))
        except (ValueError, OSError, JwksError) as exc:
            raise ConfigError(f"{where}.jwks_file: {str(jwks_file)!r} is not a JWK Set") from exc
        if not usable:
            raise ConfigError(f"{where}.jwks_file: {str(jwks_file)!r} has no usable public signature key")
    jku = frozenset(
        check_key_url(u, f"{where}.jku_allowlist")
        for u in (_strings(entry["jku_allowlist"], f"{where}.jku_allowlist") if "jku_allowlist" in entry else [])
    )
    if jwks_uri is None and jwks_file is None and not jku:
        raise ConfigError(f"{where}: needs jwks_uri, jwks_file or jku_allowlist")
    tenants = frozenset(_strings(entry["tenants"], f"{where}.tenants")) if "tenants" in entry else None
    algs = algorithms
    if "algorithms" in entry:
        algs = parse_algorithms(_strings(entry["algorithms"], f"{where}.algorithms"), f"{where}.algorithms")
        if not algs <= algorithms:
            raise ConfigError(f"{where}.algorithms: must be a subset of {ALGORITHMS_VAR}")
    return Issuer(iss, jwks_uri, jwks_file, tenants, jku, algs)


def load_issuers(path: str, algorithms: frozenset[str]) -> dict[str, Issuer]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{VAR}: cannot read {path!r} ({type(exc).__name__})") from exc
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{VAR}: {path!r} is not valid {'JSON' if file.suffix == '.json' else 'YAML'}") from exc
    entries = data.get("issuers") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{VAR}: expected {{"issuers": [ ... ]}} with at least one issuer')
    issuers: dict[str, Issuer] = {}
    for index, entry in enumerate(entries):
        issuer = _issuer(entry, index, file.resolve().parent, algorithms)
        if issuer.iss in issuers:
            raise ConfigError(f"{VAR}: issuer {issuer.iss!r} is listed twice")
        issuers[issuer.iss] = issuer
    return issuers
