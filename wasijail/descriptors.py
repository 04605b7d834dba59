"""The supervisor's descriptors, shared out between its runs before they start.

Every run costs the supervisor descriptors: a few of its own (the module,
the broker socket, pipes, the pidfd: `RUN_DESCRIPTORS`) and the directory
handles its broker holds for the child, at most the policy's `open_files`.
One job must not be able to make the next one fail with "Too many open
files", so the supervisor raises its soft RLIMIT_NOFILE to the hard limit
when it starts, and a run is admitted only once its share fits in what is
left (`DescriptorBudget`): admission, not a later EMFILE, decides who runs.
"""

from __future__ import annotations

import os
import resource
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

# What one run costs the supervisor besides its broker's handles: the module,
# setup and artifact files, the broker socket pair, the violation pipe, stdio
# pipes and their private copies, the pidfd, cgroup files, and what the broker
# holds for a moment while it serves one request (a resolved parent, a
# source, descriptors the child sent).
RUN_DESCRIPTORS = 32
# Kept back for everything else the process opens (trio, the fork server's
# socket, the cache, a batch's result files, the caller's own).
RESERVED = 64


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            soft = hard
        except (OSError, ValueError):
            pass  # keep what we have; the budget is computed from it
    return hard if soft == resource.RLIM_INFINITY else soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class DescriptorBudget:
    """A weighted, first-come-first-served share of the supervisor's descriptors."""

    def __init__(self, total: int) -> None:
        self.total = max(RUN_DESCRIPTORS + 1, total)
        self.free = self.total
        self._waiting: list[tuple[int, trio.Event]] = []

    @classmethod
    def for_this_process(cls) -> "DescriptorBudget":
        """Raise the soft limit, then share out what is neither open now nor reserved."""
        return cls(raise_nofile_limit() - open_descriptors() - RESERVED)

    def handles_for(self, open_files: int | None, default: int) -> int:
        """The most directory handles a run may hold: its `open_files`, and never more than
        the whole budget leaves beside its own costs (so every run can run alone)."""
        wanted = open_files if open_files is not None else default
        return max(1, min(wanted, self.total - RUN_DESCRIPTORS))

    @asynccontextmanager
    async def hold(self, count: int) -> AsyncIterator[None]:
        """Wait until `count` descriptors are free (in arrival order), keep them for the block."""
        count = min(count, self.total)
        if self._waiting or self.free < count:
            event = trio.Event()
            entry = (count, event)
            self._waiting.append(entry)
            try:
                await event.wait()
            except BaseException:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                    self._wake()  # the ones behind it may fit now
                else:
                    self._release(count)  # granted just as we were cancelled
                raise
        else:
            self.free -= count
        try:
            yield
        finally:
            self._release(count)

    def _release(self, count: int) -> None:
        self.free += count
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            count, event = self._waiting.pop(0)
            self.free -= count
            event.set()
