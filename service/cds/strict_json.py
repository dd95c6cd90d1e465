"""Strict JSON for request bodies: a clear 400, never a 500 and never a silently different reading.

Refused: invalid UTF-8, NaN/Infinity, duplicate object keys (which value would count?), nesting
deeper than ``MAX_JSON_DEPTH``. Accepted bodies parse to exactly what the standard library's
``json.loads`` returns.

Two paths, one answer:

* **fast** (almost every body): ``orjson.loads`` (C; refuses NaN/Infinity and invalid
  UTF-8 itself), then the duplicate-key check as two counts of colons (in the text, and in
  ``orjson.dumps`` of the parsed tree) instead of a Python call per object. The long-number test, the
  text's colon count and the nesting depth come from one translation of the text (one C-level pass)
  and its reduction to quotes, colons, brackets and backslashes (another; the count and the depth work
  on that small remainder), no walk over the tree.
* **exact** (``_stdlib_strict``): the standard library with a duplicate-key hook. It runs whenever
  the fast path refuses or cannot be sure: any ``orjson`` error, counts that do not rule out a
  duplicate, a colon escaped in the text (``\\u003a``), a run of 19 or more digits
  (``orjson`` reads integers beyond 64 bits as floats; the standard library keeps them exact). It
  names the problem in the 400, or accepts what only it reads exactly.

The parse runs with the cyclic garbage collector paused (``service.gc_pause``; a service call keeps it
paused until its body is freed): a JSON tree has no cycles, and on a large body (20,000 resources,
~400,000 objects) the collections its allocations trigger traverse the growing tree again and again
(orjson.loads 4x slower, super-linear in the body size; docs/performance.md).

``tests/test_strict_json.py`` checks both against an independent oracle on generated and hostile
bodies; ``docs/performance.md`` has the figures.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

import orjson
from flask import current_app, request

from service.errors import ApiError
from service.gc_pause import gc_paused

# Deeper JSON than this is refused (400): no FHIR data we read comes close, and deep trees cost
# recursion in every later consumer (validation, serialisation).
MAX_JSON_DEPTH = 100

# The one translation of the text (``_structure``): digits become "0", quotes, colons and backslashes stay,
# objects and arrays both become "[" "]" (nesting is all the depth counts; the text is valid JSON when it is
# read), every other byte (whitespace too) becomes ".". A run of 19 zeros may be a number orjson does not read
# exactly. ``_reduced`` then keeps only quotes, colons, brackets and backslashes: a few per cent of the text,
# where the colons are counted and the depth is read.
_KEPT = {ord("{"): ord("["), ord("}"): ord("]"), **{c: c for c in b'":[]\\'}, **{c: ord("0") for c in b"0123456789"}}
_CHECK_TABLE = bytes(_KEPT.get(c, ord(".")) for c in range(256))
_NOT_KEPT = b".0"  # deleted from the translation: what is left holds every colon, quote, bracket and backslash
_NOT_NESTING = b":\\"  # deleted from that to leave quotes and brackets
_NESTING_STEP = {ord("["): 1, ord("]"): -1}
_LEAF_PASSES = 16  # beyond this many levels, the rest is counted in one linear pass
_LONG_NUMBER = b"0" * 19


def _structure(data: bytes) -> bytes:
    return data.translate(_CHECK_TABLE)


def _reduced(structure: bytes) -> bytes:
    """The translation's quotes, colons, brackets and backslashes, escaped backslashes and escaped quotes
    removed first (every quote left then delimits a string; a valid JSON string never holds a raw byte
    between a backslash and what it escapes). As many colons as the text."""
    if b"\\" in structure:
        structure = structure.replace(b"\\\\", b"").replace(b'\\"', b"")
    return structure.translate(None, _NOT_KEPT)


def nesting_depth(data: bytes) -> int:
    """How deeply the containers of a *valid* JSON text nest (a top-level object is 1; a scalar 0)."""
    return _depth(_reduced(_structure(data)))


def _depth(reduced: bytes) -> int:
    """The nesting depth from the text's reduced translation (``_reduced``), by C-level byte passes.

    Only quotes and brackets are kept; dropping adjacent quote pairs (empty strings, or empty gaps between
    strings) keeps the pairing of the rest, and the pieces between the remaining pairs are strings, whose
    brackets do not count. Then each ``replace(b"[]", b"")`` removes exactly the innermost containers (it
    scans the string as it was), so the passes until nothing is left are the depth; after ``_LEAF_PASSES``
    the depth of what is left is added from its running balance (linear, whatever a hostile body nests).
    """
    brackets = reduced.translate(None, _NOT_NESTING).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[0::2])
    depth = 0
    while brackets and depth < _LEAF_PASSES:
        brackets = brackets.replace(b"[]", b"")
        depth += 1
    return depth + max(accumulate(map(_NESTING_STEP.__getitem__, brackets)), default=0)


def _no_duplicate_keys(data: bytes, reduced: bytes, body: Any) -> bool:
    """True only if no object of ``body`` lost a key the text wrote twice (False: can't tell).

    Colons, counted in C: in the text, each key is followed by exactly one colon outside strings, so
    its colon count (counted on ``reduced``, which keeps every colon) is the keys written plus the colons
    written inside strings. In
    ``orjson.dumps`` of the tree (compact) it is the keys kept plus the colons inside the kept strings,
    which orjson writes raw. Every kept string is a string of the text; unless the text escapes a
    colon (``\\u003a``, then only the exact path decides), it holds no more colons in the tree than it
    was written with. So the tree's count can equal the text's only if no key was lost (a lost key also
    takes its value's strings with it). A multi-byte UTF-8 sequence never holds the byte ``:``.
    """
    if b"\\" in reduced and (b"\\u003a" in data or b"\\u003A" in data):  # reduced: escaped backslashes gone
        return False
    try:
        dumped = orjson.dumps(body)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255): refused later anyway
        return False
    return reduced.count(b":") == dumped.count(b":")


def json_request_body(max_bytes: int | None = None) -> Any:
    """The JSON body of the current request under the limits of every POST endpoint: 415 unless JSON,
    413 above ``MAX_CONTENT_LENGTH`` (or the endpoint's own smaller ``max_bytes``, refused from the
    declared length before anything is read), 400 unless strict JSON (``parse_json_body``)."""
    mimetype = request.mimetype or ""
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise ApiError(415, "send the request as application/json")
    if max_bytes is not None and request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes for this endpoint")
    data = _body_bytes()
    if max_bytes is not None and len(data) > max_bytes:
        raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes for this endpoint")
    return parse_json_body(data)


def _body_bytes() -> bytes:
    """The body, 413 above MAX_CONTENT_LENGTH also without Content-Length (chunked).

    Werkzeug stops reading a length-less stream at the limit without an error, which would turn an
    oversized chunked body into a truncated one (a misleading 400); one more byte tells them apart.
    """
    data = request.get_data(cache=False)  # read once; not kept with the request (service/memory_return.py)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit is not None and len(data) >= limit:
        raw = request.environ.get("wsgi.input")
        if raw is not None and raw.read(1):
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
    return data


def parse_json_body(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, at most MAX_JSON_DEPTH levels; else 400."""
    with gc_paused():
        structure = _structure(data)
        reduced = _reduced(structure)
        body = _fast(data, structure, reduced)
        if body is _UNSURE:
            body = _stdlib_strict(data)
    if _depth(reduced) > MAX_JSON_DEPTH:
        raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


_UNSURE = object()


def _fast(data: bytes, structure: bytes, reduced: bytes) -> Any:
    """The body, or ``_UNSURE`` when only the exact path can tell."""
    if _LONG_NUMBER in structure:
        return _UNSURE
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNSURE
    return body if _no_duplicate_keys(data, reduced, body) else _UNSURE


def _stdlib_strict(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _Rejected as exc:
        raise ApiError(400, f"request body is not acceptable JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {str(exc)[:120]}") from None


class _Rejected(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a JSON number (RFC 8259)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # the rare case: find the key to name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Rejected(f"duplicate object key {key[:40]!r}")
            seen.add(key)
    return out
