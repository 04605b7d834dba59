"""fd_readdir streamed by cookie (wasijail/broker/readdir.py): preview1's cookies
(`.` and `..` first, cookies are entry indexes, past the end is nothing), and
a read from any cookie costs about what it returns, in time and in memory."""

from __future__ import annotations

import os

import pytest

from wasijail.broker import readdir
from wasijail.broker.readdir import DirCursor
from wasijail.wasi import DIRENT

ENTRIES = 3000


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    path = tmp_path_factory.mktemp("listing")
    for i in range(ENTRIES):
        (path / f"entry-{i:05}").touch()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def dirents(data: bytes) -> list[tuple[int, bytes]]:
    """(d_next, name) of each whole dirent."""
    out, offset = [], 0
    while offset + DIRENT.size <= len(data):
        d_next, _, namlen, _ = DIRENT.unpack_from(data, offset)
        if offset + DIRENT.size + namlen > len(data):
            break
        out.append((d_next, data[offset + DIRENT.size:offset + DIRENT.size + namlen]))
        offset += DIRENT.size + namlen
    return out


def whole_listing(fd: int) -> list[bytes]:
    cursor, names, cookie = DirCursor(), [], 0
    while True:
        found = dirents(cursor.read(fd, cookie, 1000, (1, 2)))
        if not found:
            return names
        names += [name for _, name in found]
        cookie = found[-1][0]


@pytest.fixture
def counted(monkeypatch):
    """How many entries the cursor read from the kernel."""
    seen = [0]
    original = readdir._entries

    def counting(*args):
        for item in original(*args):
            seen[0] += 1
            yield item

    monkeypatch.setattr(readdir, "_entries", counting)
    return seen


def test_dots_first_then_every_entry_once(directory):
    names = whole_listing(directory)
    assert names[:2] == [b".", b".."]
    assert sorted(names[2:]) == [f"entry-{i:05}".encode() for i in range(ENTRIES)]


@pytest.mark.parametrize("cookie", [0, 1, 2, 3, 255, 256, 257, 1234, ENTRIES, ENTRIES + 1])
def test_a_cookie_is_the_index_of_the_entry_it_starts_at(directory, cookie):
    names = whole_listing(directory)
    found = dirents(DirCursor().read(directory, cookie, 200, (1, 2)))
    assert found[0] == (cookie + 1, names[cookie])


@pytest.mark.parametrize("cookie", [ENTRIES + 2, ENTRIES + 1000, 2**64 - 1])
def test_a_cookie_past_the_end_gives_nothing(directory, cookie):
    assert DirCursor().read(directory, cookie, 4096, (1, 2)) == b""


def test_resuming_costs_what_the_reply_returns(directory, counted):
    cursor = DirCursor()
    first = dirents(cursor.read(directory, 0, 4096, (1, 2)))
    counted[0] = 0
    # Resume, as wasi-libc does, at the last entry the guest saw whole.
    second = dirents(cursor.read(directory, first[-1][0], 4096, (1, 2)))
    assert counted[0] <= len(second) + 2  # and the one cut at the end, and the next reply's first


def test_any_cookie_costs_at_most_a_checkpoint_gap_more(directory, counted):
    cursor = DirCursor()
    whole = whole_listing(directory)
    cursor.read(directory, 0, 4096, (1, 2))
    cursor.read(directory, ENTRIES + 5, 4096, (1, 2))  # one pass to the end
    for cookie in (2900, 17, 1500, 2999):
        counted[0] = 0
        found = dirents(cursor.read(directory, cookie, 100, (1, 2)))
        assert found[0][1] == whole[cookie]
        assert counted[0] <= readdir.CHECKPOINT_EVERY + len(found) + 2


def test_the_end_once_known_costs_nothing(directory, counted):
    cursor = DirCursor()
    cursor.read(directory, 2, 4096, (1, 2))
    cursor.read(directory, ENTRIES + 1, 4096, (1, 2))  # reads to the end once
    counted[0] = 0
    assert cursor.read(directory, 2**64 - 1, 4096, (1, 2)) == b""
    assert counted[0] == 0


def test_checkpoints_stay_bounded_however_large_the_directory(directory, monkeypatch):
    monkeypatch.setattr(readdir, "CHECKPOINT_EVERY", 8)
    monkeypatch.setattr(readdir, "MAX_CHECKPOINTS", 16)
    cursor = DirCursor()
    cursor.read(directory, 2, 100, (1, 2))
    cursor.read(directory, ENTRIES + 1, 100, (1, 2))
    assert len(cursor._checkpoints) <= 16
    assert cursor._every >= ENTRIES // 16  # spaced out to cover the whole directory
    names = whole_listing(directory)
    assert dirents(cursor.read(directory, 2500, 100, (1, 2)))[0][1] == names[2500]
