"""wasijail.sandbox.probing: a probe that changes the process runs in a child that is always reaped."""

from __future__ import annotations

import os
import time

import pytest

from wasijail.sandbox.probing import NO_ANSWER, in_child


def test_the_answer_comes_from_the_child():
    parent = os.getpid()
    available, detail = in_child(lambda: (True, str(os.getpid())))
    assert available and int(detail) != parent


def test_a_hung_probe_is_reported_not_waited_for():
    started = time.monotonic()
    assert in_child(lambda: time.sleep(60), timeout=0.5) == (False, NO_ANSWER)
    assert time.monotonic() - started < 10


def test_a_probe_that_dies_or_answers_nonsense_is_no_answer():
    assert in_child(lambda: os._exit(3)) == (False, NO_ANSWER)
    assert in_child(lambda: 1 / 0) == (False, NO_ANSWER)
    assert in_child(lambda: "not a pair") == (False, NO_ANSWER)


def test_no_child_and_no_descriptor_is_left():
    before = set(os.listdir("/proc/self/fd"))
    in_child(lambda: (True, ""))
    in_child(lambda: time.sleep(60), timeout=0.2)
    assert set(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
