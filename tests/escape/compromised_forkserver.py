"""A fork server for tests only: its children run arbitrary Python after full lockdown.

It is the real fork server (same fork, same lockdown, same reports) with one
change: where a child would compile the module it was sent, it executes that
file as Python instead. This file lives under tests/, outside the package, so
neither a guest nor the CLI can ever reach it. It lets the tests act as a
module that escaped wasmtime and see what the sandbox still stops.
"""

from __future__ import annotations

import os
import socket
import sys

from wasijail import forkserver, protocol
from wasijail.child import runner


def compromised_child_main(sock_fd: int) -> None:
    sock = socket.socket(fileno=sock_fd)
    data, fds = protocol.receive(sock)
    protocol.decode_reply(protocol.Start, data)
    setup_fd, module_fd, *_ = fds
    os.close(setup_fd)
    source = runner._read_all(module_fd).decode()
    scope = {"sock": sock, "protocol": protocol}
    try:
        exec(compile(source, "<escape attempt>", "exec"), scope)
        os.write(1, repr(scope.get("RESULT")).encode())  # what the attempt found, for the test
        result = protocol.Result(protocol.Outcome.EXIT, 0, 0, 0, b"")
    except BaseException as exc:  # the attempt failed without killing us: say how
        result = protocol.Result(protocol.Outcome.ERROR, 1, 0, 0, f"{type(exc).__name__}: {exc}".encode())
    protocol.send(sock, result)
    os._exit(0)


runner.child_main = compromised_child_main

if __name__ == "__main__":
    forkserver.serve(int(sys.argv[1]))
