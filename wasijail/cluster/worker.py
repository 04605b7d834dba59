"""The worker side of `wasijail batch --cluster`: a Dask preload.

`dask worker tcp://HOST:PORT --preload wasijail.cluster` runs `dask_setup`,
which gives each worker process one `WorkerRuntime` for its lifetime: a
thread running `trio.run` that holds one supervisor (and so one fork server)
and one compiled-module cache in the worker's local folder, and the worker's
`wasijail doctor` report, probed once. Each task (`run_jobs`) hands its jobs
to that thread with `trio.from_thread`, where `batch.run_job`, the local
batch's runner, runs each in its own locked-down child.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batch import job_error, run_job
from ..doctor import Layer, format_report
from ..nofollow import open_dir, write_beneath
from ..policy import Policy
from ..results import RunResult, WasijailError


class WorkerUnavailable(Exception):
    """Raised in a task when its worker cannot run jobs right now; dask retries the task."""


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one job; the module bytes and stdin travel beside it."""

    job_id: str
    sha: str  # SHA-256 of the module's bytes, hex
    suffix: str  # ".wat" or ".wasm": the child parses text only for .wat
    args: tuple[str, ...]
    policy: Policy  # the job's policy, its environment already resolved on the client
    module: str  # the module's path on the client: how messages name it, and argv[0]'s file name
    cached: bool = True  # use the worker's compiled-module cache
    stdin_sha: str | None = None  # a large stdin travels as scattered bytes under this hash


def _probe_layers() -> list[Layer]:
    """`wasijail doctor`'s probe, run in a fresh process as the fork server is.

    A dask worker process has threads; the namespace probe forks, which is
    only safe from a process that has none.
    """
    code = ("import json\nfrom wasijail.doctor import probe_layers\n"
            "print(json.dumps([list(layer) for layer in probe_layers()]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        return [Layer(str(n), bool(a), str(d)) for n, a, d in json.loads(proc.stdout)]
    except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
        why = f"the doctor probe failed: {exc}"
        from ..sandbox import LAYER_NAMES

        return [Layer(name, False, why) for name in LAYER_NAMES]


def _worker_cache(folder: Path):
    """The worker's ModuleCache, counting the artifacts it stores (one per module compiled)."""
    from ..cache import ModuleCache

    class WorkerCache(ModuleCache):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.stored: Counter = Counter()
            # The secret key is made now, before jobs run side by side: two first runs that made it
            # at once could read it half written.
            self._ensure()

        def store(self, key: str, artifact: bytes) -> None:
            self.stored[key] += 1
            super().store(key, artifact)

    return WorkerCache(folder)


class WorkerRuntime:
    """One worker process's supervisor, fork server and module cache, kept for its lifetime."""

    def __init__(self, address: str, folder: Path, nthreads: int) -> None:
        self.address = address
        self.folder = folder
        self.modules = folder / "modules"
        self.modules.mkdir(parents=True, exist_ok=True)
        self.cache = _worker_cache(folder / "cache")
        self.nthreads = max(1, nthreads)
        self.layers = {layer.name: layer for layer in _probe_layers()}
        self.report = format_report(list(self.layers.values()))
        self.jobs = 0
        self._written: set[str] = set()
        self._first_runs: dict[tuple, Any] = {}  # key -> trio.Lock while a module's first run compiles it
        self._tried: set[tuple] = set()
        self._supervisors: dict[bool, tuple] = {}  # cached? -> (Supervisor, CancelScope)
        self._token = None
        self._failed: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="wasijail-supervisor", daemon=True)
        self._thread.start()
        self._ready.wait(120)
        if self._failed is not None or self._token is None:
            raise WasijailError(f"worker {address}: could not start the wasijail supervisor: {self._failed}")

    # The trio thread.

    def _serve(self) -> None:
        import trio

        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to whoever waits for the start
            self._failed = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        import trio

        self._stop = trio.Event()
        self._start_lock = trio.Lock()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._supervisor(True)  # the fork server is up before the first task arrives
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _hold(self, cached: bool, task_status) -> None:
        import trio

        from ..supervisor import open_supervisor

        with trio.CancelScope() as scope:
            async with open_supervisor(max_parallel=self.nthreads,
                                       cache=self.cache if cached else None) as supervisor:
                # The parent's own layers were probed already (in a process without threads).
                supervisor.assume_layers(self.layers.values())
                task_status.started((supervisor, scope))
                await trio.sleep_forever()

    async def _supervisor(self, cached: bool):
        async with self._start_lock:
            held = self._supervisors.get(cached)
            if held is None or _fork_server_gone(held[0]):
                if held is not None:
                    held[1].cancel()  # a dead fork server: start a new one
                held = await self._nursery.start(self._hold, cached)
                self._supervisors[cached] = held
        return held[0]

    def _refusal(self, policy: Policy) -> WasijailError | None:
        for name in policy.sandbox.require:
            layer = self.layers.get(name)
            if layer is not None and not layer.available:
                return WasijailError(f"worker {self.address} refuses the job: the policy requires sandbox layer"
                                     f" {name}, which this worker lacks: {layer.detail}")
        return None

    def _module_file(self, task: Task, module: bytes) -> Path | WasijailError:
        """The module's file in the worker's folder, written once (or why it cannot be run)."""
        path = self.modules / f"{task.sha}{task.suffix}"
        if path.name not in self._written:
            if hashlib.sha256(module).hexdigest() != task.sha:
                return WasijailError(f"{task.module}: the module's bytes do not match their hash")
            if not path.exists():
                folder = open_dir(self.modules)
                try:
                    write_beneath(folder, path.name, module)  # other threads see the whole module or none
                finally:
                    os.close(folder)
            self._written.add(path.name)
        return path

    async def _run(self, task: Task, module: Path | WasijailError, stdin: bytes) -> RunResult:
        from ..supervisor import RunSpec

        if isinstance(module, WasijailError):
            return job_error(module)
        refusal = self._refusal(task.policy)
        if refusal is not None:
            return job_error(refusal)
        supervisor = await self._supervisor(task.cached)
        spec = RunSpec(module, task.args, task.policy, name=task.module)
        limits = task.policy.limits
        first = (task.sha, task.suffix, limits.fuel is not None, bool(limits.cpu_time))
        if task.cached and first not in self._tried:
            # The first run of a module on this worker compiles it alone; the others wait
            # and load its artifact, so a module compiles once per worker.
            import trio

            lock = self._first_runs.setdefault(first, trio.Lock())
            async with lock:
                result = await run_job(supervisor, spec, stdin)
                self._tried.add(first)
                self._first_runs.pop(first, None)
        else:
            result = await run_job(supervisor, spec, stdin)
        if _fork_server_gone(supervisor):  # the child died with the fork server: not the job's doing
            raise WorkerUnavailable(f"worker {self.address}: the fork server died during the job")
        self.jobs += 1
        return result

    # Any thread.

    def run_many(self, jobs: list[tuple[Task, bytes, bytes]]) -> list[tuple[str, RunResult]]:
        """Run the jobs one after the other (a dask thread is one job slot)."""
        import trio

        # The file work happens here, in the dask thread, so the trio thread never blocks on it.
        files = [(task, self._module_file(task, module), stdin) for task, module, stdin in jobs]

        async def run_all() -> list[tuple[str, RunResult]]:
            return [(task.job_id, await self._run(task, path, stdin)) for task, path, stdin in files]

        try:
            return trio.from_thread.run(run_all, trio_token=self._token)
        except (trio.RunFinishedError, trio.Cancelled):  # the worker is closing: its jobs run elsewhere
            raise WorkerUnavailable(f"worker {self.address} is shutting down") from None

    def stats(self) -> dict:
        return {"jobs": self.jobs, "compiled": dict(self.cache.stored), "report": self.report}

    def close(self) -> None:
        import trio

        if self._token is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(30)


def _fork_server_gone(supervisor) -> bool:
    return not supervisor.launcher.alive


_runtimes: dict[str, WorkerRuntime] = {}
_runtimes_lock = threading.Lock()


def _runtime(worker) -> WorkerRuntime:
    """This worker's runtime; started here when the worker was not given the preload."""
    runtime = _runtimes.get(worker.id)
    if runtime is None:
        with _runtimes_lock:
            runtime = _runtimes.get(worker.id)
            if runtime is None:
                folder = Path(worker.local_directory) / "wasijail"
                runtime = WorkerRuntime(worker.address, folder, worker.state.nthreads)
                _runtimes[worker.id] = runtime
    return runtime


def dask_setup(worker) -> None:
    """Dask preload hook: start this worker's supervisor, fork server and cache."""
    if getattr(worker, "nanny", None) and threading.current_thread() is threading.main_thread():
        # A terminal's Ctrl-C reaches the whole process group: the nanny (or the wasijail batch that
        # started a local cluster) stops this worker in order, so the worker, and the fork server
        # and children that inherit this, ignore it rather than die mid-job with a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _runtime(worker)


def dask_teardown(worker) -> None:
    runtime = _runtimes.pop(worker.id, None)
    if runtime is not None:
        runtime.close()


def worker_report(dask_worker) -> str:
    """`wasijail doctor` as this worker sees it (for client.run)."""
    return _runtime(dask_worker).report


def worker_stats(dask_worker) -> dict:
    """Jobs run and artifacts compiled by this worker (for client.run)."""
    return _runtime(dask_worker).stats()



def run_jobs(items: list[tuple[Task, bytes | None]], modules: dict[str, bytes],
             stdins: dict[str, bytes]) -> tuple[list[tuple[str, RunResult]], str]:
    """A dask task: some jobs, one after the other, on whichever worker dask chose.

    Returns each job's result and the address of the worker that ran them.
    """
    from distributed import get_worker

    runtime = _runtime(get_worker())
    jobs = [(task, modules[task.sha], stdin if stdin is not None else stdins[task.stdin_sha])
            for task, stdin in items]
    return runtime.run_many(jobs), runtime.address

