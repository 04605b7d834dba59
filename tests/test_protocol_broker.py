"""The broker channel: every request round-trips, every malformed one is refused,
and replies have one shape (op, errno, body only on success)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasijail.protocol import broker as wire
from wasijail.protocol.broker import decode_request
from wasijail.protocol.setup import Start
from wasijail.protocol.transport import MAX_MESSAGE, ProtocolError
from wasijail.wasi import Errno, WasiErrno

SAMPLES = [
    wire.PathOpen(0, 1, 1 | 8, 1, 2, 0, b"dir/file.txt"),
    wire.PathFilestatGet(3, 0, b"a"),
    wire.PathFilestatSetTimes(1, 1, 10**18, 5, 1 | 4, b"x"),
    wire.PathCreateDirectory(0, b"new"),
    wire.PathRemoveDirectory(0, b"old"),
    wire.PathUnlinkFile(0, b"f"),
    wire.PathRename(0, 1, b"a", b"b"),
    wire.PathLink(0, 1, 2, b"a", b"b"),
    wire.PathSymlink(0, b"target", b"link"),
    wire.PathReadlink(0, b"link"),
    wire.FdReaddir(0, 7, 4096),
    wire.DirFilestatGet(5),
    wire.DirFilestatSetTimes(5, 1, 2, 2 | 8),
    wire.FdFilestatSetTimes(1, 2, 1 | 4),
    wire.DirClose(5),
    wire.DirSync(5),
    wire.Result(0, 3, 10, 20, b"bye"),
    wire.Compiled(0),
    wire.SandboxReport(b"userns: not permitted"),
]


def test_every_message_of_the_channel_is_sampled():
    assert {type(m) for m in SAMPLES} == set(wire.REQUESTS.messages.values())
    assert set(wire.REQUESTS.messages) == set(wire.BrokerOp)


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
    """The setup channel shares the child's socket: its op is no broker op."""
    with pytest.raises(ProtocolError, match="unknown op 1"):
        decode_request(Start(0).encode())


@pytest.mark.parametrize("message,field,value", [
    (SAMPLES[0], "lookupflags", 2), (SAMPLES[0], "oflags", 16), (SAMPLES[0], "fdflags", 32),
    (SAMPLES[1], "lookupflags", 2), (SAMPLES[2], "fstflags", 16), (SAMPLES[7], "lookupflags", 4),
    (SAMPLES[12], "fstflags", 32), (SAMPLES[13], "fstflags", 16),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unknown_flag_bits(message, field, value):
    with pytest.raises(ProtocolError, match=f"{type(message).__name__}.{field}: unknown bits"):
        decode_request(message._replace(**{field: value}).encode())


@pytest.mark.parametrize("path,problem", [
    (b"a\0b", "INVAL"), (b"\xff\xfe", "ILSEQ"), (b"a" * 4097, "NAMETOOLONG"),
])
@pytest.mark.parametrize("make", [
    lambda p: wire.PathUnlinkFile(0, p), lambda p: wire.PathOpen(0, 0, 0, 0, 0, 0, p),
    lambda p: wire.PathRename(0, 0, b"ok", p), lambda p: wire.PathSymlink(0, p, b"ok"),
], ids=["unlink", "open", "rename-new", "symlink-target"])
def test_bad_paths(path, problem, make):
    with pytest.raises(ProtocolError, match=f"not a valid path \\({problem}\\)"):
        decode_request(make(path).encode())


def test_an_empty_path_passes_to_the_broker():
    """The broker answers ENOENT for it, as wasmtime does; it is no protocol violation."""
    assert decode_request(wire.PathUnlinkFile(0, b"").encode()).path == b""


def test_oversized_message():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_request(b"\x0f\x00" + b"\0" * MAX_MESSAGE)


def test_blob_length_past_the_end():
    data = bytearray(wire.PathUnlinkFile(0, b"abc").encode())
    struct.pack_into("<I", data, 2 + 4, 1000)
    with pytest.raises(ProtocolError, match="past the end"):
        decode_request(bytes(data))


def test_readdir_size_bounds():
    for size in (0, wire.READDIR_CHUNK + 1):
        with pytest.raises(ProtocolError, match="max_bytes"):
            decode_request(wire.FdReaddir(0, 0, size).encode())


def test_result_outcome_must_be_known():
    with pytest.raises(ProtocolError, match="outcome"):
        decode_request(wire.Result(9, 0, 0, 0, b"").encode())


def test_sandbox_report_and_artifact_bounds():
    with pytest.raises(ProtocolError, match="SandboxReport.missing"):
        decode_request(wire.SandboxReport(b"x" * (wire.MAX_SANDBOX_REPORT + 1)).encode())
    with pytest.raises(ProtocolError, match="artifact_size"):
        decode_request(wire.Compiled(wire.MAX_ARTIFACT + 1).encode())


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


# -- replies ------------------------------------------------------------------------

BODIES = [
    (wire.PathOpen(0, 0, 0, 0, 0, 0, b"f"), wire.OpenReply(wire.FileKind.DIRECTORY, 7, 3)),
    (wire.PathFilestatGet(0, 0, b"f"), wire.StatReply(1, 2, 4, 1, 10, 2**64 - 1, 0, 5)),
    (wire.DirFilestatGet(0), wire.StatReply(1, 2, 3, 1, 10, 0, 0, 0)),
    (wire.PathReadlink(0, b"l"), wire.BytesReply(b"target")),
    (wire.FdReaddir(0, 0, 100), wire.BytesReply(b"\0" * 30)),
]


@pytest.mark.parametrize("request_,body", BODIES, ids=lambda v: type(v).__name__)
def test_reply_round_trip(request_, body):
    data = wire.encode_reply(request_.OP, 0, body)
    assert wire.reply_errno(data) == 0
    assert wire.decode_reply(request_, type(body), data) == body


@pytest.mark.parametrize("request_", [r for r, _ in BODIES] + [wire.DirClose(1), wire.PathUnlinkFile(0, b"x")],
                         ids=lambda r: type(r).__name__)
def test_an_error_reply_is_the_head_alone_whatever_was_asked(request_):
    data = wire.encode_reply(request_.OP, Errno.NOTCAPABLE)
    assert data == struct.pack("<HH", request_.OP, Errno.NOTCAPABLE)
    assert wire.reply_errno(data) == Errno.NOTCAPABLE
    with pytest.raises(WasiErrno) as caught:
        wire.decode_reply(request_, None, data)
    assert caught.value.errno is Errno.NOTCAPABLE


def test_errno_only_success():
    data = wire.encode_reply(wire.BrokerOp.DIR_CLOSE, 0)
    assert wire.decode_reply(wire.DirClose(1), None, data) is None
    with pytest.raises(ProtocolError, match="with a body"):
        wire.decode_reply(wire.DirClose(1), None, data + b"\0")


@pytest.mark.parametrize("data,problem", [
    (struct.pack("<HH", wire.BrokerOp.DIR_SYNC, 0), "a reply to op 24"),  # another request's reply
    (struct.pack("<H", wire.BrokerOp.DIR_CLOSE), "shorter than its head"),
    (struct.pack("<HH", wire.BrokerOp.DIR_CLOSE, 77), "errno 77"),  # no such WASI errno
    (struct.pack("<HHI", wire.BrokerOp.DIR_CLOSE, 8, 0), "errno 8 of 8 bytes"),  # an error with a body
])
def test_malformed_replies(data, problem):
    with pytest.raises(ProtocolError, match=problem):
        wire.decode_reply(wire.DirClose(1), None, data)
