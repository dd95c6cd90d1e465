"""Strict JSON for request bodies: a clear 400, never a 500 and never a silently different reading.

Refused: invalid UTF-8, NaN/Infinity, duplicate object keys (which value would count?), nesting
deeper than ``MAX_JSON_DEPTH``. Accepted bodies parse to exactly what the standard library's
``json.loads`` returns.

Two paths, one answer:

* **fast** (almost every body): one pass of ``jiter`` (Rust; pydantic's JSON parser), which itself
  refuses NaN/Infinity, invalid UTF-8 and duplicate keys (``catch_duplicate_keys``, keys compared
  after unescaping) and reads integers of any size exactly. Its nesting limit is its recursion
  limit (a value inside more than 200 containers: jiter 0.16 source, 0.19 measured; measured at import,
  ``_jiter_max_nesting``): the body is parsed inside ``_WRAP`` enclosing arrays, so that jiter
  refuses any value inside more than ``MAX_JSON_DEPTH - 1`` of the body's containers. What it accepts
  is then at most ``MAX_JSON_DEPTH`` deep (a jiter that shows no limit gets the text's depth check as
  well); what it refuses goes to the exact path. Each enclosing
  array must hold exactly one value (otherwise the text was not one JSON value, e.g. ``0],[0``, and the
  exact path refuses it).
* **exact** (``_stdlib_strict``): the standard library with a duplicate-key hook, and the nesting
  depth read from the text (``nesting_depth``). It runs whenever jiter refuses: it names the problem in
  the 400, or accepts what only it reads (a lone surrogate escape, ``"\\udc00"``; a body exactly
  ``MAX_JSON_DEPTH`` deep).

The parse runs with the cyclic garbage collector paused (``service.gc_pause``; a service call keeps it
paused until its body is freed): a JSON tree has no cycles, and on a large body (20,000 resources,
~400,000 objects) the collections its allocations trigger traverse the growing tree again and again
(4x slower, super-linear in the body size; docs/performance.md).

``tests/test_strict_json.py`` checks both against an independent oracle on generated and hostile
bodies; ``docs/performance.md`` has the figures.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

import jiter
from flask import current_app, request

from service.errors import ApiError
from service.gc_pause import gc_paused

# Deeper JSON than this is refused (400): no FHIR data we read comes close, and deep trees cost
# recursion in every later consumer (validation, serialisation).
MAX_JSON_DEPTH = 100

# ``nesting_depth`` reads the depth from the text (the exact path, and bodies fetched from a FHIR server):
# one translation of the text (``_structure``): digits become "0", quotes, colons and backslashes stay,
# objects and arrays both become "[" "]" (nesting is all the depth counts; the text is valid JSON when it is
# read), every other byte (whitespace too) becomes "."; ``_reduced`` then keeps only quotes, colons, brackets
# and backslashes, a few per cent of the text, where the depth is read.
_KEPT = {ord("{"): ord("["), ord("}"): ord("]"), **{c: c for c in b'":[]\\'}, **{c: ord("0") for c in b"0123456789"}}
_CHECK_TABLE = bytes(_KEPT.get(c, ord(".")) for c in range(256))
_NOT_KEPT = b".0"  # deleted from the translation: what is left holds every quote, bracket and backslash
_NOT_NESTING = b":\\"  # deleted from that to leave quotes and brackets
_NESTING_STEP = {ord("["): 1, ord("]"): -1}
_LEAF_PASSES = 16  # beyond this many levels, the rest is counted in one linear pass


def _structure(data: bytes) -> bytes:
    return data.translate(_CHECK_TABLE)


def _reduced(structure: bytes) -> bytes:
    """The translation's quotes, colons, brackets and backslashes, escaped backslashes and escaped quotes
    removed first (every quote left then delimits a string; a valid JSON string never holds a raw byte
    between a backslash and what it escapes)."""
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
        body = _fast(data)
        if body is not _UNSURE and _WRAP is not None:
            return body
        if body is _UNSURE:
            body = _stdlib_strict(data)
    if nesting_depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


_UNSURE = object()


_MAX_PROBE = 1 << 12  # nestings tried up to this many containers (jiter's limit is 200)


def _jiter_max_nesting() -> int:
    """The most containers jiter lets a value sit inside (its recursion limit), found by trying (binary search):
    the fast path's depth limit rests on it, so it is measured with the jiter installed, not assumed."""
    accepted, refused = 0, _MAX_PROBE + 1
    while refused - accepted > 1:
        n = (accepted + refused) // 2
        try:
            jiter.from_json(b"[" * n + b"0" + b"]" * n)
            accepted = n
        except ValueError:
            refused = n
    return accepted


def enclosing_arrays(jiter_max_nesting: int) -> int | None:
    """How many arrays to parse a body inside so that jiter refuses a value inside more than MAX_JSON_DEPTH - 1 of
    the body's containers: a body it accepts is then at most MAX_JSON_DEPTH deep (its deepest containers may be
    empty), and one with a value exactly MAX_JSON_DEPTH deep is left to the exact path, which accepts it. None
    when jiter showed no limit up to the probe's bound: then the depth is read from the text as well."""
    if jiter_max_nesting >= _MAX_PROBE:
        return None
    return max(0, jiter_max_nesting - (MAX_JSON_DEPTH - 1))


_WRAP = enclosing_arrays(_jiter_max_nesting())
_OPEN, _CLOSE = b"[" * (_WRAP or 0), b"]" * (_WRAP or 0)


def forget_cached_keys() -> None:
    """Empty jiter's cache of object keys (up to 16,384 short strings, kept across calls to spare re-creating them):
    after a large body, so that the keys it cached do not pin the heap pages it used (service/memory_return.py)."""
    jiter.cache_clear()


def _fast(data: bytes) -> Any:
    """The body, or ``_UNSURE`` when only the exact path can tell (jiter refused it)."""
    try:
        value = jiter.from_json(
            _OPEN + data + _CLOSE, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="keys"
        )
    except ValueError:
        return _UNSURE
    for _ in range(_WRAP or 0):  # one value in each enclosing array, or the text was not one JSON value
        if type(value) is not list or len(value) != 1:
            return _UNSURE
        value = value[0]
    return value


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
