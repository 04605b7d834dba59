"""The wire protocol: round trips, and every malformed message refused."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasijail import protocol
from wasijail.protocol import ProtocolError, decode_request

SAMPLES = [
    protocol.PathOpen(0, 1, 1 | 8, 1, 2, 0, b"dir/file.txt"),
    protocol.PathFilestatGet(3, 0, b"a"),
    protocol.PathFilestatSetTimes(1, 1, 10**18, 5, 1 | 4, b"x"),
    protocol.PathCreateDirectory(0, b"new"),
    protocol.PathRemoveDirectory(0, b"old"),
    protocol.PathUnlinkFile(0, b"f"),
    protocol.PathRename(0, 1, b"a", b"b"),
    protocol.PathLink(0, 1, 2, b"a", b"b"),
    protocol.PathSymlink(0, b"target", b"link"),
    protocol.PathReadlink(0, b"link"),
    protocol.FdReaddir(0, 7, 4096),
    protocol.DirFilestatGet(5),
    protocol.DirFilestatSetTimes(5, 1, 2, 2 | 8),
    protocol.DirClose(5),
    protocol.DirSync(5),
    protocol.Result(0, 3, 10, 20, b"bye"),
    protocol.Compiled(0),
    protocol.SandboxReport(b"userns: not permitted"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    assert decode_request(message.encode()) == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_truncation_is_refused(message):
    data = message.encode()
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            decode_request(data[:cut])


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_trailing_bytes_are_refused(message):
    with pytest.raises(ProtocolError, match="trailing"):
        decode_request(message.encode() + b"\0")


def test_unknown_op():
    with pytest.raises(ProtocolError, match="unknown op 999"):
        decode_request(struct.pack("<H", 999) + b"\0" * 16)


def test_start_is_not_a_request():
    with pytest.raises(ProtocolError, match="unknown op"):
        decode_request(protocol.Start(0).encode())


@pytest.mark.parametrize("field,value", [
    ("lookupflags", 2), ("oflags", 16), ("fdflags", 32),
])
def test_unknown_flag_bits(field, value):
    message = dataclasses.replace(SAMPLES[0], **{field: value})
    with pytest.raises(ProtocolError, match=f"PathOpen.{field}: unknown bits"):
        decode_request(message.encode())


@pytest.mark.parametrize("path,problem", [
    (b"a\0b", "NUL"), (b"\xff\xfe", "UTF-8"), (b"a" * 4097, "longer than"),
])
def test_bad_paths(path, problem):
    with pytest.raises(ProtocolError, match=problem):
        decode_request(protocol.PathUnlinkFile(0, path).encode())


def test_oversized_message():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_request(b"\x0f\x00" + b"\0" * protocol.MAX_MESSAGE)


def test_blob_length_past_the_end():
    data = bytearray(protocol.PathUnlinkFile(0, b"abc").encode())
    struct.pack_into("<I", data, 2 + 4, 1000)
    with pytest.raises(ProtocolError, match="past the end"):
        decode_request(bytes(data))


def test_readdir_size_bounds():
    for size in (0, protocol.READDIR_CHUNK + 1):
        with pytest.raises(ProtocolError, match="max_bytes"):
            decode_request(protocol.FdReaddir(0, 0, size).encode())


def test_result_outcome_must_be_known():
    with pytest.raises(ProtocolError, match="outcome"):
        decode_request(protocol.Result(9, 0, 0, 0, b"").encode())


def test_setup_round_trip():
    setup = protocol.Setup(b"m.wasm", True, (b"a", b"b c"), (b"X=1",), (b".", b"/tmp"), (False, True),
                           b"f", (b"1",), 1 << 20, 10, 5, 64, 1 << 30)
    assert protocol.Setup.decode(setup.encode()) == setup


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data):
    try:
        message = decode_request(data)
    except ProtocolError:
        return
    assert decode_request(message.encode()) == message


@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_corrupted_byte_raises_only_protocol_error_or_decodes(message, position, value):
    data = bytearray(message.encode())
    data[position % len(data)] = value
    try:
        decode_request(bytes(data))
    except ProtocolError:
        pass
