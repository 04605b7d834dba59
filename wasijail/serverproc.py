"""Starting the fork server process, with nothing but the standard library.

Kept apart from the trio launcher so the CLI can start the fork server before
it imports trio: the server's imports (wasmtime, pyseccomp) and the CLI's
(trio, the supervisor) then overlap instead of adding up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

from .stdio import fill_closed_stdio

DEFAULT_COMMAND = (sys.executable, "-m", "wasijail.forkserver")


@dataclass
class ServerProcess:
    popen: subprocess.Popen
    sock: socket.socket  # our end of the control channel

    def abandon(self) -> None:
        """Stop a server that will not be used (the run ended before it began)."""
        self.sock.close()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def start_server(command: Sequence[str] | None = None) -> ServerProcess:
    fill_closed_stdio()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        popen = subprocess.Popen(
            [*(command or DEFAULT_COMMAND), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_server_env(),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ServerProcess(popen, ours)


def _server_env() -> dict[str, str]:
    # The fork server (and so every child) needs only what locates Python and this package.
    keep = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
    return {k: os.environ[k] for k in keep if k in os.environ}
