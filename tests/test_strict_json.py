"""service/cds/strict_json.py: the fast path (orjson + byte-level counts) answers exactly as the
standard library's strict parse does, for any body: the same value (types included) or the same 400.

The oracle here is written independently of the module: ``json.loads`` with a duplicate-key hook and
a NaN/Infinity refusal, then a recursive depth walk over the parsed tree.
"""

from __future__ import annotations

import json
import string
from typing import Any

import hypothesis.strategies as st
import jiter
import pytest
from hypothesis import HealthCheck, example, given, settings

from service.cds.strict_json import MAX_JSON_DEPTH, nesting_depth, parse_json_body
from service.errors import ApiError


class _Refused(Exception):
    pass


def _tree_depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_tree_depth, children), default=0)


def _oracle(data: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise _Refused("duplicate")
        return dict(items)

    def constant(name: str) -> Any:
        raise _Refused(name)

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError, _Refused) as exc:
        raise _Refused(type(exc).__name__) from exc
    if _tree_depth(value) > MAX_JSON_DEPTH:
        raise _Refused("depth")
    return value


def _typed(value: Any) -> Any:
    """The value with each number's type made visible (1 and 1.0 and True compare equal in Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _same_answer(data: bytes) -> None:
    try:
        expected = _oracle(data)
    except _Refused:
        with pytest.raises(ApiError) as refused:
            parse_json_body(data)
        assert refused.value.status == 400
        return
    assert _typed(parse_json_body(data)) == _typed(expected)


_KEYS = st.text(alphabet=st.sampled_from(list('ab:[]{}"\\,\u00e9\U0001f600')), max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # beyond 64 bits too: orjson reads those as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.text(alphabet=st.sampled_from(list('[]{}":,\\/\n\t\u2028')), max_size=8)
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=30
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_VALUES, ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]), compact=st.booleans())
def test_any_well_formed_body_reads_as_the_standard_library_reads_it(
    value: Any, ascii_only: bool, indent: int | None, compact: bool
) -> None:
    separators = (",", ":") if compact else None
    _same_answer(json.dumps(value, ensure_ascii=ascii_only, indent=indent, separators=separators).encode())


_SPLICES = [
    b'"k":1,"k":2,',  # duplicate key
    b'"\\ud800":1,',  # lone surrogate escape (the standard library reads it)
    b'"x":NaN,',
    b'"x":-Infinity,',
    b'"x":1e400,',  # overflows to infinity in the standard library, an error in orjson
    b'"x":123456789012345678901234567890,',
    b'"x":-9223372036854775809,',
    b'"x":"\x01",',  # raw control character in a string
    b'"x":"\xff",',  # invalid UTF-8
    b'"x":' + b"[" * 120 + b"1" + b"]" * 120 + b",",
    b'"x":' + b"[" * 300 + b"]" * 300 + b",",  # deeper than orjson.dumps writes
    b'"x":01,',
    b'"x":1.,',
    b'"\\"":1,"\\"":2,',  # duplicate key written with escapes
    b'"\\u0061":1,"a":2,',  # the same key, once escaped
    b'"k" :1,"k":2,',  # whitespace before one colon
    b'"k"\n:1,\n"k"\t:2,',
    b'"k\\\\":1,"k\\\\":2,',  # keys ending in an escaped backslash
    b'"s":"a\\":b","s":1,',  # a string holding a quote and colon, then a duplicate
    b'"s":"a\\":b","t":1,',
    b'"s":"\\u0022:","k":1,"k":2,',  # a quote and colon escaped as \u0022 in the text, plain in orjson's
    b'"s":"\\u003a","k":1,"k":2,',  # a colon escaped in the text, plain in orjson's: as many colons
    b'"s":"\\u003A\\u003a","k":1,"k":2,"j":"x",',
    b'"\\u003a":":","k":1,"k":2,',
    b'"s":"\\\\u003a","k":1,',  # an escaped backslash, then the letters u003a: no colon
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.dictionaries(_KEYS, _VALUES, max_size=4),
    splice=st.sampled_from(_SPLICES),
    cut=st.integers(min_value=0, max_value=3),
)
@example(value={}, splice=_SPLICES[0], cut=0)
def test_any_hostile_body_gets_the_standard_librarys_answer(value: dict[str, Any], splice: bytes, cut: int) -> None:
    text = json.dumps(value, ensure_ascii=False).encode()
    body = b"{" + splice + text[1:] if len(text) > 2 else b"{" + splice.rstrip(b",") + b"}"
    _same_answer(body[: len(body) - cut] if cut else body)


@given(st.binary(max_size=64) | st.text(alphabet=string.printable, max_size=64).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_any_bytes_at_all(data: bytes) -> None:
    _same_answer(data)


def test_duplicate_keys_escaped_differently_are_refused_and_named() -> None:
    with pytest.raises(ApiError, match="duplicate object key 'a'"):
        parse_json_body(b'{"resourceType":"Patient","\\u0061":1,"a":2}')


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=_VALUES,
    wrappers=st.lists(st.sampled_from(["list", "dict"]), max_size=40),
    ascii_only=st.booleans(),
    spaced=st.booleans(),
)
def test_nesting_depth_read_from_text_equals_the_parsed_depth(
    value: Any, wrappers: list[str], ascii_only: bool, spaced: bool
) -> None:
    for wrapper in wrappers:  # also deeper than the cheap leaf passes go
        value = [value, "]}"] if wrapper == "list" else {"[": value, "k": [[]]}
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators, indent=1 if spaced else None)
    assert nesting_depth(text.encode()) == _tree_depth(value)


def test_nesting_depth_is_read_from_the_text() -> None:
    assert nesting_depth(b'{"a":{"b:[{":[1,{}]},"c":"}}}"}') == 4
    assert nesting_depth(b'"just a string"') == 0
    assert nesting_depth(b"[" * 40 + b"]" * 40) == 40


@pytest.mark.parametrize("depth", [254, 256, 1000, 1100])
def test_bodies_deeper_than_orjson_writes_or_reads_are_refused_not_crashed(depth: int) -> None:
    with pytest.raises(ApiError, match="nested deeper"):
        parse_json_body(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def test_the_collector_is_paused_only_while_a_body_is_parsed() -> None:
    """A JSON tree has no cycles: the parse runs without the cyclic GC, which is back on afterwards (and stays
    off if it was off), also when the parse refuses the body or several threads parse at once."""
    import gc
    import threading

    from service.gc_pause import gc_paused

    assert gc.isenabled()
    parse_json_body(b'{"a": [1, 2, {"b": null}]}')
    assert gc.isenabled()
    with pytest.raises(ApiError):
        parse_json_body(b'{"a": 1, "a": 2}')
    assert gc.isenabled()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with gc_paused():
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=hold)
    other.start()
    inside.wait(5)
    parse_json_body(b"[1]")
    assert not gc.isenabled(), "another thread is still inside: the collector stays paused"
    leave.set()
    other.join(5)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_json_body(b"[1]")
        assert not gc.isenabled(), "off before, off after"
    finally:
        gc.enable()


def test_real_bodies_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact path is for what the fast one cannot be sure of; an EHR's ordinary prefetch (narrative with
    escapes, URLs and times full of colons, whitespace) never needs it, or every call pays the slow parse."""
    from bench.bodies import scenarios
    from service.cds import strict_json

    def refuse(data: bytes) -> Any:
        raise AssertionError("the exact (slow) path ran")

    monkeypatch.setattr(strict_json, "_stdlib_strict", refuse)
    for req in scenarios()[:3]:  # small, typical (Synthea resources, narrative) and a whole Synthea bundle
        compact = req.encoded()
        pretty = json.dumps(req.body, indent=2).encode()
        for data in (compact, pretty, b'{"div": "<p>a \\"quoted\\" \\\\ word</p>", "t": "12:00:00"}'):
            assert parse_json_body(data) == json.loads(data)


@pytest.mark.parametrize(
    "text",
    ["0],[0", '"a"],["b"', "1]]],[[[2", "{}],[{}", "[1],[2", "0]", "[0", "1 2", ""],
    ids=["scalars", "strings", "deep", "objects", "arrays", "close", "open", "two", "empty"],
)
def test_texts_that_are_json_only_inside_the_fast_paths_enclosing_arrays_are_refused(text: str) -> None:
    """The fast path parses the body inside enclosing arrays (its depth limit); a text that is not one JSON
    value but reads as one inside them (``[[0],[0]]``) is refused as the standard library refuses it."""
    with pytest.raises(ApiError) as refused:
        parse_json_body(text.encode())
    assert refused.value.status == 400


@pytest.mark.parametrize("depth", [1, 98, 99, 100, 101, 102])
@pytest.mark.parametrize("innermost", ["[]", "{}", "[0]", '{"a":0}', '"s"'])
@pytest.mark.parametrize("container", ["[", '{"k":'])
def test_the_depth_limit_is_exact_whatever_sits_innermost(depth: int, innermost: str, container: str) -> None:
    """jiter counts values inside containers, the limit counts containers (an empty innermost one too): the two
    paths together answer exactly as the oracle does at, below and above MAX_JSON_DEPTH."""
    closing = "]" if container == "[" else "}"
    inner_depth = 1 if innermost.startswith(("[", "{")) else 0
    outer = depth - inner_depth
    _same_answer((container * outer + innermost + closing * outer).encode())


def test_the_fast_path_depth_rests_on_jiters_own_limit() -> None:
    from service.cds import strict_json

    limit = strict_json._jiter_max_nesting()
    jiter.from_json(b"[" * limit + b"0" + b"]" * limit)
    with pytest.raises(ValueError):
        jiter.from_json(b"[" * (limit + 1) + b"0" + b"]" * (limit + 1))
    assert limit - (MAX_JSON_DEPTH - 1) == strict_json._WRAP
    assert strict_json.enclosing_arrays(limit) == strict_json._WRAP
    assert strict_json.enclosing_arrays(50) == 0, "a lower limit: jiter refuses more, the exact path answers"
    # a jiter without a limit up to the probe's bound: the depth is not left to it
    assert strict_json.enclosing_arrays(strict_json._MAX_PROBE) is None


def test_without_a_jiter_limit_the_fast_path_still_reads_the_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cds import strict_json

    monkeypatch.setattr(strict_json, "_WRAP", None)
    monkeypatch.setattr(strict_json, "_OPEN", b"")
    monkeypatch.setattr(strict_json, "_CLOSE", b"")
    assert parse_json_body(b"[" * 100 + b"]" * 100) == json.loads(b"[" * 100 + b"]" * 100)
    with pytest.raises(ApiError) as refused:
        parse_json_body(b"[" * 101 + b"]" * 101)
    assert refused.value.status == 400
