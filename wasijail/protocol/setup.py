"""The setup channel: the start of a run, parent -> child, once.

`Start` is the first and only message the parent sends a child unasked; the
encoded `Setup` and the module travel with it as file descriptors
(SCM_RIGHTS), so nothing untrusted is read before the child is locked down
and no size limit applies to argv or env. It shares the child's socket with
the broker channel, whose ops start above `SetupOp`'s.

`ChildLimits` is the policy's limits as a child applies them, derived once
(`ChildLimits.of`) and carried whole by the fork server's `Spawn` (the
lockdown's rlimits) and by `Setup` (the store's limits, the WASI table's).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from .transport import Channel, Message, ProtocolError, record


class SetupOp(IntEnum):
    START = 1


class ArtifactMode(IntEnum):
    NONE = 0  # compile, keep nothing
    LOAD = 1  # a third fd holds a verified artifact: deserialize it instead of compiling
    PRODUCE = 2  # a third fd is a sink: write the serialized module there after compiling


@record
class Start(Message):
    """Sent with the encoded `Setup` and the module file as fds, plus an artifact fd per `artifact`."""

    OP = SetupOp.START
    FIXED = struct.Struct("<B")
    RANGES = (("artifact", min(ArtifactMode), max(ArtifactMode)),)
    artifact: int  # an ArtifactMode


# The child's first message in: decode and validate it, or raise ProtocolError.
decode_start = Channel("setup", (Start,)).decode


@record
class ChildLimits:
    """What one child may use; None: not limited. Every value is >= 0."""

    memory: int | None = None  # bytes of linear memory (the Store's limit)
    table_elements: int | None = None
    fuel: int | None = None  # 0: none at all (the first instruction traps, as in wasmtime)
    open_files: int | None = None  # WASI descriptors the guest may hold at once
    file_size: int | None = None  # bytes: RLIMIT_FSIZE, and the largest file fd_allocate/set_size make
    disk: int | None = None  # bytes the guest may write to files
    cpu_time: float | None = None  # seconds of the guest's CPU, counted from its start
    # RLIMIT_CPU during lockdown and compile: cpu_time plus the compile's budget
    # (compile_timeout on every core: Cranelift compiles in parallel); once its
    # module is ready, the child lowers it to what it has used plus cpu_time.
    lockdown_cpu_time: float | None = None
    threads: int | None = None  # RLIMIT_NPROC in the child's user namespace

    @classmethod
    def of(cls, limits, threads: int | None) -> "ChildLimits":
        """From a policy's `Limits`: the one place the child's limits are derived."""
        lockdown_cpu = None
        if limits.cpu_time is not None and limits.compile_timeout is not None:
            lockdown_cpu = limits.cpu_time + limits.compile_timeout * (os.cpu_count() or 1)
        return cls(memory=limits.memory, table_elements=limits.table_elements, fuel=limits.fuel,
                   open_files=limits.open_files, file_size=limits.file_size, disk=limits.disk,
                   cpu_time=limits.cpu_time, lockdown_cpu_time=lockdown_cpu, threads=threads)

    def encode(self) -> bytes:
        return _LIMITS.pack(*(_UNSET if value is None else value for value in self))

    @classmethod
    def decode(cls, data: bytes) -> "ChildLimits":
        if len(data) != _LIMITS.size:
            raise ProtocolError(f"limits of {len(data)} bytes, not {_LIMITS.size}")
        values = _LIMITS.unpack(data)
        if any(value < 0 and value != _UNSET for value in values):
            raise ProtocolError("a negative limit")
        return cls(*(None if value == _UNSET else value for value in values))


# On the wire, in field order: counts and bytes as i64, seconds as doubles; _UNSET is None.
_LIMITS = struct.Struct("<qqqqqqddq")
_UNSET = -1
assert len(_LIMITS.unpack(bytes(_LIMITS.size))) == len(ChildLimits._fields)


@dataclass(frozen=True)
class Setup:
    """Everything a child needs to run its module, besides the module itself."""

    module_name: bytes  # argv[0] and the name in messages
    is_wat: bool
    args: tuple[bytes, ...]
    env: tuple[bytes, ...]  # NAME=VALUE
    preopen_names: tuple[bytes, ...]  # preopen i has broker handle i
    preopen_readonly: tuple[bool, ...]
    invoke: bytes = b""  # export to call instead of _start
    invoke_args: tuple[bytes, ...] = ()
    limits: ChildLimits = field(default_factory=ChildLimits)
    engine: tuple[bytes, ...] = ()  # engine.EngineOptions.encode()

    def encode(self) -> bytes:
        w = _Writer()
        w.blob(self.module_name)
        w.flag(self.is_wat)
        w.blobs(self.args)
        w.blobs(self.env)
        w.blobs(self.preopen_names)
        w.blob(bytes(int(r) for r in self.preopen_readonly))
        w.blob(self.invoke)
        w.blobs(self.invoke_args)
        w.blob(self.limits.encode())
        w.blobs(self.engine)
        return b"".join(w.parts)

    @classmethod
    def decode(cls, data: bytes) -> "Setup":
        r = _Reader(data)
        try:
            setup = cls(
                module_name=r.blob(),
                is_wat=r.flag(),
                args=tuple(r.blobs()),
                env=tuple(r.blobs()),
                preopen_names=tuple(r.blobs()),
                preopen_readonly=tuple(bool(b) for b in r.blob()),
                invoke=r.blob(),
                invoke_args=tuple(r.blobs()),
                limits=ChildLimits.decode(r.blob()),
                engine=tuple(r.blobs()),
            )
        except struct.error as exc:
            raise ProtocolError("setup truncated") from exc
        r.end()
        return setup


_COUNT = _LENGTH = struct.Struct("<I")


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def flag(self, value: bool) -> None:
        self.parts.append(b"\1" if value else b"\0")

    def blob(self, value: bytes) -> None:
        self.parts.append(_LENGTH.pack(len(value)))
        self.parts.append(value)

    def blobs(self, values: list[bytes] | tuple[bytes, ...]) -> None:
        self.parts.append(_COUNT.pack(len(values)))
        for value in values:
            self.blob(value)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def flag(self) -> bool:
        value = self.data[self.offset:self.offset + 1]
        if value not in (b"\0", b"\1"):
            raise ProtocolError("setup flag truncated or not 0/1")
        self.offset += 1
        return value == b"\1"

    def blob(self) -> bytes:
        (length,) = _LENGTH.unpack_from(self.data, self.offset)
        self.offset += _LENGTH.size
        value = self.data[self.offset:self.offset + length]
        if len(value) != length:
            raise ProtocolError("setup blob truncated")
        self.offset += length
        return value

    def blobs(self) -> list[bytes]:
        (count,) = _COUNT.unpack_from(self.data, self.offset)
        self.offset += _COUNT.size
        return [self.blob() for _ in range(count)]

    def end(self) -> None:
        if self.offset != len(self.data):
            raise ProtocolError(f"setup: {len(self.data) - self.offset} trailing bytes")
