"""Framing shared by every channel: layouts, send/receive with descriptors."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

import pytest

from wasijail.protocol import transport
from wasijail.protocol.transport import Message, ProtocolError, compile_layout


@dataclass(frozen=True, slots=True)
class _Sample(Message):
    OP = 77
    FIXED = struct.Struct("<IQ")
    BLOBS = ("name", "data")
    PATHS = ("name",)
    a: int
    b: int
    name: bytes
    data: bytes


def test_layout_is_one_struct_for_head_and_fixed_fields():
    layout = compile_layout(_Sample, "HH")
    assert layout.head.format == "<HHIQ"
    assert layout.ints(_Sample(1, 2, b"n", b"d")) == (1, 2)
    assert _Sample(1, 2, b"n", b"dd").encode() == struct.pack("<HIQI", 77, 1, 2, 1) + b"n" + struct.pack("<I", 2) + b"dd"


def test_blobs_must_come_last():
    @dataclass(frozen=True)
    class Bad(Message):
        OP = 1
        FIXED = struct.Struct("<I")
        BLOBS = ("name",)
        name: bytes
        a: int

    with pytest.raises(TypeError, match="blob fields must come last"):
        compile_layout(Bad, "H")


def test_decode_by_table():
    table = {_Sample.OP: _Sample}
    message = _Sample(1, 2, b"dir/f", b"\0\xff")
    assert transport.decode(message.encode(), table, "test") == message
    with pytest.raises(ProtocolError, match="unknown op 78"):
        transport.decode(struct.pack("<H", 78), table, "test")
    with pytest.raises(ProtocolError, match="shorter than its header"):
        transport.decode(b"\x4d", table, "test")
    with pytest.raises(ProtocolError, match="not a valid path"):  # PATHS are checked, other blobs not
        transport.decode(_Sample(1, 2, b"\xff", b"").encode(), table, "test")


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
