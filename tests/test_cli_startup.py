"""The CLI's cold start: what a `wasijail run` loads before the guest runs, and what it never does.

Timing is measured in scripts/bench, not here: these tests pin the causes of
a slow start instead (a module imported that only another command needs, an
`ldconfig -p` process, the fork server started late), so they cannot flake.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import program

# Modules a run does not need, each costing milliseconds of every cold start: the other
# commands' (batch, cluster, report, doctor; tomlkit writes `policy show`, json only the layer
# probes), importlib.resources (the default policy is a file beside policy.py), the terminal
# table library, and the engine and seccomp bindings, which only the fork server and its
# children import.
NOT_ON_THE_RUN_PATH = (
    "rich", "dask", "distributed", "wasijail.batch", "wasijail.cluster", "wasijail.report",
    "wasijail.resultsfile", "wasijail.doctor", "wasijail.aio", "wasmtime", "pyseccomp",
    "wasijail.child", "wasijail.sandbox.lockdown", "wasijail.sandbox.seccomp", "tomlkit", "json",
    "importlib.resources",
)


def _run_cli(code: str, cwd: os.PathLike | str | None = None, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, timeout=120, cwd=cwd)


def test_a_run_imports_nothing_only_other_commands_need():
    proc = _run_cli(f"from wasijail.cli import main; main(['run', {str(program('demo.wat'))!r}])",
                    None, "-X", "importtime")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout == b"hello world\n"
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc.stderr.decode(), re.M))
    assert "trio" in imported and "wasijail.supervisor" in imported  # the listing is the CLI's
    loaded = sorted(name for name in imported
                    if any(name == heavy or name.startswith(heavy + ".") for heavy in NOT_ON_THE_RUN_PATH))
    assert loaded == []


def test_a_run_starts_no_ldconfig():
    # ctypes.util.find_library runs `ldconfig -p` (a process) for every name: trio's import asks
    # it for pthread. Here it fails the run if anything on the run path calls it.
    code = ("import ctypes.util, sys\n"
            "def refuse(name): raise SystemExit(f'find_library({name!r}) called')\n"
            "ctypes.util.find_library = refuse\n"
            "from wasijail.cli import main\n"
            f"sys.exit(main(['run', {str(program('demo.wat'))!r}]))\n")
    proc = _run_cli(code)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello world\n", b"")


def test_the_fork_server_imports_nothing_from_the_working_directory(tmp_path):
    # `python -m` would put the working directory first on the server's import path: a
    # selectors.py lying where the user runs wasijail would run in the fork server, and so in
    # every child. The server runs isolated (-I) on the supervisor's own import path instead.
    marker = tmp_path / "imported"
    for name in ("selectors", "wasmtime", "pyseccomp"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n"
                                             "raise SystemExit(3)\n")
    # -P: the CLI's own interpreter does not look there either (the console script's does not).
    proc = subprocess.run([sys.executable, "-P", "-c", "import sys; from wasijail.cli import main; sys.exit(main())",
                           "run", str(program("demo.wat"))], cwd=tmp_path, capture_output=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello world\n", b"")
    assert not marker.exists()


def test_a_usage_error_stops_the_fork_server_at_once():
    # The server starts before the flags are parsed; a command line that ends there kills it
    # (it has no child yet) rather than waiting for it to finish importing.
    code = ("import sys, subprocess\n"
            "from wasijail import serverproc\n"
            "started = []\n"
            "real = serverproc.start_server\n"
            "def start_server(*args):\n"
            "    started.append(real(*args))\n"
            "    return started[-1]\n"
            "serverproc.start_server = start_server\n"
            "from wasijail.cli import main\n"
            "try:\n"
            "    main(['run', '--no-such-flag', 'x.wasm'])\n"
            "except SystemExit as exc:\n"
            "    status = exc.code\n"
            "print(status, len(started), started[0].popen.returncode)\n")
    proc = _run_cli(code)
    assert proc.returncode == 0, proc.stderr.decode()
    status, servers, server_status = proc.stdout.decode().split()
    assert (status, servers, server_status) == ("2", "1", "-9")


def _entry(argv: list[str]) -> subprocess.CompletedProcess:
    # The console script's path (entry.main), with start_server recording what was imported when
    # it was called and keeping the server it started.
    code = ("import sys, json\n"
            "from wasijail import serverproc\n"
            "started = []\n"
            "real = serverproc.start_server\n"
            "def start_server(*args):\n"
            "    started.append((real(*args), 'wasijail.cli' in sys.modules, 'argparse' in sys.modules))\n"
            "    return started[-1][0]\n"
            "serverproc.start_server = start_server\n"
            f"sys.argv[1:] = {argv!r}\n"
            "from wasijail.entry import main\n"
            "try:\n"
            "    status = main()\n"
            "except SystemExit as exc:\n"
            "    status = exc.code\n"
            "sys.stderr.write(repr((status, [(s.popen.returncode, cli, ap) for s, cli, ap in started])))\n")
    return _run_cli(code)


def test_the_console_entry_starts_the_fork_server_before_the_cli_imports():
    code = ("import sys\n"
            "from wasijail import serverproc\n"
            "calls = []\n"
            "real = serverproc.start_server\n"
            "def start_server(*args):\n"
            "    calls.append(('wasijail.cli' in sys.modules, 'argparse' in sys.modules))\n"
            "    sys.stderr.write(f'started {calls[-1]}\\n')\n"
            "    return real(*args)\n"
            "serverproc.start_server = start_server\n"
            f"sys.argv[1:] = ['run', {str(program('demo.wat'))!r}]\n"
            "from wasijail.entry import main\n"
            "main()\n")
    proc = _run_cli(code)
    assert (proc.returncode, proc.stdout) == (0, b"hello world\n"), proc.stderr.decode()[-2000:]
    # One server, started before the CLI module or argparse was imported.
    assert proc.stderr == b"started (False, False)\n"


def test_a_usage_error_kills_the_server_the_console_entry_started():
    proc = _entry(["run", "--no-such-flag", "x.wasm"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"--no-such-flag" in proc.stderr
    assert proc.stderr.decode().splitlines()[-1] == "(2, [(-9, False, False)])"


def test_the_console_entry_starts_no_server_for_other_commands():
    proc = _entry(["policy", "show"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[-1] == "(0, [])"
