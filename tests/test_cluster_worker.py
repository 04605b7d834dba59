"""A cluster worker's runtime on its own, without Dask: the jobs of a task, run by the batch's runner.

`WorkerRuntime` is what the preload gives each worker process: a trio thread
holding a supervisor and a module cache. These tests hand it tasks as
`run_jobs` does and check each job's result, and that what is not the job's
doing (its fork server dying under it) is `WorkerUnavailable`, for the
client to submit the job again, never the job's result.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wasijail.cluster.worker import Task, WorkerRuntime, WorkerUnavailable
from wasijail.doctor import Layer
from wasijail.policy import Policy
from wasijail.results import OutcomeKind

from helpers import program

ADDRESS = "tcp://127.0.0.1:1"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = WorkerRuntime(ADDRESS, tmp_path_factory.mktemp("worker"), 2)
    yield runtime
    runtime.close()


def job(job_id: str, name: str, *, policy: Policy = Policy.default(), stdin: bytes = b"", cached: bool = True,
        sha: str | None = None) -> tuple[Task, bytes, bytes]:
    """A job as `run_jobs` hands it to the runtime: the task, the module's bytes, stdin."""
    path = program(name)
    module = path.read_bytes()
    task = Task(job_id, sha or hashlib.sha256(module).hexdigest(), path.suffix, (), policy, str(path), cached)
    return task, module, stdin


def test_jobs_run_in_order_each_in_its_own_child(runtime):
    before = runtime.jobs
    results = runtime.run_many([job("a", "exit7.wasm"), job("b", "cat.wasm", stdin=b"through\n"),
                                job("c", "trap.wasm")])
    assert [job_id for job_id, _ in results] == ["a", "b", "c"]
    (_, a), (_, b), (_, c) = results
    assert (a.outcome.kind, a.returncode) == (OutcomeKind.EXIT, 7)
    assert (b.outcome.kind, b.stdout) == (OutcomeKind.EXIT, b"through\n")
    assert (c.outcome.kind, c.returncode) == (OutcomeKind.TRAP, 134)
    assert b.args == (str(program("cat.wasm")),)  # named as on the client, not by the worker's copy
    assert runtime.jobs == before + 3


def test_a_module_whose_bytes_do_not_match_their_hash_fails_alone(runtime):
    (_, bad), (_, good) = runtime.run_many([job("bad", "exit7.wasm", sha="0" * 64), job("good", "exit7.wasm")])
    assert (bad.outcome.kind, bad.returncode) == (OutcomeKind.ERROR, 1)
    assert bad.outcome.detail == f"{program('exit7.wasm')}: the module's bytes do not match their hash"
    assert good.returncode == 7


def test_a_layer_the_worker_lacks_refuses_a_policy_that_requires_it(runtime, monkeypatch):
    monkeypatch.setitem(runtime.layers, "userns", Layer("userns", False, "switched off for this test"))
    policy = Policy.default().with_require("userns")
    ((_, refused),) = runtime.run_many([job("needs-userns", "exit7.wasm", policy=policy)])
    assert (refused.outcome.kind, refused.returncode) == (OutcomeKind.ERROR, 1)
    assert refused.outcome.detail == (f"worker {ADDRESS} refuses the job: the policy requires sandbox layer userns,"
                                      " which this worker lacks: switched off for this test")


def test_a_fork_server_dying_under_a_job_is_the_workers_failure_not_the_jobs(runtime):
    runtime.run_many([job("warm", "exit7.wasm", cached=False)])  # the uncached supervisor exists now
    supervisor = runtime._supervisors[False][0]
    killed = threading.Event()

    def kill_once_running() -> None:
        deadline = time.monotonic() + 30
        while supervisor.live_children == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(supervisor.launcher.pid, signal.SIGKILL)
        killed.set()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(kill_once_running)
        with pytest.raises(WorkerUnavailable, match=f"^worker {ADDRESS}: the fork server died during the job$"):
            runtime.run_many([job("spun", "spin.wasm", cached=False)])
    assert killed.is_set()
    # The next task gets a new fork server.
    ((_, again),) = runtime.run_many([job("after", "exit7.wasm", cached=False)])
    assert again.returncode == 7
    assert runtime._supervisors[False][0] is not supervisor
