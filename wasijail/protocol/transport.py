"""Framing and codec shared by every channel.

Transport: AF_UNIX SOCK_SEQPACKET sockets, so every message keeps its
boundaries. A message is

    u16 op | fixed fields (struct, little-endian) | per blob: u32 length, bytes

A record's layout is compiled once per class into one `struct.Struct` for the
head and the fixed fields, so encoding is one `pack` plus the blobs, and
decoding one `unpack_from` plus a length check per blob: no per-field work on
the hot path. Decoding checks the exact length, every blob length and then
the record's own `validate` (paths against the WASI path rule, flags against
their masks...); anything malformed is a `ProtocolError`.
"""

from __future__ import annotations

import array
import operator
import os
import socket
import struct
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Mapping

from ..wasi import path_errno

# Large enough for two maximal paths or one readdir chunk; bigger is a violation.
MAX_MESSAGE = 64 * 1024
# The most descriptors one message carries (`Spawn`: broker, stdio, violation pipe, two cgroups).
MAX_FDS = 7

HEADER = struct.Struct("<H")  # the op
BLOB_LEN = struct.Struct("<I")
RECV_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class ProtocolError(Exception):
    """A message that does not follow this protocol: the peer is broken or hostile."""


def check_path(name: str, value: bytes) -> None:
    """A path field must be a valid WASI path (an honest child never sends another)."""
    problem = path_errno(value)
    if problem is not None:
        raise ProtocolError(f"{name}: not a valid path ({problem.name})")


def check_flags(name: str, value: int, allowed: int) -> None:
    if value & ~allowed:
        raise ProtocolError(f"{name}: unknown bits {value & ~allowed:#x}")


@dataclass(frozen=True)
class Layout:
    head: struct.Struct  # the head (op, ...) and the fixed fields, packed in one call
    ints: Callable[["Record"], tuple]  # the fixed fields' values, in order


class Record:
    """Fixed int fields then trailing blobs: a frozen dataclass plus its wire layout.

    Subclasses declare `FIXED` (the struct of the leading int fields, in
    declaration order), `BLOBS` (names of the trailing bytes fields) and
    `PATHS` (the blobs that are guest paths).
    """

    FIXED: ClassVar[struct.Struct]
    BLOBS: ClassVar[tuple[str, ...]] = ()
    PATHS: ClassVar[tuple[str, ...]] = ()

    def pack(self, layout: Layout, *head: int) -> bytes:
        data = layout.head.pack(*head, *layout.ints(self))
        if not self.BLOBS:
            return data
        parts = [data]
        for name in self.BLOBS:
            blob = getattr(self, name)
            parts.append(BLOB_LEN.pack(len(blob)))
            parts.append(blob)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, data: bytes | memoryview, offset: int):
        try:
            ints = cls.FIXED.unpack_from(data, offset)
        except struct.error as exc:
            raise ProtocolError(f"{cls.__name__}: truncated fixed part") from exc
        offset += cls.FIXED.size
        if cls.BLOBS:
            blobs = []
            end = len(data)
            for name in cls.BLOBS:
                if offset + BLOB_LEN.size > end:
                    raise ProtocolError(f"{cls.__name__}.{name}: truncated length")
                (length,) = BLOB_LEN.unpack_from(data, offset)
                offset += BLOB_LEN.size
                if offset + length > end:
                    raise ProtocolError(f"{cls.__name__}.{name}: length {length} past the end")
                blobs.append(bytes(data[offset:offset + length]))
                offset += length
            ints = (*ints, *blobs)
        if offset != len(data):
            raise ProtocolError(f"{cls.__name__}: {len(data) - offset} trailing bytes")
        record = cls(*ints)  # fields are declared ints first, then blobs (checked by compile_layout)
        record.validate()
        return record

    def validate(self) -> None:
        for name in self.PATHS:
            check_path(f"{type(self).__name__}.{name}", getattr(self, name))


def compile_layout(cls: type[Record], head: str) -> Layout:
    """The layout of `cls` after a head of struct format `head` (made once per class and head)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    int_names = [n for n in names if n not in cls.BLOBS]
    if names != int_names + list(cls.BLOBS):
        raise TypeError(f"{cls.__name__}: blob fields must come last, in BLOBS order")
    getter = operator.attrgetter(*int_names) if int_names else (lambda m: ())
    ints = getter if len(int_names) != 1 else (lambda m: (getter(m),))
    return Layout(struct.Struct("<" + head + cls.FIXED.format.lstrip("<")), ints)


_MESSAGE_LAYOUTS: dict[type, Layout] = {}


class Message(Record):
    """A record that travels on its own, after its channel's `OP` (see each channel's op enum)."""

    OP: ClassVar[int]
    FDS: ClassVar[int] = 0  # descriptors that travel with it (SCM_RIGHTS); any other count is a violation

    def encode(self) -> bytes:
        cls = type(self)
        layout = _MESSAGE_LAYOUTS.get(cls)
        if layout is None:
            layout = _MESSAGE_LAYOUTS[cls] = compile_layout(cls, "H")
        return self.pack(layout, self.OP)


def decode(data: bytes | memoryview, table: Mapping[int, type[Message]], channel: str) -> Message:
    """Decode and validate one message of a channel whose messages are `table` (by op)."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"{channel} message shorter than its header")
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"{channel} message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    (op,) = HEADER.unpack_from(data, 0)
    cls = table.get(op)
    if cls is None:
        raise ProtocolError(f"unknown op {op}")  # the same words on every channel
    return cls.decode_body(data, HEADER.size)


# --- blocking transport -------------------------------------------------------


def rights(fds) -> list:
    """The ancillary data that passes `fds` (none: no ancillary data)."""
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]


def send(sock: socket.socket, message: Message, fds: tuple[int, ...] = ()) -> None:
    send_bytes(sock, message.encode(), fds)


def send_bytes(sock: socket.socket, data: bytes, fds=()) -> None:
    if fds:
        sock.sendmsg([data], rights(fds))
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it; b"" when the peer is gone."""
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE, RECV_CMSG_SPACE)
    fds = unpack_fds(ancdata)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        close_all(fds)
        raise ProtocolError("message or its descriptors were truncated")
    return data, fds


def unpack_fds(ancdata) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    return fds


def close_all(fds) -> None:
    """Close descriptors that came with a message nobody will take (errors ignored: each is ours)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
