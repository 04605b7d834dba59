"""The WASI ABI as data: constants, layouts and signatures for preview1 and preview0."""

from .constants import *  # noqa: F401,F403
from .constants import (
    errno_from_host,
    filestat_of,
    filetype_of_mode,
    fstflags_conflict,
    timestamp_of,
    times_for,
)
from .paths import path_errno
from .layouts import (
    DIRENT,
    EVENT,
    FDSTAT,
    IOVEC,
    PRESTAT,
    PREVIEW0,
    PREVIEW1,
    SNAPSHOTS,
    U32,
    U64,
    Snapshot,
)
