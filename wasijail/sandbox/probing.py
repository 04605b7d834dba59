"""Run a probe that changes the process (unshare, pivot_root, setresuid) in a throw-away child.

The probe answers (available, detail); it comes back as JSON on a pipe. A
child that cannot be forked, or dies or hangs past the timeout (it is then
killed), answers (False, why); it is always reaped. Fork only from a
process without threads (the CLI, the fork server, a fresh interpreter).
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Callable

__all__ = ["in_child", "NO_ANSWER"]

NO_ANSWER = "the probe child died or hung"


def in_child(probe: Callable[[], tuple[bool, str]], timeout: float = 5.0) -> tuple[bool, str]:
    """probe()'s answer, computed in a forked child."""
    import json  # here, before the fork: probes are rare, and json costs every run's CLI ~3 ms

    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return False, f"could not fork a probe child: {exc}"
    if pid == 0:  # child: no return from here
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(probe()).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    deadline = time.monotonic() + timeout
    # poll, not select: a supervisor past 1024 descriptors (its raised limit) may probe too.
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    try:
        available, detail = json.loads(data)
        return bool(available), str(detail)
    except (ValueError, TypeError):
        return False, NO_ANSWER
