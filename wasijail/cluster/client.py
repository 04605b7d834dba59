"""The client side of `wasijail batch --cluster`: one manifest's jobs on Dask workers.

`open_cluster` connects to a scheduler (or starts `local:N`);
`run_cluster_batch` reads the manifest as the local batch does, sends every
distinct module once (scattered under its SHA-256), submits tasks of one or
a few jobs (`_ClusterBatch`, run by `worker.run_jobs`) and hands each job's
result to the local batch's `batch.Batch`, which judges it (expectations,
checkers: on the client) and writes its record, so the results file has the
same format, fingerprints and resume rules. Only the client writes it: a job
a dead worker was running is run again elsewhere, and its line is still
written once.

Dask is an optional extra (`pip install 'wasijail[cluster]'`): it is imported
only by the functions here that need it, never by the local batch.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import logging
import os
import re
import uuid
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import attrs

from ..batch import Batch, BatchSummary, Job, job_error, job_policy
from ..policy import Policy
from ..results import RunResult, WasijailError
from ..verdict import DEFAULT_CHECK_TIMEOUT
from .worker import Task, WorkerUnavailable, run_jobs, worker_report

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


def import_distributed():
    """The `distributed` package, or a ClusterError that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


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
    from ..supervisor import RunSpec, open_module

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


def _resolved(policy: Policy) -> Policy:
    """The policy with the client's environment copied in, so `--env NAME` means this host's NAME."""
    if not policy.inherit_env:
        return policy
    return attrs.evolve(policy, env=tuple(policy.resolved_env(os.environ)), inherit_env=())


class Failure(enum.Enum):
    """What the client does with the jobs of a task that ended without results."""

    FAIL = enum.auto()  # record each as an `error` result: running it again would end the same way
    AGAIN = enum.auto()  # submit them again: their worker could not run jobs then (WorkerUnavailable)
    LOST = enum.auto()  # their module or stdin bytes died with their workers: send those again, then the jobs


def _failure(exc: BaseException) -> tuple[Failure, str]:
    """How a task that raised `exc` failed, and why in one line, by the exception's type."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return Failure.FAIL, f"cluster: the workers running this job died repeatedly ({_one_line(exc)})"
    if isinstance(exc, WorkerUnavailable):
        return Failure.AGAIN, f"cluster: {_one_line(exc)}"
    if isinstance(exc, CancelledError):  # dask cancels a task whose scattered inputs were lost
        return Failure.LOST, f"cluster: the job's data was lost with its workers ({_one_line(exc)})"
    return Failure.FAIL, f"cluster: {type(exc).__name__}: {_one_line(exc)}"


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
        except (WasijailError, OSError) as exc:  # a PolicyError too
            self.record(job, job_error(exc), None)
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
            self.record(job, job_error(exc), None)
            return None
        stdin_sha = None
        if len(data) > INLINE_STDIN:  # sent apart, once per distinct content, by top_up
            stdin_sha = hashlib.sha256(data).hexdigest()
            self._blob(f"stdin-{stdin_sha}").users += 1
            data = None
        suffix = ".wat" if job.module.suffix == ".wat" else ".wasm"
        task = Task(job.id, sha, suffix, job.args, job_pol, str(job.module), self.cache, stdin_sha)
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
                    self._finish(pending, job_error(exc), None)
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
            if what is Failure.FAIL or pending.attempts > RESUBMITS:
                self._finish(pending, RunResult.error(why), None)
                continue
            if what is Failure.LOST:
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
