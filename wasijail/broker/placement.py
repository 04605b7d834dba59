"""Where a brokering child runs: on one CPU with the thread that serves it.

A brokered call is a request and a reply over a socket, so each one wakes the
broker thread and then the child. When the two sleep on different CPUs, every
wake-up crosses CPUs: on this class of machine (a 2-vCPU VM) that cost ~55 us
of CPU and ~70 us of wall time per round trip, against 11-12 us when both ends
share a CPU, and made a file-heavy guest slower on an idle machine than on a
busy one. So once a child's module is compiled (compiling uses every core),
its guest thread and its broker thread are pinned to the same CPU, chosen as
the one with the fewest pinned pairs, so parallel jobs still spread over every
CPU the supervisor may use. A child that stops brokering (a compute phase: no
request for `IDLE` seconds) gets every CPU back, and is placed again when it
next asks for something, so a CPU-bound guest is never held to a busy CPU; and
a pair whose CPU holds two pairs more than another CPU (more jobs than CPUs,
then one ended) moves there at its next `REBALANCE`th request.
"""

from __future__ import annotations

import os
import threading
from typing import final

# No request for this long: the child is computing, not brokering; let it go anywhere.
IDLE = 0.05
# A pinned pair checks every this many requests whether another CPU holds fewer pairs.
REBALANCE = 256


@final
class Placement:
    """The supervisor's CPUs and how many child/broker pairs each one holds."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = frozenset(cpus if cpus is not None else os.sched_getaffinity(0))
        self._pairs = dict.fromkeys(sorted(self.cpus), 0)
        self._lock = threading.Lock()  # broker threads place and release concurrently

    @property
    def useful(self) -> bool:
        return len(self.cpus) > 1

    def pairs(self) -> dict[int, int]:
        with self._lock:
            return dict(self._pairs)

    def pin(self, pid: int) -> int | None:
        """Pin the child `pid` (its guest thread) and the calling broker thread to the
        least-used CPU; the CPU, or None where it could not be done (nothing changed)."""
        with self._lock:
            cpu = min(self._pairs, key=self._pairs.__getitem__)
            self._pairs[cpu] += 1
        try:
            _move(pid, cpu)
        except OSError:  # the child is gone, or a cpuset took the CPU away: stay unpinned
            self.release(pid, cpu)
            return None
        return cpu

    def rebalance(self, pid: int, cpu: int) -> int:
        """Move the pinned pair on `cpu` (the child `pid` and the calling thread) to the
        least-used CPU when that holds two pairs fewer; the CPU the pair is on after."""
        with self._lock:
            best = min(self._pairs, key=self._pairs.__getitem__)
            if self._pairs[cpu] - self._pairs[best] < 2:
                return cpu
            self._pairs[cpu] -= 1
            self._pairs[best] += 1
        try:
            _move(pid, best)
        except OSError:  # the child has just ended: its session is about to end too
            pass
        return best

    def release(self, pid: int | None, cpu: int) -> None:
        """Give the child (when `pid` is given and it still runs) and the calling thread every CPU again."""
        with self._lock:
            self._pairs[cpu] -= 1
        for target in (pid, 0):
            if target is None:
                continue
            try:
                os.sched_setaffinity(target, self.cpus)
            except OSError:
                pass  # the child has ended; the thread's own mask cannot be refused


def _move(pid: int, cpu: int) -> None:
    """Put the child `pid` (its guest thread), then the calling thread, on `cpu` alone."""
    os.sched_setaffinity(pid, {cpu})
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread, not the whole process
