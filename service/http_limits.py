"""Outgoing HTTP (FHIR server fetches, JWK Sets): the session, and reading a body up to a byte limit.

The response must have been requested with ``stream=True``. A body whose ``Content-Length`` already
declares more than the limit is refused before any of it is read; otherwise the body is read chunk
by chunk and refused as soon as it grows past the limit, so a large or endless body never sits in
memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import requests
import urllib3

CHUNK_BYTES = 65536


def outgoing_session() -> requests.Session:
    """A session that takes nothing from the environment (no proxy or .netrc ever sees a token) but
    the hospital's own CA bundle (``REQUESTS_CA_BUNDLE``)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
    return session


class ResponseTooLarge(Exception):
    """The response body is (or declares to be) larger than the limit."""


def read_limited(
    resp: requests.Response,
    max_bytes: int,
    *,
    between_reads: Callable[[], object] | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> bytes:
    """The body of ``resp``, at most ``max_bytes`` long, else ``ResponseTooLarge``.

    ``between_reads`` (e.g. a deadline check, which raises to stop) is called before each chunk is
    taken in; the body is then read one socket read at a time, so the check holds even against a
    server that trickles a byte at a time. ``on_chunk(size)`` is told each chunk's size as it is
    read (a budget shared by several responses; it raises to stop).
    """
    declared = resp.headers.get("Content-Length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:  # not "²"
        raise ResponseTooLarge(f"Content-Length {declared} > {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    reads = resp.iter_content(chunk_size=CHUNK_BYTES) if between_reads is None else _socket_reads(resp)
    for chunk in reads:
        if between_reads is not None:
            between_reads()
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"body > {max_bytes} bytes")
        if on_chunk is not None:
            on_chunk(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _socket_reads(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: one socket read per chunk (``read1``)."""
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:  # urllib3 < 2.3
        yield from resp.iter_content(chunk_size=CHUNK_BYTES)
        return
    try:
        while chunk := read1(CHUNK_BYTES, decode_content=True):
            yield chunk
    except urllib3.exceptions.HTTPError as exc:
        # a body cut short or timing out mid-read: raw urllib3 reads do not wrap these the way
        # iter_content does, so callers catching requests' errors would miss them (a 500)
        raise requests.ConnectionError(exc) from exc
