"""Spread new connections over the gunicorn workers of ``spinecds serve``.

Every worker accepts from the one listening socket the master bound. Without a policy, a burst of new
connections (a client opening its keep-alive pool, a wrk run) all went to whichever worker's event
loop woke first: it accepts each one in microseconds, before the other worker is even scheduled, and
the connections then stay where they landed (measured: 8 and 32 keep-alive connections, 100 % / 0 %
CPU split; one core idle).

Here each worker publishes how many connections it has open in a small table in memory shared by all
workers (``PeerLoads``: anonymous shared memory mapped in the master, before it forks the workers).
A worker accepts the connection waiting on the socket when it has no more open connections than its
least loaded live peer (``AcceptPolicy``); otherwise it leaves the connection to that peer for
``HANDOFF_SECONDS`` and takes it itself if no peer did by then, so a busy, stuck or dead peer never
strands a connection, and accepting never waits longer than that (health probes included). A peer
whose heartbeat is older than ``STALE_SECONDS`` (a dead worker's slot) is not a peer. With one worker
every connection is accepted at once.

Where a connection lands is decided once, and keep-alive connections stay: a worker that was alone
while its peer booted, or still had a queue of a previous client's requests when a new client
connected, would keep the extra connections for good. So a worker with at least ``SHED_MARGIN``
more open connections than its least loaded peer closes one connection after its next answer
(``Connection: close``, at most one per ``SHED_INTERVAL_SECONDS``); the client reconnects, and the
connection goes to the peer. Nothing is lost: the answer is complete and the close is announced.
"""

from __future__ import annotations

import mmap
import struct
import threading
import time

SLOTS = 64  # more than any worker count; a respawned worker takes a free or stale slot
HANDOFF_SECONDS = 0.05  # how long a more loaded worker leaves a waiting connection to its peers
RECHECK_SECONDS = 0.005  # while it does, how often it looks whether it is still the more loaded one
SHED_MARGIN = 2  # this many more connections than the least loaded peer: close one after an answer
SHED_INTERVAL_SECONDS = 0.1  # time for the counts to show the last close before the next one
STALE_SECONDS = 3.0  # a slot not refreshed for this long belongs to no live worker (event loops wake every second)
_SLOT = struct.Struct("=qqd")  # pid, open connections, heartbeat (time.monotonic: one clock for all processes)


class PeerLoads:
    """Open-connection counts of the workers, in shared memory. Each slot is written only by its owner."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._slots = slots
        self._mem = mmap.mmap(-1, slots * _SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS: shared with forked children

    def _read(self, slot: int) -> tuple[int, int, float]:
        pid, connections, heartbeat = _SLOT.unpack_from(self._mem, slot * _SLOT.size)
        return int(pid), int(connections), float(heartbeat)

    def claim(self, hint: int, pid: int) -> int:
        """A slot for worker ``pid``: the first free or stale one from ``hint`` on (the worker's age)."""
        now = time.monotonic()
        for i in range(self._slots):
            slot = (hint + i) % self._slots
            owner, _, heartbeat = self._read(slot)
            if owner in (0, pid) or now - heartbeat > STALE_SECONDS:
                self.publish(slot, pid, 0)
                return slot
        return hint % self._slots  # every slot live: share one (balance degrades, accepting does not)

    def publish(self, slot: int, pid: int, connections: int) -> None:
        _SLOT.pack_into(self._mem, slot * _SLOT.size, pid, connections, time.monotonic())

    def release(self, slot: int) -> None:
        _SLOT.pack_into(self._mem, slot * _SLOT.size, 0, 0, 0.0)

    def least_loaded_peer(self, slot: int, now: float) -> int | None:
        """The fewest open connections of any other live worker, or None when there is none."""
        least: int | None = None
        for other in range(self._slots):
            if other == slot:
                continue
            pid, connections, heartbeat = self._read(other)
            if pid and now - heartbeat <= STALE_SECONDS and (least is None or connections < least):
                least = connections
        return least


class AcceptPolicy:
    """Whether one worker accepts a waiting connection now, or leaves it to a less loaded peer for a while.

    The event loop asks ``poll_listener`` before each poll (False: do not watch the listening socket)
    and ``accept_now`` when the socket is readable. Declining mutes the socket for one handoff
    period, or until this worker is no longer more loaded than a peer (looked at every
    ``RECHECK_SECONDS``: two workers accepting in turn would otherwise both sit muted); if it is
    readable at the first poll after the handoff, no peer took the connection and this worker
    accepts it, and whatever else arrives during one more handoff period. If it is not, a peer took
    it and the next waiting connection starts afresh.
    """

    def __init__(self, loads: PeerLoads, slot: int, handoff: float = HANDOFF_SECONDS) -> None:
        self.loads, self.slot, self.handoff = loads, slot, handoff
        self._state = "open"  # open | muted | recheck | taking
        self._until = 0.0
        self._shed_lock = threading.Lock()
        self._last_shed = 0.0

    def poll_listener(self, connections: int, now: float) -> bool:
        if self._state == "muted":
            peer = self.loads.least_loaded_peer(self.slot, now)
            if peer is None or connections <= peer:
                self._state = "open"
                return True
            if now < self._until:
                return False
            self._state = "recheck"
        elif self._state == "recheck":  # polled after the handoff and nothing was waiting: a peer took it
            self._state = "open"
        return True

    def accept_now(self, connections: int, now: float) -> bool:
        peer = self.loads.least_loaded_peer(self.slot, now)
        if peer is None or connections <= peer:
            self._state = "open"
            return True
        if self._state == "recheck":  # still waiting after a whole handoff period: no peer takes it
            self._state, self._until = "taking", now + self.handoff
        if self._state == "taking" and now < self._until:
            return True
        self._state, self._until = "muted", now + self.handoff
        return False

    def shed_now(self, connections: int, now: float) -> bool:
        """Whether to close the connection an answer is going out on (asked from the application threads)."""
        peer = self.loads.least_loaded_peer(self.slot, now)
        if peer is None or connections < peer + SHED_MARGIN:
            return False
        with self._shed_lock:
            if now < self._last_shed + SHED_INTERVAL_SECONDS:  # sum, not difference: exact at the edge
                return False
            self._last_shed = now
            return True

    def wake_in(self, now: float) -> float | None:
        """Seconds until the muted listening socket should be looked at again (None: not muted)."""
        return min(RECHECK_SECONDS, max(0.0, self._until - now)) if self._state == "muted" else None
