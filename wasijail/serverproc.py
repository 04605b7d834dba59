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
from typing import Sequence, final

from .stdio import fill_closed_stdio

# The fork server's program: the import path comes first on the command line, the
# control socket's fd last (start_server appends it to any command).
_BOOT = "import sys; sys.path[:] = sys.argv[1:-1]; from wasijail.forkserver import main; main(int(sys.argv[-1]))"


def default_command() -> list[str]:
    """The fork server's command line: this interpreter, isolated and without `site`.

    -I: no PYTHON* variables and, unlike `-m`, no working directory on the
    import path, so no module lying in the directory the user runs wasijail
    from is ever imported by the server (and so by a child). -S: no `.pth`
    files (an editable install's finder costs ~10 ms of every start). The
    import path is this process's own instead, less its working directory,
    with the folder this wasijail came from last (where an editable
    install's finder puts it): the server imports the same wasijail,
    wasmtime and pyseccomp as the supervisor that starts it.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    paths = [path for path in sys.path if path and os.path.abspath(path) != cwd]
    if root not in paths:
        paths.append(root)
    return [sys.executable, "-I", "-S", "-c", _BOOT, *paths]


@final
class ServerProcess:
    # A plain class, not a dataclass: `dataclasses` would add ~10 ms before the server starts.
    __slots__ = ("popen", "sock")

    def __init__(self, popen: subprocess.Popen, sock: socket.socket) -> None:
        self.popen = popen
        self.sock = sock  # our end of the control channel

    def abandon(self) -> None:
        """Stop a server that will not be used (the run ended before it began): it has started
        no child, so it is killed at once rather than left to finish its imports first."""
        self.sock.close()
        self.popen.kill()
        self.popen.wait()


def start_server(command: Sequence[str] | None = None) -> ServerProcess:
    fill_closed_stdio()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        popen = subprocess.Popen(
            [*(command or default_command()), str(theirs.fileno())],
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
