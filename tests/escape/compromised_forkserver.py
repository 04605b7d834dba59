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

from wasijail import forkserver
from wasijail.protocol import broker as wire
from wasijail.protocol import transport
from wasijail.protocol.setup import decode_start
from wasijail.child import runner


def compromised_child_main(sock_fd: int, artifact_path: str = "") -> None:
    sock = socket.socket(fileno=sock_fd)
    data, fds = transport.receive(sock)
    decode_start(data)
    setup_fd, module_fd, *_ = fds
    os.close(setup_fd)
    source = runner._read_all(module_fd).decode()
    scope = {"sock": sock, "wire": wire, "transport": transport}
    try:
        exec(compile(source, "<escape attempt>", "exec"), scope)
        os.write(1, repr(scope.get("RESULT")).encode())  # what the attempt found, for the test
        result = wire.Result(wire.ChildOutcome.EXIT, 0, 0, 0, b"")
    except BaseException as exc:  # the attempt failed without killing us: say how
        result = wire.Result(wire.ChildOutcome.ERROR, 1, 0, 0, f"{type(exc).__name__}: {exc}".encode())
    transport.send(sock, result)
    os._exit(0)


runner.child_main = compromised_child_main

if __name__ == "__main__":
    forkserver.serve(int(sys.argv[1]))
