"""Memory layouts and import signatures of the two WASI snapshots, side by side.

preview0 (`wasi_unstable`) differs from preview1 (`wasi_snapshot_preview1`) in:
  * `fd_seek`'s whence numbering (CUR, END, SET instead of SET, CUR, END);
  * `filestat`: 56 bytes with a u32 `nlink` instead of 64 with a u64;
  * `subscription`: the clock variant carries an extra u64 `identifier`,
    making it 56 bytes instead of 48;
  * it has no `sock_accept`.
Everything else (iovec, fdstat, dirent, prestat, event) is shared.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# --- shared layouts -------------------------------------------------------

IOVEC = struct.Struct("<II")  # buf, buf_len
FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, flags, rights_base, rights_inheriting
DIRENT = struct.Struct("<QQIBxxx")  # d_next, d_ino, d_namlen, d_type
PRESTAT = struct.Struct("<BxxxI")  # tag, pr_name_len
EVENT = struct.Struct("<QHBxxxxxQHxxxxxx")  # userdata, error, type, nbytes, flags
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")

assert (IOVEC.size, FDSTAT.size, DIRENT.size, PRESTAT.size, EVENT.size) == (8, 24, 24, 8, 32)


@dataclass(frozen=True)
class SubscriptionLayout:
    """Where the fields of a `subscription` sit (preview0 and preview1 differ)."""

    size: int
    head: struct.Struct  # userdata u64, tag u8
    clock: struct.Struct  # clock_id, timeout, precision, flags (unpacked at clock_offset)
    clock_offset: int
    fd: struct.Struct  # file_descriptor (unpacked at fd_offset)
    fd_offset: int


@dataclass(frozen=True)
class Snapshot:
    """One WASI snapshot: its import module name and the layouts that differ."""

    module: str
    filestat: struct.Struct  # dev, ino, filetype, nlink, size, atim, mtim, ctim
    nlink_max: int  # filestat's nlink field: u64 in preview1, u32 in preview0
    whence: dict[int, int]  # WASI whence -> os.SEEK_*
    subscription: SubscriptionLayout
    functions: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


# --- import signatures ----------------------------------------------------

I32, I64 = "i32", "i64"
_E = (I32,)  # every WASI call returns an errno, except proc_exit

PREVIEW1_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "args_get": ((I32, I32), _E),
    "args_sizes_get": ((I32, I32), _E),
    "environ_get": ((I32, I32), _E),
    "environ_sizes_get": ((I32, I32), _E),
    "clock_res_get": ((I32, I32), _E),
    "clock_time_get": ((I32, I64, I32), _E),
    "fd_advise": ((I32, I64, I64, I32), _E),
    "fd_allocate": ((I32, I64, I64), _E),
    "fd_close": ((I32,), _E),
    "fd_datasync": ((I32,), _E),
    "fd_fdstat_get": ((I32, I32), _E),
    "fd_fdstat_set_flags": ((I32, I32), _E),
    "fd_fdstat_set_rights": ((I32, I64, I64), _E),
    "fd_filestat_get": ((I32, I32), _E),
    "fd_filestat_set_size": ((I32, I64), _E),
    "fd_filestat_set_times": ((I32, I64, I64, I32), _E),
    "fd_pread": ((I32, I32, I32, I64, I32), _E),
    "fd_prestat_get": ((I32, I32), _E),
    "fd_prestat_dir_name": ((I32, I32, I32), _E),
    "fd_pwrite": ((I32, I32, I32, I64, I32), _E),
    "fd_read": ((I32, I32, I32, I32), _E),
    "fd_readdir": ((I32, I32, I32, I64, I32), _E),
    "fd_renumber": ((I32, I32), _E),
    "fd_seek": ((I32, I64, I32, I32), _E),
    "fd_sync": ((I32,), _E),
    "fd_tell": ((I32, I32), _E),
    "fd_write": ((I32, I32, I32, I32), _E),
    "path_create_directory": ((I32, I32, I32), _E),
    "path_filestat_get": ((I32, I32, I32, I32, I32), _E),
    "path_filestat_set_times": ((I32, I32, I32, I32, I64, I64, I32), _E),
    "path_link": ((I32, I32, I32, I32, I32, I32, I32), _E),
    "path_open": ((I32, I32, I32, I32, I32, I64, I64, I32, I32), _E),
    "path_readlink": ((I32, I32, I32, I32, I32, I32), _E),
    "path_remove_directory": ((I32, I32, I32), _E),
    "path_rename": ((I32, I32, I32, I32, I32, I32), _E),
    "path_symlink": ((I32, I32, I32, I32, I32), _E),
    "path_unlink_file": ((I32, I32, I32), _E),
    "poll_oneoff": ((I32, I32, I32, I32), _E),
    "proc_exit": ((I32,), ()),
    "proc_raise": ((I32,), _E),
    "sched_yield": ((), _E),
    "random_get": ((I32, I32), _E),
    "sock_accept": ((I32, I32, I32), _E),
    "sock_recv": ((I32, I32, I32, I32, I32, I32), _E),
    "sock_send": ((I32, I32, I32, I32, I32), _E),
    "sock_shutdown": ((I32, I32), _E),
}
PREVIEW0_FUNCTIONS = {k: v for k, v in PREVIEW1_FUNCTIONS.items() if k != "sock_accept"}

PREVIEW1 = Snapshot(
    module="wasi_snapshot_preview1",
    filestat=struct.Struct("<QQBxxxxxxxQQQQQ"),
    nlink_max=(1 << 64) - 1,
    whence={0: os.SEEK_SET, 1: os.SEEK_CUR, 2: os.SEEK_END},
    subscription=SubscriptionLayout(
        size=48,
        head=struct.Struct("<QB"),
        clock=struct.Struct("<IxxxxQQH"),
        clock_offset=16,
        fd=struct.Struct("<I"),
        fd_offset=16,
    ),
    functions=PREVIEW1_FUNCTIONS,
)

PREVIEW0 = Snapshot(
    module="wasi_unstable",
    filestat=struct.Struct("<QQBxxxIQQQQ"),
    nlink_max=(1 << 32) - 1,
    whence={0: os.SEEK_CUR, 1: os.SEEK_END, 2: os.SEEK_SET},
    subscription=SubscriptionLayout(
        size=56,
        head=struct.Struct("<QB"),
        # preview0's clock variant starts with a u64 `identifier` we skip.
        clock=struct.Struct("<IxxxxQQH"),
        clock_offset=24,
        fd=struct.Struct("<I"),
        fd_offset=16,
    ),
    functions=PREVIEW0_FUNCTIONS,
)

assert PREVIEW1.filestat.size == 64 and PREVIEW0.filestat.size == 56

SNAPSHOTS: tuple[Snapshot, ...] = (PREVIEW1, PREVIEW0)
