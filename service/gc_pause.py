"""The cyclic garbage collector paused while a service call holds its parsed body.

A request body is a tree of dicts and lists (a 2 MB Synthea bundle is ~60,000 containers, 20,000
Observations ~400,000) and has no reference cycles: it is freed by reference counting when the call
returns. With the collector running, the allocations of the call itself (the parse, the pool, the
facts) trigger young collections that traverse the whole live tree, move it to the older
generations and traverse it there again: 3-50 ms of collection per call, growing faster than the
body (measured in process with ``gc.callbacks``: Synthea ~11 ms per call, 5,000 relevant
Observations ~54 ms; docs/performance.md, "Round 3"). Paused for the whole call, the tree is gone
before the collector looks. A service call holds its body until its answer has been sent (it is freed
then, ``service/cds/blueprint.py``), so its pause (``pause()``) ends then too.

What a call leaves as cyclic garbage (~550 small objects: frames, Flask/werkzeug internals, the
same for any body size) is collected after the call, when the last call in the process leaves the
pause. The collector is process-wide and the server runs several threads per worker: while any
call is inside, it stays off. So that overlapping calls under sustained load cannot keep it off
for good, a call that leaves while the collector has been off for more than ``MAX_OFF_SECONDS``
runs one young collection itself (it traverses the bodies of the calls still running, once).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

MAX_OFF_SECONDS = 1.0  # longest the collector stays off while calls overlap before one collects anyway

_lock = threading.Lock()
_inside = 0  # calls (threads) inside the pause
_resume = False  # the collector was on when the first of them came in
_off_since = 0.0  # when the collector was turned off, or last collected while off
_clock = time.monotonic


def pause() -> Callable[[], None]:
    """Pause the collector for one holder (a call that outlives a ``with`` block, e.g. until its answer is
    sent); returns the function that ends this holder's pause, which acts once however often it is called."""
    global _inside, _resume, _off_since
    with _lock:
        if _inside == 0:
            _resume = gc.isenabled()
            gc.disable()
            _off_since = _clock()
        _inside += 1
    ended = threading.Lock()  # held once ended: a second call does nothing

    def end() -> None:
        if ended.acquire(blocking=False):
            _leave()

    return end


def _leave() -> None:
    global _inside, _off_since
    collect = False
    with _lock:
        _inside -= 1
        if _inside == 0:
            if _resume:
                gc.enable()
        elif _resume and _clock() - _off_since > MAX_OFF_SECONDS:
            _off_since = _clock()
            collect = True
    if collect:  # outside the lock: finalisers may run
        gc.collect(0)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector off while any thread is inside (it is process-wide); back on after the last
    one leaves, unless it was off before the first came in. Re-entrant."""
    end = pause()
    try:
        yield
    finally:
        end()
