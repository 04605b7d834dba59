"""The fork server's control channel: supervisor <-> fork server.

Both ends are trusted (the fork server is the supervisor's own child, started
before any module is read); the messages are still decoded strictly.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from .setup import ChildLimits
from .transport import Channel, Message, record


class ControlOp(IntEnum):
    SPAWN = 1  # supervisor -> fork server
    SPAWNED = 2  # fork server -> supervisor
    EXITED = 3  # fork server -> supervisor

# Spawn's descriptors: broker socket, stdin, stdout, stderr, violation pipe,
# then the cache's artifact when Spawn.artifact is 1, then the cgroup join (`cgroup.procs` or v1 `tasks`)
# of each cgroup the child joins (none, one or two).
SPAWN_FDS = range(5, 8)  # without an artifact


@record
class Spawn(Message):
    """Fork a child; sent with SPAWN_FDS descriptors (one more with an artifact)."""

    OP = ControlOp.SPAWN
    FIXED = struct.Struct("<Qqq")
    BLOBS = ("limits", "require")
    RANGES = (("artifact", 0, 1),)
    run_id: int
    host_uid: int  # the host uid (and gid) the child runs as before lockdown, -1: the server's
    artifact: int  # 1: the sixth descriptor is the cache's artifact, for lockdown to mount read-only
    limits: bytes  # ChildLimits.encode(): the lockdown applies its rlimits
    require: bytes  # comma-separated sandbox layers that must be applied

    @classmethod
    def of(cls, run_id: int, limits: ChildLimits, host_uid: int, require: tuple[str, ...],
           artifact: bool = False) -> "Spawn":
        return cls(run_id, host_uid, int(artifact), limits.encode(), ",".join(require).encode())

    def validate(self) -> None:
        Message.validate(self)
        ChildLimits.decode(self.limits)

    @property
    def fd_counts(self) -> range:
        """How many descriptors may come with this Spawn."""
        return range(SPAWN_FDS.start + self.artifact, SPAWN_FDS.stop + self.artifact)

    @property
    def child_limits(self) -> ChildLimits:
        return ChildLimits.decode(self.limits)

    @property
    def required(self) -> frozenset[str]:
        return frozenset(filter(None, self.require.decode().split(",")))


@record
class Spawned(Message):
    """The child exists. Sent with its pidfd (or no fd when the fork failed)."""

    OP = ControlOp.SPAWNED
    FIXED = struct.Struct("<Qi")
    BLOBS = ("error",)
    run_id: int
    pid: int  # -1: the fork failed, `error` says why
    error: bytes


@record
class Exited(Message):
    """A child ended; status is the raw wait status."""

    OP = ControlOp.EXITED
    FIXED = struct.Struct("<iiQQQ")
    pid: int
    status: int
    user_us: int  # CPU time in user mode, microseconds (wait4's rusage)
    system_us: int
    max_rss_kib: int


# Each direction decodes and validates only its own messages (ProtocolError otherwise).
decode_to_server = Channel("control", (Spawn,)).decode
decode_from_server = Channel("control", (Spawned, Exited)).decode
