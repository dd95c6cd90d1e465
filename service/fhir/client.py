"""Fetching what the prefetch did not carry from the EHR's FHIR server.

Bounded in every direction: connect/read timeouts, a deadline for the whole call, a byte limit per
response and one for everything the call reads (all pages of all keys: ``max_total_bytes``, so twenty
pages just under the per-response limit cannot add up to gigabytes in a worker), a nesting limit, a
page limit, every URL we ask for (queries, ``next`` links) only under ``fhirServer``'s base path on
its origin (no dot segments, also not percent-encoded ones), the server's own redirects followed
only within that origin (at most ``MAX_REDIRECTS``), and every URL checked against the allowlist
(``service.fhir.allowlist``). The access token is sent only to ``fhirServer``'s origin and never
logged; proxies and ``.netrc`` of the environment are not used (``trust_env`` off; a CA bundle
may be named with ``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import requests

from service.cds.strict_json import MAX_JSON_DEPTH, nesting_depth
from service.fhir.allowlist import FhirServerAllowlist
from service.http_limits import ResponseTooLarge, outgoing_session, read_limited

log = logging.getLogger("spinecds.fhir")


class FetchError(Exception):
    """The FHIR server did not give usable data (reason is safe to log: no token, no patient data)."""


class PartialFetch(FetchError):
    """Following ``next`` failed after some pages arrived: ``bundle`` holds the pages received."""

    def __init__(self, reason: str, bundle: dict[str, Any]) -> None:
        super().__init__(reason)
        self.bundle = bundle


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float
    read_timeout: float
    max_pages: int
    max_bytes: int
    total_timeout: float = 30.0  # seconds for everything one hook call fetches
    max_total_bytes: int = 40_000_000  # bytes of every response one hook call reads, all pages and keys
    allowlist: FhirServerAllowlist = field(default_factory=FhirServerAllowlist)  # empty: nothing is fetched


MAX_REDIRECTS = 3


class FhirClient:
    def __init__(
        self, base_url: str, token: str | None, limits: FetchLimits, session: requests.Session | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = _origin(self.base_url)
        self._base_path = urlparse(self.base_url).path  # ends with "/"
        self._token = token
        self._limits = limits
        self._deadline = time.monotonic() + limits.total_timeout
        self._bytes_left = limits.max_total_bytes
        self._bytes_lock = threading.Lock()
        self._session = session or outgoing_session()

    def _check(self, url: str, *, under_base: bool = True) -> None:
        if _origin(url) != self._origin or (under_base and not self._under_base(url)):
            raise FetchError("refused a URL outside fhirServer")
        refusal = self._limits.allowlist.refusal(url)
        if refusal is not None:
            raise FetchError(f"refused: {refusal}")

    def _under_base(self, url: str) -> bool:
        """The path is fhirServer's base path or below it, with no dot segment (also percent-encoded)."""
        path = urlparse(url).path
        if any(unquote(segment) in {".", ".."} for segment in path.split("/")):
            return False
        base = self._base_path
        return path == base.rstrip("/") or path.startswith(base)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("FHIR fetches took longer than the configured total time")
        return remaining

    def _spend(self, size: int) -> None:
        """Count ``size`` bytes against the call's total, shared by the keys fetched in parallel."""
        with self._bytes_lock:
            self._bytes_left -= size
            over = self._bytes_left < 0 or (size == 0 and self._bytes_left == 0)
        if over:
            raise FetchError("FHIR responses to this call larger in total than the configured limit")

    def get_json(self, url: str) -> dict[str, Any]:
        headers = {"Accept": "application/fhir+json, application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            for hop in range(MAX_REDIRECTS + 1):
                self._check(url, under_base=hop == 0)  # before the token goes anywhere
                self._spend(0)  # the total is spent already: no further request
                remaining = self._remaining()
                with self._session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(min(self._limits.connect_timeout, remaining), min(self._limits.read_timeout, remaining)),
                ) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers.get("Location", ""))
                        continue
                    if resp.status_code != 200:
                        raise FetchError(f"FHIR server answered HTTP {resp.status_code}")
                    # a server trickling bytes is cut off at the deadline
                    body = read_limited(
                        resp, self._limits.max_bytes, between_reads=self._remaining, on_chunk=self._spend
                    )
                    break
            else:
                raise FetchError(f"more than {MAX_REDIRECTS} redirects")
        except ResponseTooLarge as exc:
            raise FetchError("FHIR response larger than the configured limit") from exc
        except requests.RequestException as exc:
            raise FetchError(f"FHIR server unreachable or too slow ({type(exc).__name__})") from exc
        return _resource(body)

    def read(self, query: str) -> dict[str, Any]:
        """A read (``Patient/1``) or a search; searches are followed through every ``next`` page."""
        first = self.get_json(urljoin(self.base_url, query))
        if first.get("resourceType") == "OperationOutcome":
            raise FetchError("FHIR server answered with an OperationOutcome")
        if "?" in query and first.get("resourceType") != "Bundle":
            raise FetchError("FHIR search did not return a Bundle")
        if first.get("resourceType") == "Bundle":
            return self.complete_bundle(first)
        return first

    def complete_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Follow ``next`` links, merging entries into one searchset Bundle.

        When a later page cannot be had, ``PartialFetch`` carries the pages received so far: what
        they hold is known (a cord compression on page one), only the list is incomplete.
        """
        entries = list(bundle.get("entry") or [])
        page, pages = bundle, 1

        def merged() -> dict[str, Any]:
            out = {k: v for k, v in bundle.items() if k not in {"entry", "link"}}
            out["entry"] = list(entries)
            return out

        try:
            while (nxt := _next_link(page)) is not None:
                if pages >= self._limits.max_pages:
                    raise FetchError(f"more than {self._limits.max_pages} pages")
                page = self.get_json(urljoin(self.base_url, nxt))
                if page.get("resourceType") != "Bundle":
                    raise FetchError("a next page was not a Bundle")
                page_entries = page.get("entry") or []
                if not isinstance(page_entries, list):
                    raise FetchError("a next page's entry is not an array")
                entries.extend(page_entries)
                pages += 1
        except FetchError as exc:
            raise PartialFetch(str(exc), merged()) from exc
        return merged()


def _resource(body: bytes) -> dict[str, Any]:
    # nesting is measured before parsing (C-level passes over the bytes): JSON nested 100,000 deep
    # would otherwise end in a RecursionError here or in any later consumer
    if nesting_depth(body) > MAX_JSON_DEPTH:
        raise FetchError(f"FHIR server sent JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError("FHIR server sent something that is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FetchError("FHIR server sent JSON that is not a FHIR resource")
    return data


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def has_next(bundle: Any) -> bool:
    return isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle" and _next_link(bundle) is not None


def _origin(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return (parsed.scheme.lower(), parsed.netloc.lower())
