"""Ctrl-C in `wasijail run`: the child is killed and reaped, one line, exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import program


def _session_processes(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            found.append(int(entry))
    return found


def _locked_down(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nSeccomp:\t2\n" in f.read()
    except OSError:
        return False


def _wait_for_child(sid: int, timeout: float = 30) -> None:
    """Until the guest's child runs under its seccomp filter: the CLI and the fork server
    are past their start-up, when a Ctrl-C is the supervisor's to handle."""
    deadline = time.monotonic() + timeout
    while not any(_locked_down(pid) for pid in _session_processes(sid)):
        assert time.monotonic() < deadline, "the guest never started"
        time.sleep(0.05)


@pytest.mark.parametrize("whole_group", [False, True], ids=["cli-only", "terminal-group"])
def test_ctrl_c_kills_the_child_and_exits_130(whole_group):
    proc = subprocess.Popen([sys.executable, "-m", "wasijail", "run", str(program("sleep.wasm"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for_child(proc.pid)
        time.sleep(0.3)  # inside its hour-long poll_oneoff
        if whole_group:  # what a terminal's Ctrl-C does
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err == b"wasijail: interrupted\n"
    assert out == b""
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid):  # the fork server and the child went with it
        assert time.monotonic() < deadline, _session_processes(proc.pid)
        time.sleep(0.05)
