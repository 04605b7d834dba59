"""Framing and codec shared by every channel.

Transport: AF_UNIX SOCK_SEQPACKET sockets, so every message keeps its
boundaries. A record is

    head (u16 op, ...) | fixed fields | u32 length of each blob | the blobs' bytes

all little-endian. Its layout is compiled once per class into one
`struct.Struct` for the head, the fixed fields and the blob lengths, so
encoding is one `pack` and the blobs after it, and decoding one
`unpack_from`, one sum of the lengths against the size and a slice per blob:
no per-field work on the hot path. Decoding checks the exact length and then the record's checks,
declared as data (`Record`); anything malformed is a `ProtocolError`.
"""

from __future__ import annotations

import array
import collections
import socket
import struct
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from ..fds import close_quietly
from ..wasi import path_errno

# Large enough for two maximal paths or one readdir chunk; bigger is a violation.
MAX_MESSAGE = 64 * 1024
# The most descriptors one message carries (`Spawn`: broker, stdio, violation pipe, two cgroups).
MAX_FDS = 7

# recvmsg's flags for a cut message, as a plain int: socket's MsgFlag is an IntFlag,
# whose `|` and `&` run enum's Python code (~2 us on every message).
TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
HEADER = struct.Struct("<H")  # the op
RECV_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class ProtocolError(Exception):
    """A message that does not follow this protocol: the peer is broken or hostile."""


@dataclass(frozen=True)
class Layout:
    body: struct.Struct  # the fixed fields and each blob's length, after the head: one unpack
    ints: int  # how many fixed fields
    blobs: int  # how many blobs
    checked: bool  # whether decoding has checks to run (validate)


class Record:
    """Fixed int fields then trailing blobs: an immutable `@record` plus its wire layout.

    Subclasses declare `FIXED` (the struct of the leading int fields, in
    declaration order) and `BLOBS` (names of the trailing bytes fields), and
    what decoding checks beyond the layout, as data: `PATHS` (blobs that are
    guest paths, held to the WASI path rule), `FLAGS` ((field, the bits it may
    hold)) and `RANGES` ((field, lowest, highest): an int's value, a blob's
    length). The two kinds of record below say what precedes the fields.
    """

    __slots__ = ()  # a record's fields are its tuple's; no instance dict
    _fields: ClassVar[tuple[str, ...]]  # made by @record

    # The head's struct format, and the encoder `layout_of` compiles for each class:
    # (its name, its parameters after self, the head's values).
    HEAD: ClassVar[str]
    ENCODER: ClassVar[tuple[str, str, str]]
    FIXED: ClassVar[struct.Struct]
    BLOBS: ClassVar[tuple[str, ...]] = ()
    PATHS: ClassVar[tuple[str, ...]] = ()
    FLAGS: ClassVar[tuple[tuple[str, int], ...]] = ()
    RANGES: ClassVar[tuple[tuple[str, int, int], ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # An encoder is compiled for one class's fields: a subclass starts from the generic one.
        encoder = getattr(cls, "ENCODER", None)
        if encoder is not None and encoder[0] not in cls.__dict__:
            setattr(cls, encoder[0], _GENERIC[encoder[0]])

    @classmethod
    def decode_body(cls, data: bytes | memoryview, offset: int):
        layout = LAYOUTS.get(cls) or layout_of(cls)
        try:
            values = layout.body.unpack_from(data, offset)
        except struct.error as exc:
            raise ProtocolError(f"{cls.__name__}: truncated") from exc
        offset += layout.body.size
        if layout.blobs:
            ints = layout.ints
            lengths = values[ints:]
            end = offset + sum(lengths)
            if end > len(data):
                raise ProtocolError(f"{cls.__name__}: blob lengths {lengths} past the end")
            if layout.blobs == 1:  # the usual case (a path): no loop
                values = (*values[:ints], bytes(data[offset:end]))
            else:
                blobs = []
                for length in lengths:
                    blobs.append(bytes(data[offset:offset + length]))
                    offset += length
                values = (*values[:ints], *blobs)
            offset = end
        if offset != len(data):
            raise ProtocolError(f"{cls.__name__}: {len(data) - offset} trailing bytes")
        record = cls(*values)  # fields are declared ints first, then blobs (checked by layout_of)
        if layout.checked:
            record.validate()
        return record

    def validate(self) -> None:
        for name in self.PATHS:
            problem = path_errno(getattr(self, name))
            if problem is not None:
                raise ProtocolError(f"{type(self).__name__}.{name}: not a valid path ({problem.name})")
        for name, allowed in self.FLAGS:
            value = getattr(self, name)
            if value & ~allowed:
                raise ProtocolError(f"{type(self).__name__}.{name}: unknown bits {value & ~allowed:#x}")
        for name, lowest, highest in self.RANGES:
            value = getattr(self, name)
            size = len(value) if isinstance(value, bytes) else value
            if not lowest <= size <= highest:
                raise ProtocolError(f"{type(self).__name__}.{name}: {size} not in {lowest}..{highest}")


LAYOUTS: dict[type, Layout] = {}  # by class, made by layout_of


def layout_of(cls: type[Record]) -> Layout:
    """The layout of `cls`, made once per class, and its encoder.

    The encoder is compiled from source, as dataclasses compiles `__init__`:
    one `pack` of the head, the fields and the blob lengths, then the blobs,
    with no loop and no call but that (a generic one costs half again as much).
    """
    names = list(cls._fields)
    ints = [n for n in names if n not in cls.BLOBS]
    if names != ints + list(cls.BLOBS):
        raise TypeError(f"{cls.__name__}: blob fields must come last, in BLOBS order")
    body = cls.FIXED.format.lstrip("<") + "I" * len(cls.BLOBS)
    name, params, head = cls.ENCODER
    values = ", ".join([head, *(f"self.{n}" for n in ints), *(f"len(self.{n})" for n in cls.BLOBS)])
    source = (f"def {name}(self{params}):\n"
              f"    return pack({values}){''.join(f' + self.{n}' for n in cls.BLOBS)}\n")
    namespace: dict = {"pack": struct.Struct("<" + cls.HEAD + body).pack}
    exec(compile(source, f"<{cls.__name__}.{name}>", "exec"), namespace)
    setattr(cls, name, namespace[name])
    checked = bool(cls.PATHS or cls.FLAGS or cls.RANGES) or cls.validate is not Record.validate
    layout = LAYOUTS[cls] = Layout(struct.Struct("<" + body), len(ints), len(cls.BLOBS), checked)
    return layout


R = TypeVar("R", bound=type)


def record(cls: R) -> R:
    """Make `cls`'s annotated fields (after its base record's, if any) an immutable named tuple.

    What `@dataclass(frozen=True, slots=True)` gave a record (construction by
    position or name, read-only fields, equality, `_replace`), at a small part
    of its cost: dataclasses compiles half a dozen methods for every class, which
    for the protocol's ~30 records took 15-18 ms of each process's start (the
    CLI's and the fork server's, before any child runs); a named tuple is made in
    ~40 us, and builds and reads its fields in C.
    """
    own = [name for name, kind in cls.__dict__.get("__annotations__", {}).items()
           if not str(kind).startswith(("ClassVar", "typing.ClassVar"))]
    namespace = {key: value for key, value in cls.__dict__.items() if key not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = ()
    # A field's value in the class body is its default (and must not hide the field).
    defaults = [namespace.pop(name) for name in own if name in namespace]
    bases = cls.__bases__
    if own:
        fields = (*getattr(cls, "_fields", ()), *own)
        bases = (collections.namedtuple(cls.__name__, fields, defaults=defaults), *bases)
    return type(cls)(cls.__name__, bases, namespace)


class Message(Record):
    """A record that travels on its own, after its channel's `OP` (see each channel's op enum)."""

    __slots__ = ()

    HEAD = "H"
    ENCODER = ("encode", "", "self.OP")
    OP: ClassVar[int]
    FDS: ClassVar[int] = 0  # descriptors that travel with it (SCM_RIGHTS); any other count is a violation

    def encode(self) -> bytes:
        layout_of(type(self))  # compiles this class's own encode, which answers from now on
        return self.encode()


class Reply(Record):
    """A record that answers a request: after the op it answers and an errno (0 here)."""

    __slots__ = ()

    HEAD = "HH"
    ENCODER = ("encode_reply", ", op", "op, 0")

    def encode_reply(self, op: int) -> bytes:
        layout_of(type(self))  # compiles this class's own encode_reply, which answers from now on
        return self.encode_reply(op)


_GENERIC = {"encode": Message.encode, "encode_reply": Reply.encode_reply}


class Channel:
    """The messages one direction of a channel may carry, by op; `decode` takes one in."""

    def __init__(self, name: str, messages) -> None:
        self.name = name
        self.messages: dict[int, type[Message]] = {cls.OP: cls for cls in messages}

    def decode(self, data: bytes | memoryview) -> Message:
        """Decode and validate one message, or raise ProtocolError."""
        if len(data) < HEADER.size:
            raise ProtocolError(f"{self.name} message shorter than its header")
        if len(data) > MAX_MESSAGE:
            raise ProtocolError(f"{self.name} message of {len(data)} bytes exceeds {MAX_MESSAGE}")
        (op,) = HEADER.unpack_from(data, 0)
        cls = self.messages.get(op)
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
    if fds:
        sock.sendmsg([message.encode()], rights(fds))
    else:
        sock.send(message.encode())


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it; b"" when the peer is gone."""
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE, RECV_CMSG_SPACE)
    fds = unpack_fds(ancdata)
    if flags & TRUNCATED:
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
        close_quietly(fd)
