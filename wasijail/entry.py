"""The `wasijail` command's entry point (console script and `python -m wasijail`).

It starts the fork server before anything else is imported: the server's
imports (wasmtime, pyseccomp, the protocol) then overlap with all of the
CLI's (argparse, the policy, trio, the supervisor) instead of starting after
the CLI module has loaded. Stdlib only up to that point (`serverproc`).
The CLI decides what the command line is: a server it does not use (a usage
error, or a first word that names no run after all) is killed at once.
"""

from __future__ import annotations

import sys

from . import serverproc


def starts_a_run(argv: list[str]) -> bool:
    """Whether the command line surely asks for a run (`run ...`, or a module named first, as
    `wasmtime demo.wasm`): only a hint for starting early; the CLI parses it for real."""
    return bool(argv) and (argv[0] == "run" or argv[0].endswith((".wasm", ".wat")))


def main() -> int:
    server = serverproc.start_server() if starts_a_run(sys.argv[1:]) else None
    from .cli import main as cli_main

    return cli_main(server=server)
