"""The cyclic collector during a service call (service/gc_pause.py): no collection while the call holds its
parsed body, the call's own cyclic garbage collected afterwards, and overlapping calls cannot keep the
collector off for good."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from bench.bodies import CASE_NOW, build, generated_observations, load_case
from service import gc_pause
from service.gc_pause import gc_paused

CASE = "cat-rt-02-va-31-worked-example"


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_no_collection_traverses_the_body_of_a_call_and_the_collector_is_back_on_after(client: Any) -> None:
    case = load_case(CASE)
    patient_id = next(r["id"] for r in case["resources"] if r["resourceType"] == "Patient")
    req = build("gc", case, generated_observations(3000, patient_id, CASE_NOW, relevant=1.0), CASE_NOW)
    body = req.encoded()
    traversed: list[int] = []  # objects each collection during the call looks at

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            traversed.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))

    assert gc.isenabled()
    gc.collect()
    gc.callbacks.append(count)
    try:
        answer = client.post(req.path, data=body, content_type="application/json")
    finally:
        gc.callbacks.remove(count)
    assert answer.status_code == 200
    assert answer.get_json()["cards"]
    # ~45,000 containers parsed and read: without the pause, collections traverse them again and again
    assert all(n < 10_000 for n in traversed), f"objects traversed by the collections during the call: {traversed}"
    assert not gc.isenabled(), "the call holds its body until the answer is sent (closed)"
    answer.close()  # what a server does once it has sent the answer
    assert gc.isenabled()


def _tracked_dicts() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is dict)


def test_the_call_frees_its_body_after_the_answer_is_closed_and_a_dropped_answer_ends_the_pause(client: Any) -> None:
    """The parsed body, pool and facts are freed once the answer is sent (as werkzeug keeps a plain Flask app's
    parsed JSON until the server is done): not before, and not never, even if no one closes the answer."""
    case = load_case(CASE)
    patient_id = next(r["id"] for r in case["resources"] if r["resourceType"] == "Patient")
    req = build("gc", case, generated_observations(2000, patient_id, CASE_NOW, relevant=1.0), CASE_NOW)
    body = req.encoded()
    gc.collect()
    before = _tracked_dicts()
    answer = client.post(req.path, data=body, content_type="application/json")
    assert answer.status_code == 200
    held = _tracked_dicts() - before
    assert held > 2000, f"the call's data are still held while the answer is open ({held} dicts)"
    answer.close()
    assert gc.isenabled()
    assert _tracked_dicts() - before < 500, "closed: the call's data are freed"

    dropped = client.post(req.path, data=body, content_type="application/json")
    assert dropped.status_code == 200
    assert not gc.isenabled()
    del dropped  # never closed: the answer's finaliser ends the pause and frees the data
    assert gc.isenabled()
    assert _tracked_dicts() - before < 500


def test_a_refused_body_leaves_the_collector_on(client: Any) -> None:
    answer = client.post(
        "/cds-services/spine-metastasis-review", data=b'{"a": 1, "a": 2}', content_type="application/json"
    )
    assert answer.status_code == 400
    assert gc.isenabled()


def test_garbage_cycles_made_while_paused_are_collected_after_the_last_call_leaves() -> None:
    with gc_paused():
        ref = weakref.ref(_Node())
        with gc_paused():  # re-entrant: the inner exit does not turn it back on
            pass
        assert not gc.isenabled()
        assert ref() is not None
    assert gc.isenabled()
    gc.collect(0)
    assert ref() is None


def test_overlapping_calls_collect_once_the_collector_has_been_off_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under sustained load some call is always inside: the one leaving after MAX_OFF_SECONDS collects anyway."""
    now = [1000.0]
    monkeypatch.setattr(gc_pause, "_clock", lambda: now[0])
    inside, leave = threading.Event(), threading.Event()

    def long_call() -> None:
        with gc_paused():
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=long_call)
    other.start()
    try:
        assert inside.wait(5)
        with gc_paused():
            early = weakref.ref(_Node())
        assert not gc.isenabled(), "another call is still inside"
        assert early() is not None, "not yet off for long: nothing collected"
        with gc_paused():
            late = weakref.ref(_Node())
            now[0] += gc_pause.MAX_OFF_SECONDS + 0.1
        assert late() is None and early() is None, "off too long: the leaving call collected"
        assert not gc.isenabled(), "the long call is still inside"
    finally:
        leave.set()
        other.join(5)
    assert gc.isenabled()
