"""Framing shared by every channel: layouts, send/receive with descriptors."""

from __future__ import annotations

import os
import socket
import struct
import pytest

from wasijail.protocol import transport
from wasijail.protocol.transport import Channel, Message, ProtocolError, layout_of, record


@record
class _Sample(Message):
    OP = 77
    FIXED = struct.Struct("<IQ")
    BLOBS = ("name", "data")
    PATHS = ("name",)
    a: int
    b: int
    name: bytes
    data: bytes


def test_layout_is_one_struct_for_head_fields_and_blob_lengths():
    layout = layout_of(_Sample)
    assert (layout.body.format, layout.ints) == ("<IQII", 2)
    assert _Sample(1, 2, b"n", b"dd").encode() == struct.pack("<HIQII", 77, 1, 2, 1, 2) + b"n" + b"dd"
    assert "encode" in _Sample.__dict__  # compiled for this class alone


def test_a_subclass_compiles_its_own_encoder():
    @record
    class Longer(_Sample):
        OP = 78
        BLOBS = ("name", "data", "extra")
        extra: bytes = b""

    assert _Sample(1, 2, b"n", b"").encode()  # the parent's encoder exists first
    longer = Longer(1, 2, b"n", b"", b"xyz")
    assert longer.encode() == struct.pack("<HIQIII", 78, 1, 2, 1, 0, 3) + b"nxyz"
    assert Channel("test", (Longer,)).decode(longer.encode()) == longer


def test_a_record_is_immutable_by_position_or_name_with_defaults_after_its_parents_fields():
    @record
    class Longer(_Sample):
        OP = 79
        BLOBS = ("name", "data", "extra")
        extra: bytes = b"x"

    sample = Longer(1, b=2, name=b"n", data=b"d")
    assert (sample.a, sample.b, sample.name, sample.data, sample.extra) == (1, 2, b"n", b"d", b"x")
    assert Longer._fields == ("a", "b", "name", "data", "extra") and Longer.OP == 79
    with pytest.raises(AttributeError):
        sample.a = 5
    with pytest.raises(AttributeError):
        sample.other = 5  # no instance dict: nothing can be added after validation either
    assert sample._replace(a=3) == Longer(3, 2, b"n", b"d", b"x")
    assert isinstance(sample, Message) and isinstance(sample, _Sample)


def test_blobs_must_come_last():
    @record
    class Bad(Message):
        OP = 1
        FIXED = struct.Struct("<I")
        BLOBS = ("name",)
        name: bytes
        a: int

    with pytest.raises(TypeError, match="blob fields must come last"):
        layout_of(Bad)


def test_a_channel_decodes_its_messages_and_refuses_the_rest():
    channel = Channel("test", (_Sample,))
    message = _Sample(1, 2, b"dir/f", b"\0\xff")
    assert channel.decode(message.encode()) == message
    with pytest.raises(ProtocolError, match="unknown op 78"):
        channel.decode(struct.pack("<H", 78))
    with pytest.raises(ProtocolError, match="shorter than its header"):
        channel.decode(b"\x4d")
    with pytest.raises(ProtocolError, match="not a valid path"):  # PATHS are checked, other blobs not
        channel.decode(_Sample(1, 2, b"\xff", b"").encode())
    data = bytearray(message.encode())
    data[-1:] = b""
    with pytest.raises(ProtocolError, match="past the end"):
        channel.decode(bytes(data))
    with pytest.raises(ProtocolError, match="1 trailing bytes"):
        channel.decode(message.encode() + b"x")


def test_send_and_receive_carry_descriptors():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        transport.send(ours, _Sample(1, 2, b"n", b""), (w,))
        data, fds = transport.receive(theirs)
        assert data == _Sample(1, 2, b"n", b"").encode() and len(fds) == 1
        os.write(fds[0], b"x")
        assert os.read(r, 1) == b"x"
        transport.close_all(fds)
        ours.close()
        assert transport.receive(theirs) == (b"", [])  # the peer is gone
    finally:
        for fd in (r, w):
            os.close(fd)
        theirs.close()


def test_a_truncated_message_is_refused_and_its_descriptors_closed():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        ours.sendmsg([b"\0" * (transport.MAX_MESSAGE + 1)], transport.rights([w]))
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ProtocolError, match="truncated"):
            transport.receive(theirs)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        for fd in (r, w):
            os.close(fd)
        ours.close()
        theirs.close()
