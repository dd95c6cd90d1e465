"""Configuration from environment variables prefixed ``SPINECDS_``.

Every setting has an embedded default so the service starts with no external services
(SQLite in ``./data``). Bad values stop the start with a message naming the variable.
``validate`` parses the files and lists a setting names (issuers, fhirServer allowlist, threshold
overrides) once and the settings keep what it parsed (``trusted_issuers``, ``fhir_servers``,
``threshold_overrides``): the app, the auth gate and the CLI read those, never the raw strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from service.auth.issuers import Issuer, load_issuers, parse_algorithms
from service.config_errors import PREFIX as PREFIX
from service.config_errors import ConfigError as ConfigError
from service.fhir.allowlist import FhirServerAllowlist

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_db_url() -> str:
    return f"sqlite:///{(Path.cwd() / 'data' / 'spinecds.db').as_posix()}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_db_url)
    database_timeout: float = 3.0  # seconds for any one wait on the database: connect, statement, pool
    public_base_url: str = "http://127.0.0.1:8080"
    fhir_connect_timeout: float = 3.0
    fhir_read_timeout: float = 10.0
    fhir_max_pages: int = 20
    fhir_max_response_bytes: int = 20_000_000
    fhir_max_total_bytes: int = 40_000_000  # all FHIR responses of one hook call, every page and key
    max_request_bytes: int = 25_000_000
    request_read_timeout: float = 30.0  # seconds to receive a whole request (head and body) once it has begun
    cors_origins: str = "*"
    thresholds_file: str = ""
    spine_surgical_backup: str = "unknown"
    log_level: str = "INFO"
    profiles_dir: str = str(REPO_ROOT / "fhir_profiles")
    rules_dir: str = str(REPO_ROOT / "rules")
    console: str = "enabled"  # the web console at /console (docs/console.md); "disabled" with auth required
    # CDS client authentication (docs/security.md): "required" = a Bearer JWT from a trusted issuer
    auth: str = "disabled"
    issuers_file: str = ""
    jwt_algorithms: str = "ES384,RS384"
    jwt_leeway_seconds: int = 60
    jwt_max_lifetime_seconds: int = 3600
    # hosts (host or host:port) whose fhirServer the service may call; empty = prefetch only
    fhir_server_allowlist: str = ""
    # OAuth client id the EHR registered for the SMART app at /smart/launch (docs/smart-app.md)
    smart_client_id: str = "spinecds"

    def validate(self) -> Settings:
        db = urlparse(self.database_url)
        if db.scheme.split("+")[0] not in {"sqlite", "postgresql"}:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL: unsupported scheme {db.scheme!r}; use sqlite:///path or postgresql://..."
            )
        base = urlparse(self.public_base_url)
        if base.scheme not in {"http", "https"} or not base.netloc:
            raise ConfigError(f"{PREFIX}PUBLIC_BASE_URL: must be an absolute http(s) URL, got {self.public_base_url!r}")
        if not 1 <= self.request_read_timeout <= 300:
            raise ConfigError(f"{PREFIX}REQUEST_READ_TIMEOUT: must be between 1 and 300 seconds")
        if not 0 < self.database_timeout <= 60:
            raise ConfigError(f"{PREFIX}DATABASE_TIMEOUT: must be between 0 and 60 seconds")
        for name in ("fhir_connect_timeout", "fhir_read_timeout"):
            if not 0 < getattr(self, name) <= 120:
                raise ConfigError(f"{PREFIX}{name.upper()}: must be between 0 and 120 seconds")
        for name in ("fhir_max_pages", "fhir_max_response_bytes", "fhir_max_total_bytes", "max_request_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()}: must be a positive integer")
        if self.spine_surgical_backup not in {"true", "false", "unknown"}:
            raise ConfigError(f"{PREFIX}SPINE_SURGICAL_BACKUP: must be true, false or unknown")
        if self.thresholds_file and not Path(self.thresholds_file).is_file():
            raise ConfigError(f"{PREFIX}THRESHOLDS_FILE: no such file {self.thresholds_file!r}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"{PREFIX}LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR")
        if not self.smart_client_id or any(ord(c) < 0x21 or ord(c) > 0x7E for c in self.smart_client_id):
            raise ConfigError(f"{PREFIX}SMART_CLIENT_ID: must be a non-empty printable ASCII client id")
        if self.console not in {"enabled", "disabled"}:
            raise ConfigError(f"{PREFIX}CONSOLE: must be enabled or disabled")
        self._validate_security()
        _ = self.threshold_overrides
        return self

    def _validate_security(self) -> None:
        if self.auth not in {"required", "disabled"}:
            raise ConfigError(f"{PREFIX}AUTH: must be required or disabled")
        _ = self.jwt_algorithm_set
        if not 0 <= self.jwt_leeway_seconds <= 300:
            raise ConfigError(f"{PREFIX}JWT_LEEWAY_SECONDS: must be between 0 and 300")
        if not 60 <= self.jwt_max_lifetime_seconds <= 86400:
            raise ConfigError(f"{PREFIX}JWT_MAX_LIFETIME_SECONDS: must be between 60 and 86400")
        if self.auth == "required" and not self.issuers_file:
            raise ConfigError(f"{PREFIX}ISSUERS_FILE: required when {PREFIX}AUTH=required")
        _ = self.trusted_issuers, self.fhir_servers

    # What validate parsed, kept (computed once per Settings; ``with_overrides`` makes new Settings).

    @cached_property
    def jwt_algorithm_set(self) -> frozenset[str]:
        """``SPINECDS_JWT_ALGORITHMS`` parsed: asymmetric JWS algorithms only."""
        return parse_algorithms(self.jwt_algorithms)

    @cached_property
    def trusted_issuers(self) -> dict[str, Issuer]:
        """``SPINECDS_ISSUERS_FILE`` parsed, by ``iss``; empty when no file is set."""
        return load_issuers(self.issuers_file, self.jwt_algorithm_set) if self.issuers_file else {}

    @cached_property
    def fhir_servers(self) -> FhirServerAllowlist:
        """``SPINECDS_FHIR_SERVER_ALLOWLIST`` parsed: the hosts whose fhirServer may be called."""
        return FhirServerAllowlist.parse(self.fhir_server_allowlist)

    @cached_property
    def threshold_overrides(self) -> dict[str, Any]:
        """``SPINECDS_THRESHOLDS_FILE`` parsed: threshold name -> value (checked against the rule base when
        it loads); empty when no file is set."""
        if not self.thresholds_file:
            return {}
        try:
            data = yaml.safe_load(Path(self.thresholds_file).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{PREFIX}THRESHOLDS_FILE: cannot read {self.thresholds_file!r} as YAML") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{PREFIX}THRESHOLDS_FILE: must contain a mapping of threshold name to number")
        return data

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = _secret_from_file(f.name, env) if f.name in SECRET_SETTINGS else None
            raw = env.get(PREFIX + f.name.upper()) if raw is None else raw
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        return cls(**values).validate()  # type: ignore[arg-type]

    def with_overrides(self, overrides: Mapping[str, object]) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides).validate()  # type: ignore[arg-type]


# Settings that may hold a secret (a password in the URL) can be read from a file instead:
# SPINECDS_DATABASE_URL_FILE=/run/secrets/database_url (Docker/podman secrets, Kubernetes Secret volumes).
SECRET_SETTINGS = ("database_url",)


def _secret_from_file(name: str, env: Mapping[str, str]) -> str | None:
    var = PREFIX + name.upper()
    path = env.get(var + "_FILE")
    if not path:
        return None
    if env.get(var):
        raise ConfigError(f"{var}_FILE and {var} are both set: use one")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{var}_FILE: cannot read {path!r} ({type(exc).__name__})") from exc


def _coerce(name: str, typ: object, raw: str) -> object:
    var = PREFIX + name.upper()
    try:
        if typ in (int, "int"):
            return int(raw)
        if typ in (float, "float"):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{var}: expected a number, got {raw!r}") from exc
    return raw.strip()
