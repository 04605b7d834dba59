"""Closing a descriptor on a path that is already cleaning up, shared by the broker and the child."""

from __future__ import annotations

import os


def close_quietly(fd: int) -> None:
    """Close fd, ignoring an error: close(2) releases the number even when it reports one, and
    the caller has nothing better to do with it (it is releasing what a failed call opened)."""
    try:
        os.close(fd)
    except OSError:
        pass
