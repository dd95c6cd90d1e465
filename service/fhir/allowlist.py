"""Which ``fhirServer`` URLs the service may call: ``SPINECDS_FHIR_SERVER_ALLOWLIST``.

``fhirServer`` is chosen by the caller, so without a check the service could be pointed at any
host of the hospital network (SSRF). A URL is allowed only when

* its host (and port, when the entry names one) is on the allowlist;
* its scheme is https, or http for a loopback host (127.0.0.0/8, ::1, localhost) that is on the
  list (development and tests);
* it has no user-info, no control or space characters, no backslash, and urllib and urllib3
  (which requests uses to connect) read the same scheme, host and port from it, so that a URL
  crafted to be read differently by the check and by the connection is refused.

An empty allowlist allows nothing: the service then uses prefetch only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.util import parse_url

from service.config_errors import PREFIX, ConfigError

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def is_loopback(host: str) -> bool:
    host = _normal_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class FhirServerAllowlist:
    """Allowed hosts: ``(host, None)`` allows any port, ``(host, port)`` only that port."""

    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> FhirServerAllowlist:
        entries: set[tuple[str, int | None]] = set()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            if any(c in item for c in "/@?#\\ ") or "://" in item:
                raise ConfigError(
                    f"{PREFIX}FHIR_SERVER_ALLOWLIST: {item!r} is not a host; list hosts as host or host:port"
                )
            try:
                parsed = urlsplit(f"//{item}")
                port = parsed.port
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}FHIR_SERVER_ALLOWLIST: {item!r} has an invalid port") from exc
            if not parsed.hostname:
                raise ConfigError(f"{PREFIX}FHIR_SERVER_ALLOWLIST: {item!r} has no host")
            entries.add((_normal_host(parsed.hostname), port))
        return cls(frozenset(entries))

    @property
    def empty(self) -> bool:
        return not self.entries

    def refusal(self, url: str) -> str | None:
        """None when ``url`` may be called; else a short reason, safe to log and to return (no URL in it)."""
        if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
            return "fhirServer URL too long"
        if any(ord(c) < 0x21 or ord(c) > 0x7E or c == "\\" for c in url):
            return "fhirServer URL has characters outside printable ASCII"
        try:
            parts = urlsplit(url)
            port = parts.port
            other = parse_url(url)
        except ValueError:
            return "fhirServer URL cannot be parsed"
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return "fhirServer URL is not http(s)"
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            return "fhirServer URL carries user-info"
        host = _normal_host(parts.hostname or "")
        if not host:
            return "fhirServer URL has no host"
        effective_port = port if port is not None else _DEFAULT_PORTS[scheme]
        other_port = other.port if other.port is not None else _DEFAULT_PORTS.get((other.scheme or "").lower())
        if (
            (other.scheme or "").lower() != scheme
            or _normal_host(other.host or "") != host
            or other_port != (effective_port)
        ):
            return "fhirServer URL is ambiguous"
        if (host, None) not in self.entries and (host, effective_port) not in self.entries:
            return "fhirServer host is not on the allowlist"
        if scheme != "https" and not is_loopback(host):
            return "fhirServer must use https"
        return None

    def describe(self) -> str:
        return ", ".join(sorted(h if p is None else f"{h}:{p}" for h, p in self.entries)) or "(empty)"
