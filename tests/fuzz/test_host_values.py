"""Every value a host stat can produce reaches the guest as a valid WASI filestat.

Host file systems report times before 1970 (negative), far in the future
(past WASI's u64 nanoseconds), sizes and inode numbers up to 2**64-1 and any
mode. Hypothesis feeds such stats to the broker's stat handler, encodes and
decodes the reply as the wire carries it, and has the child write it into
guest memory in both snapshots' layouts (and the child's own fstat path for
donated files): nothing raises, and each field is the host's value clamped to
WASI's range (times before 1970 are 0, as wasmtime reports them). The same
holds for a host clock read by clock_time_get, and for the broker's handle
numbers, which travel as u32.
"""

from __future__ import annotations

import os
import time
from unittest import mock

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

from wasijail.protocol import broker as channel
from wasijail.broker.handlers import Broker
from wasijail.child.memory import GuestMemory
from wasijail.child.wasi import WasiHost, WasiState
from wasijail.wasi import SNAPSHOTS, TIMESTAMP_MAX, U64_MAX, Oflags, filetype_of_mode
from wasijail.wasi import U64 as U64_LAYOUT

U64 = st.integers(0, U64_MAX)
EXTREME_U64 = st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, U64_MAX])
# A host time in ns: time_t seconds (i64) times 10**9, so far beyond 64 bits either way.
TIMES = st.one_of(st.integers(-(2**63) * 10**9, 2**63 * 10**9),
                  st.sampled_from([-1, -(10**9), -(2**63), 0, TIMESTAMP_MAX, TIMESTAMP_MAX + 1,
                                   2**63 * 10**9]))
MODES = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0o010644, 0o020600, 0o060600, 0o140777,
                                                              0o170000, 0o177777, 0]))
SIZES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 2**63 - 1]))


def fake_stat(mode, ino, dev, nlink, size, atime, mtime, ctime) -> os.stat_result:
    seconds = [t // 10**9 for t in (atime, mtime, ctime)]
    return os.stat_result((mode, ino, dev, nlink, 0, 0, size, *seconds, *map(float, seconds),
                           atime, mtime, ctime))


stats = st.builds(fake_stat, MODES, st.one_of(U64, EXTREME_U64), st.one_of(U64, EXTREME_U64),
                  st.one_of(U64, EXTREME_U64), SIZES, TIMES, TIMES, TIMES)


def _time(ns: int) -> int:
    return min(max(ns, 0), TIMESTAMP_MAX)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    broker = Broker([(os.open(root, os.O_RDONLY | os.O_DIRECTORY), True)])
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def hosts():
    """One WasiHost per snapshot over a page of real guest memory."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, '(module (memory (export "memory") 1))'), [])
    state = WasiState(args=(), env=(), broker=None, preopens=[], open_files=16)
    state.memory = GuestMemory(store, instance.exports(store)["memory"])
    return [WasiHost(state, snapshot) for snapshot in SNAPSHOTS]


@settings(max_examples=300, deadline=None)
@given(st=stats)
def test_every_host_stat_reaches_the_guest_clamped(broker, hosts, st):
    with mock.patch.object(os, "fstat", return_value=st):  # the handler's one host call
        request = channel.DirFilestatGet(0)
        reply = broker.dispatch(request)
    assert (reply.errno, reply.fds) == (0, ())
    wire = channel.decode_reply(request, channel.StatReply, channel.encode_reply(request.OP, 0, reply.body))
    assert wire == reply.body
    expected = (min(st.st_dev, U64_MAX), min(st.st_ino, U64_MAX), filetype_of_mode(st.st_mode),
                min(st.st_nlink, U64_MAX), min(max(st.st_size, 0), U64_MAX), _time(st.st_atime_ns),
                _time(st.st_mtime_ns), _time(st.st_ctime_ns))
    assert (wire.dev, wire.ino, wire.filetype, wire.nlink, wire.size, wire.atim, wire.mtim,
            wire.ctim) == expected
    for host in hosts:
        host._write_filestat(64, wire)
        through_broker = host.mem.read(64, host.filestat.size)
        host._write_host_stat(256, st)  # a donated file's fd_filestat_get, in the child
        assert host.mem.read(256, host.filestat.size) == through_broker
        dev, ino, filetype, nlink, size, atim, mtim, ctim = host.filestat.unpack(through_broker)
        assert (dev, ino, filetype, size, atim, mtim, ctim) == expected[:3] + expected[4:]
        assert nlink == min(expected[3], host.snapshot.nlink_max)


def test_handle_numbers_wrap_to_a_free_one(tmp_path):
    """Handle numbers travel as u32: a child that opened 2**32 directories gets a free number, not a crash."""
    (tmp_path / "d").mkdir()
    broker = Broker([(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), False)])
    broker._next = 2**32 - 1
    request = channel.PathOpen(0, 1, int(Oflags.DIRECTORY), 0, 0, 0, b"d")
    opened = [broker.dispatch(request) for _ in range(3)]
    assert [r.errno for r in opened] == [0, 0, 0]
    assert [r.body.handle for r in opened] == [2**32 - 1, 1, 2]  # 0 is the preopen
    for r in opened:
        assert channel.decode_reply(request, channel.OpenReply, channel.encode_reply(request.OP, 0, r.body)) == r.body
    broker.close()


@pytest.mark.parametrize("host_ns, guest_ns", [(-5, 0), (-(2**63), 0), (2**64 + 7, TIMESTAMP_MAX), (123, 123)])
def test_a_host_clock_outside_wasi_range_is_clamped(hosts, host_ns, guest_ns):
    for host in hosts:
        with mock.patch.object(time, "clock_gettime_ns", return_value=host_ns):
            assert host.clock_time_get(0, 0, 64) == 0  # REALTIME
        assert host.mem.unpack(U64_LAYOUT, 64) == (guest_ns,)
