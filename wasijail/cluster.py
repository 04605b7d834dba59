"""`wasijail batch --cluster`: the same manifest on a Dask distributed cluster.

Two halves, one module:

* The worker side is a Dask preload (`dask worker tcp://HOST:PORT --preload
  wasijail.cluster`). `dask_setup(worker)` gives each worker process one
  `WorkerRuntime` for its lifetime: a thread running `trio.run` that holds one
  supervisor (and so one fork server) and one compiled-module cache in the
  worker's local folder, and the worker's `wasijail doctor` report, probed
  once. Each task hands its jobs to that thread with `trio.from_thread`, so
  every job still runs in its own locked-down child.

* The client side (`open_cluster`, `run_cluster_batch`) reads the manifest
  as the local batch does, sends every distinct module once (scattered under
  its SHA-256), submits tasks of one or a few jobs (`_ClusterBatch`) and
  hands each job's result to the local batch's `batch.Batch`, which judges
  it (expectations, checkers: on the client) and writes its record, so the
  results file has the same format, fingerprints and resume rules. Only the
  client writes it: a job a dead worker was running is run again elsewhere,
  and its line is still written once.

Dask is an optional extra (`pip install 'wasijail[cluster]'`): it is imported
only by the functions here that need it, never by the local batch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import attrs

from .batch import Batch, BatchSummary, Job, job_policy
from .doctor import Layer, format_report
from .nofollow import open_dir, write_beneath
from .policy import Policy
from .results import Outcome, OutcomeKind, RunResult, WasijailError
from .verdict import DEFAULT_CHECK_TIMEOUT

INSTALL_HINT = "pip install 'wasijail[cluster]'"
PRELOAD = "wasijail.cluster"
# Stdin files up to this size travel inside the task; larger ones are scattered like modules.
INLINE_STDIN = 64 * 1024
# How often dask may re-run a job's task that raised (a worker's fork server died under it);
# a worker that dies is handled by the scheduler itself (distributed.scheduler.allowed-failures).
TASK_RETRIES = 2
# A job whose task lost its module or stdin bytes with dead workers, or met a worker shutting down,
# is submitted again by the client, at most this often.
RESUBMITS = 3


class ClusterError(WasijailError):
    """The cluster cannot be used: dask missing, bad address, scheduler unreachable."""


class WorkerUnavailable(Exception):
    """Raised in a task when its worker cannot run jobs right now; dask retries the task."""


def import_distributed():
    """The `distributed` package, or a ClusterError that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


# -- worker side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one job; the module bytes and stdin travel beside it."""

    job_id: str
    sha: str  # SHA-256 of the module's bytes, hex
    suffix: str  # ".wat" or ".wasm": the child parses text only for .wat
    args: tuple[str, ...]
    policy: Policy  # the job's policy, its environment already resolved on the client
    argv0: str
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
        from .doctor import LAYER_NAMES

        return [Layer(name, False, why) for name in LAYER_NAMES]


def _worker_cache(folder: Path):
    """The worker's ModuleCache, counting the artifacts it stores (one per module compiled)."""
    from .cache import ModuleCache

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

        from .supervisor import open_supervisor

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

    def _refusal(self, policy: Policy) -> str | None:
        for name in policy.sandbox.require:
            layer = self.layers.get(name)
            if layer is not None and not layer.available:
                return (f"worker {self.address} refuses the job: the policy requires sandbox layer {name},"
                        f" which this worker lacks: {layer.detail}")
        return None

    def _module_file(self, task: Task, module: bytes) -> Path | str:
        """The module's file in the worker's folder, written once (or why it cannot be run)."""
        path = self.modules / f"{task.sha}{task.suffix}"
        if path.name not in self._written:
            if hashlib.sha256(module).hexdigest() != task.sha:
                return f"{task.argv0}: the module's bytes do not match their hash"
            if not path.exists():
                folder = open_dir(self.modules)
                try:
                    write_beneath(folder, path.name, module)  # other threads see the whole module or none
                finally:
                    os.close(folder)
            self._written.add(path.name)
        return path

    async def _run(self, task: Task, path: Path | str, stdin: bytes) -> RunResult:
        from .launcher import ForkServerGone
        from .supervisor import RunSpec

        refusal = self._refusal(task.policy)
        if refusal is not None:
            return RunResult(1, Outcome(OutcomeKind.ERROR, refusal), b"", b"")
        if isinstance(path, str):
            return RunResult(1, Outcome(OutcomeKind.ERROR, path), b"", b"")
        supervisor = await self._supervisor(task.cached)
        spec = RunSpec(path, task.args, task.policy, argv0=task.argv0)
        try:
            limits = task.policy.limits
            first = (task.sha, task.suffix, limits.fuel is not None, bool(limits.cpu_time))
            if task.cached and first not in self._tried:
                # The first run of a module on this worker compiles it alone; the others wait
                # and load its artifact, so a module compiles once per worker.
                import trio

                lock = self._first_runs.setdefault(first, trio.Lock())
                async with lock:
                    result = await self._run_spec(supervisor, spec, stdin)
                    self._tried.add(first)
                    self._first_runs.pop(first, None)
            else:
                result = await self._run_spec(supervisor, spec, stdin)
        except ForkServerGone as exc:
            raise WorkerUnavailable(f"worker {self.address}: {exc}") from None
        if _fork_server_gone(supervisor):  # the child died with the fork server: not the job's doing
            raise WorkerUnavailable(f"worker {self.address}: the fork server died during the job")
        self.jobs += 1
        return result

    @staticmethod
    async def _run_spec(supervisor, spec, stdin: bytes) -> RunResult:
        from .launcher import ForkServerGone

        try:
            return await supervisor.run_spec(spec, stdin=stdin, capture_stdout=True, capture_stderr=True)
        except ForkServerGone:
            raise
        except WasijailError as exc:  # a PolicyError too, as batch.run_job: the job fails alone
            return RunResult(1, Outcome(OutcomeKind.ERROR, str(exc)), b"", b"")
        except OSError as exc:
            return RunResult(1, Outcome(OutcomeKind.ERROR, f"{exc.filename}: {exc.strerror}"), b"", b"")

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


# -- client side ---------------------------------------------------------------------------------

_LOCAL = re.compile(r"local:(\d+)")
_REMOTE = re.compile(r"(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def check_address(address: str) -> str | None:
    """Why `address` is not a --cluster value, or None when it is."""
    local = _LOCAL.fullmatch(address)
    if local:
        return None if int(local.group(1)) >= 1 else "local:N needs at least one worker"
    remote = _REMOTE.fullmatch(address)
    if remote and 0 < int(remote.group(3)) < 65536:
        return None
    return f"{address!r} is not tcp://HOST:PORT (a Dask scheduler) or local:N (N worker processes here)"


@contextmanager
def open_cluster(address: str, *, threads_per_worker: int | None = None,
                 timeout: float = 10.0, log_level: int | None = None) -> Iterator[Any]:
    """A dask Client for `address`: a running scheduler (tcp://HOST:PORT) or local:N.

    local:N starts a LocalCluster of N worker processes on this machine, each
    with the wasijail preload and `threads_per_worker` jobs at once; it is shut
    down when the context ends. A scheduler that cannot be reached, or has no
    worker, within `timeout` seconds is a ClusterError. `log_level`: the level
    of dask's own log messages here (None: dask's default).
    """
    problem = check_address(address)
    if problem is not None:
        raise ClusterError(problem)
    distributed = import_distributed()
    if log_level is not None:
        _set_dask_log_level(log_level)
    local = _LOCAL.fullmatch(address)
    cluster = None
    try:
        if local:
            workers = int(local.group(1))
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=threads_per_worker or max(1, (os.cpu_count() or 1) // workers),
                processes=True, preload=[PRELOAD], dashboard_address=":0",
                silence_logs=logging.WARNING if log_level is None else log_level)
            client = distributed.Client(cluster, timeout=timeout)
        else:
            try:
                client = distributed.Client(address, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s"
                                   f" ({_one_line(exc)})") from None
    except BaseException:
        if cluster is not None:
            _close_quietly(cluster)
        raise
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterError(f"the Dask scheduler at {address} has no workers (waited {timeout:g} s); start them "
                               f"with: dask worker {address} --preload {PRELOAD}") from None
        yield client
    finally:
        _close_quietly(client)
        if cluster is not None:
            _close_quietly(cluster)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _close_quietly(thing) -> None:
    try:
        thing.close()
    except Exception:  # shutting down after an interrupt or a lost scheduler: nothing left to do
        pass


def _set_dask_log_level(level: int) -> None:
    for name in ("distributed", "distributed.client", "distributed.nanny", "distributed.worker",
                 "distributed.scheduler", "distributed.core", "distributed.comm", "tornado"):
        logging.getLogger(name).setLevel(level)


def worker_reports(client) -> dict[str, str]:
    """Each worker's `wasijail doctor` report (probed once, when the worker started)."""
    return dict(sorted(client.run(worker_report).items()))


@dataclass
class ClusterSummary(BatchSummary):
    modules_sent: int = 0  # scatters of module bytes (one per distinct module, more only after a loss)
    tasks: int = 0  # dask tasks submitted (each runs one or a few jobs)
    resubmitted: int = 0  # jobs submitted again after their module data was lost with a worker


@dataclass
class _Blob:
    """Scattered bytes (a module or a large stdin) and how many jobs still need them."""

    key: str
    future: Any = None
    users: int = 0
    sent: int = 0


@dataclass
class _Pending:
    job: Job
    task: Task
    path: Path  # the module's file, read again only if its bytes must be sent again
    stdin: bytes | None  # inline stdin, or None when it travels as a blob (task.stdin_sha)
    attempts: int = 1
    sent: dict[str, int] = field(default_factory=dict)  # blob -> which sending of it the job's task used


def _module_digest(job: Job, policy: Policy, seen: dict[Path, str | None]) -> str:
    """The SHA-256 of the job's module, checked as the supervisor checks it (same messages)."""
    from .supervisor import RunSpec, open_module

    fd = open_module(RunSpec(job.module, policy=policy))  # raises WasijailError, as a local run would
    try:
        digest = seen.get(job.module)
        if digest is None:
            sha = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                sha.update(chunk)
            digest = seen[job.module] = sha.hexdigest()
        return digest
    finally:
        os.close(fd)


def _error(detail: str) -> RunResult:
    return RunResult(1, Outcome(OutcomeKind.ERROR, detail), b"", b"")


def _resolved(policy: Policy) -> Policy:
    """The policy with the client's environment copied in, so `--env NAME` means this host's NAME."""
    if not policy.inherit_env:
        return policy
    return attrs.evolve(policy, env=tuple(policy.resolved_env(os.environ)), inherit_env=())


def _failure(exc: BaseException) -> tuple[str, str]:
    """What to do with the jobs of a task that ended without a result: ("fail" | "again" | "lost", why).

    "lost": the task's module or stdin bytes died with their workers; send them again, then the jobs.
    """
    from distributed import KilledWorker

    name = type(exc).__name__
    if isinstance(exc, KilledWorker):
        return "fail", f"cluster: the workers running this job died repeatedly ({_one_line(exc)})"
    if isinstance(exc, WorkerUnavailable):
        return "again", f"cluster: {_one_line(exc)}"
    if "Cancelled" in name or "lost" in str(exc).lower():
        return "lost", f"cluster: the job's data was lost with its workers ({_one_line(exc) or name})"
    return "fail", f"cluster: {name}: {_one_line(exc)}"


class _ClusterBatch:
    """The client's side of one batch: prepare, submit in chunks, record, resubmit what was lost.

    Jobs go out in tasks of one or more jobs. The first tasks carry one job
    each; once results come back, a task carries as many jobs as take about
    TASK_SECONDS (dask spends a few milliseconds of CPU on every task, a
    hello-world module about fifteen), never so many that the last tasks
    would leave workers idle.
    """

    TASK_SECONDS = 0.25
    MAX_CHUNK = 32

    def __init__(self, client, summary: ClusterSummary, record: Callable[[Job, RunResult, str | None], None],
                 cache: bool, window: int | None) -> None:
        self.client = client
        self.summary = summary
        self.record = record
        self.cache = cache
        self.token = uuid.uuid4().hex[:12]
        self.threads = max(1, sum(client.nthreads().values()))
        self.window = window or 2 * self.threads + 4  # tasks in flight: one running and one queued per thread
        self.blobs: dict[str, _Blob] = {}
        self.queue: deque[tuple[Job, Policy, str]] = deque()
        self.retry: deque[_Pending] = deque()
        self.in_flight: dict[Any, list[_Pending]] = {}
        self.job_seconds: float | None = None  # running estimate of one job's wall time
        self.numbers = itertools.count()

    # Preparing, on this host: each job's policy and module are checked as a local run checks them, so a
    # job that cannot start fails here, alone, with the local batch's message.

    def add(self, job: Job, policy: Policy, digests: dict[Path, str]) -> None:
        try:
            job_pol = _resolved(job_policy(policy, job))
            if job.stdin is not None:
                job.stdin.open("rb").close()  # a missing stdin fails as a local run reports it
            sha = _module_digest(job, job_pol, digests)
        except WasijailError as exc:  # a PolicyError too
            self.record(job, _error(str(exc)), None)
            return
        except OSError as exc:
            self.record(job, _error(f"{exc.filename}: {exc.strerror}"), None)
            return
        self.queue.append((job, job_pol, sha))
        self._blob(f"module-{sha}").users += 1

    def _blob(self, name: str) -> _Blob:
        return self.blobs.setdefault(name, _Blob(f"wasijail-{name}"))

    def _prepare(self, job: Job, job_pol: Policy, sha: str) -> _Pending | None:
        try:
            data = job.stdin.read_bytes() if job.stdin is not None else b""
        except OSError as exc:
            self._release(f"module-{sha}")
            self.record(job, _error(f"{exc.filename}: {exc.strerror}"), None)
            return None
        stdin_sha = None
        if len(data) > INLINE_STDIN:  # sent apart, once per distinct content, by top_up
            stdin_sha = hashlib.sha256(data).hexdigest()
            self._blob(f"stdin-{stdin_sha}").users += 1
            data = None
        suffix = ".wat" if job.module.suffix == ".wat" else ".wasm"
        task = Task(job.id, sha, suffix, job.args, job_pol, job.module.name, self.cache, stdin_sha)
        return _Pending(job, task, job.module, data)

    # Module bytes and large stdin: scattered once under their hash, dropped when no job needs them.

    def _send(self, blob: _Blob, load: Callable[[], bytes]) -> bool:
        if blob.future is not None and blob.future.status not in ("lost", "cancelled", "error"):
            return False
        data = load()
        blob.sent += 1  # a dask key is never reused: a released key may still be on its way out
        key = f"{blob.key}-{self.token}-{blob.sent}"
        (blob.future,) = self.client.scatter({key: data}, hash=False).values()
        return True

    def _release(self, name: str | None) -> None:
        if name is None:
            return
        blob = self.blobs[name]
        blob.users -= 1
        if blob.users <= 0:
            blob.future = None  # the last reference: dask frees it on the cluster

    def _sent(self, pending: _Pending, kind: str, sha: str, path: Path):
        """The future of the job's module or stdin bytes, scattered first if need be."""
        name = f"{kind}-{sha}"
        blob = self.blobs[name]

        def load() -> bytes:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise WasijailError(f"{exc.filename}: {exc.strerror}") from None
            if hashlib.sha256(data).hexdigest() != sha:
                raise WasijailError(f"{path}: changed while the batch ran")
            return data

        if self._send(blob, load) and kind == "module":
            self.summary.modules_sent += 1
        pending.sent[name] = blob.sent
        return blob.future

    # Submitting.

    def _chunk_size(self) -> int:
        if self.job_seconds is None:
            return 1
        size = int(self.TASK_SECONDS / max(self.job_seconds, 1e-3))
        balance = (len(self.queue) + len(self.retry)) // (4 * self.threads)  # keep the tail spread out
        return max(1, min(size, balance, self.MAX_CHUNK))

    def _finish(self, pending: _Pending, result: RunResult, worker: str | None) -> None:
        self.record(pending.job, result, worker)
        self._release(f"module-{pending.task.sha}")
        if pending.task.stdin_sha is not None:
            self._release(f"stdin-{pending.task.stdin_sha}")

    def top_up(self, completed) -> None:
        while len(self.in_flight) < self.window:
            chunk: list[_Pending] = []
            size = self._chunk_size()
            while len(chunk) < size and (self.retry or self.queue):
                pending = self.retry.popleft() if self.retry else self._prepare(*self.queue.popleft())
                if pending is not None:
                    chunk.append(pending)
            if not chunk:
                return
            modules, stdins = {}, {}
            for pending in list(chunk):
                task = pending.task
                try:
                    modules[task.sha] = self._sent(pending, "module", task.sha, pending.path)
                    if task.stdin_sha is not None:
                        stdins[task.stdin_sha] = self._sent(pending, "stdin", task.stdin_sha, pending.job.stdin)
                except WasijailError as exc:  # a file removed or changed since the first pass
                    chunk.remove(pending)
                    self._finish(pending, _error(str(exc)), None)
            if not chunk:
                continue
            items = [(p.task, p.stdin) for p in chunk]
            future = self.client.submit(run_jobs, items, modules, stdins, pure=False, retries=TASK_RETRIES,
                                        key=f"wasijail-jobs-{self.token}-{next(self.numbers)}")
            self.summary.tasks += 1
            self.in_flight[future] = chunk
            completed.add(future)

    def done(self, future, value) -> None:
        chunk = self.in_flight.pop(future, None)
        if chunk is None:
            return
        if future.status == "finished":
            results, worker = value
            by_id = dict(results)
            for pending in chunk:
                result = by_id[pending.job.id]
                self._finish(pending, result, worker)
                wall = result.usage.wall_time
                if wall > 0:
                    self.job_seconds = wall if self.job_seconds is None else 0.8 * self.job_seconds + 0.2 * wall
            return
        if self.client.status != "running":
            # Cancelled because the scheduler is gone: not the jobs' failure; a rerun runs them.
            raise ClusterError(self.lost())
        exc = value[1] if isinstance(value, tuple) else value
        what, why = _failure(exc if isinstance(exc, BaseException) else RuntimeError(str(exc)))
        for pending in chunk:
            if what == "fail" or pending.attempts > RESUBMITS:
                self._finish(pending, _error(why), None)
                continue
            if what == "lost":
                for name, sending in pending.sent.items():
                    blob = self.blobs[name]
                    if blob.sent == sending:  # not sent again since: send it again before the job
                        blob.future = None
            pending.attempts += 1
            self.summary.resubmitted += 1
            self.retry.append(pending)

    def lost(self, exc: BaseException | None = None) -> str:
        why = f" ({_one_line(exc)})" if exc is not None else ""
        return f"lost the connection to the Dask scheduler{why}; finished jobs are in the results file: rerun to resume"

    def cancel(self) -> None:
        futures = list(self.in_flight)
        self.in_flight.clear()
        if futures:
            try:
                self.client.cancel(futures, asynchronous=False)
            except Exception:  # the scheduler may be gone already
                pass


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


def run_cluster_batch(jobs: list[Job], *, policy: Policy, results: Path, client,
                      output_dir: Path | None = None,
                      on_result: Callable[[Job, dict], None] | None = None,
                      cache: bool = True, window: int | None = None, retry: Iterable[str] = (),
                      check_timeout: float = DEFAULT_CHECK_TIMEOUT,
                      on_start: Callable[[Batch], None] | None = None) -> ClusterSummary:
    """Run every job whose result is missing, stale or retried on the cluster behind `client`.

    Appends one record per finished job (`batch.Batch`, plus the address of
    the worker that ran it) as results arrive: the client is the only writer,
    and a job whose task dask ran twice is still written once. Verdicts are
    judged on the client, in threads, as many at once as the cluster has job
    slots. `cache`: workers keep compiled modules. `window`: tasks in flight
    at once. The summary is the whole batch's, as the local batch's is.
    """
    from distributed import as_completed

    summary = ClusterSummary()
    with Batch(jobs, policy=policy, results=results, output_dir=output_dir, retry=retry,
               check_timeout=check_timeout, on_result=on_result) as plan:
        if on_start is not None:
            on_start(plan)
        written: set[str] = set()
        judging = ThreadPoolExecutor(max_workers=max(1, sum(client.nthreads().values())),
                                     thread_name_prefix="wasijail-judge")
        judged: list[Future] = []

        def record(job: Job, result: RunResult, worker: str | None) -> None:
            if job.id in written:
                return
            written.add(job.id)
            if job.expect is None and job.check is None:
                plan.finish(job, result, worker)
            else:  # files to compare, a checker to run: beside the cluster's work, not in its way
                judged.append(judging.submit(plan.finish, job, result, worker))

        batch = _ClusterBatch(client, summary, record, cache, window)
        for job in plan.todo:
            batch.add(job, policy, plan.digests)
        completed = as_completed(with_results=True, raise_errors=False)
        try:
            batch.top_up(completed)
            while batch.in_flight:
                for future, value in completed.next_batch(block=True):
                    batch.done(future, value)
                batch.top_up(completed)
            for future in judged:
                future.result()  # a write that failed fails the batch, as it does locally
        except (OSError, RuntimeError) as exc:
            batch.cancel()
            judging.shutdown(wait=False, cancel_futures=True)
            if client.status != "running" or (isinstance(exc, OSError) and exc.errno is None):
                raise ClusterError(batch.lost(exc)) from None  # dask's comm errors are OSErrors without errno
            raise
        except BaseException:
            # Interrupted (Ctrl-C) or the scheduler went away: what finished is written; the rest is
            # cancelled on the cluster and runs on the next, resuming, run; checkers are killed.
            batch.cancel()
            judging.shutdown(wait=False, cancel_futures=True)
            raise
        judging.shutdown()
        return plan.summary(summary)
