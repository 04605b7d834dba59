"""`wasijail batch`: many untrusted jobs from a JSON Lines manifest, resumably, with verdicts.

Manifest: one JSON object per line::

    {"id": "s1", "module": "sub/s1.wasm", "args": ["in.txt"], "env": {"LANG": "C"},
     "stdin": "inputs/s1.txt", "preopens": ["data::/data::ro"], "limits": {"timeout": "5s"},
     "expect": {"exit": 0, "stdout": {"file": "expected/s1.txt"}}, "check": ["./grade", "s1"]}

Only `id` and `module` are required. Relative paths resolve against the
manifest's folder; `expect`, `check` and `outputs` are described in
verdict.py. Each finished job appends one line to the results file
(resultsfile.py: the last line per id wins) carrying the job's fingerprint,
a hash of everything that decides its run. A rerun skips a job only when its
latest line has the same fingerprint and an outcome not named by --retry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import trio

from .flags import parse_dir_flag
from .nofollow import open_dir, write_beneath
from .policy import Policy, PolicyError, Preopen
from .results import OutcomeKind, RunResult, Usage, WasijailError
from .resultsfile import ResultsFile
from .supervisor import RunSpec, Supervisor, open_supervisor
from .verdict import (DEFAULT_CHECK_TIMEOUT, PASS, VERDICTS, Check, Expect, ExpectationError, Judge, LiveCheckers,
                      OutputFile, Verdict, parse_check, parse_expect, parse_outputs)

_JOB_KEYS = {"id", "module", "args", "env", "stdin", "preopens", "limits", "expect", "check", "outputs"}
# The summary names this many failed jobs, then says how many more.
FAILED_SHOWN = 10
OUTCOMES = tuple(kind.value for kind in OutcomeKind)


class ManifestError(WasijailError):
    """The manifest cannot be read: names the file, the line and what is wrong."""


class BatchError(WasijailError):
    """The batch cannot run as asked (a folder it would write is reachable by a job, ...)."""


@dataclass(frozen=True)
class Job:
    id: str
    module: Path
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    stdin: Path | None = None
    preopens: tuple[Preopen, ...] = ()
    limits: dict[str, int | float | None] = field(default_factory=dict)  # checked values, by limit name
    line: int = 0
    expect: Expect | None = None
    check: Check | None = None
    outputs: tuple[OutputFile, ...] = ()


def default_results_path(manifest: Path) -> Path:
    """Where a manifest's results go unless --results says: beside it, hw1.jsonl -> hw1.results.jsonl."""
    return manifest.with_name(f"{manifest.stem}.results.jsonl")


def load_manifest(path: Path, policy: Policy | None = None) -> list[Job]:
    """Every job in the manifest, validated; the first problem raises ManifestError.

    `policy`: the batch's policy, whose preopens a job's expected output
    files may lie in besides its own.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from None
    base = path.parent
    jobs: list[Job] = []
    seen: set[str] = set()
    shared = policy.preopens if policy is not None else ()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not JSON: {exc.msg}") from None
        job = _job(entry, where, base, number, shared)
        if job.id in seen:
            raise ManifestError(f"{where}: id {job.id!r} appears twice")
        seen.add(job.id)
        jobs.append(job)
    if not jobs:
        raise ManifestError(f"{path}: no jobs (one JSON object per line, each with an id and a module)")
    return jobs


def _job(entry: Any, where: str, base: Path, number: int, shared: tuple[Preopen, ...]) -> Job:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    unknown = set(entry) - _JOB_KEYS
    if unknown:
        raise ManifestError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_JOB_KEYS))})")
    job_id, module = entry.get("id"), entry.get("module")
    if not isinstance(job_id, str) or not job_id:
        raise ManifestError(f"{where}: id: expected a non-empty string")
    if "/" in job_id or job_id in (".", "..") or "\0" in job_id or job_id.startswith("."):
        raise ManifestError(f"{where}: id: {job_id!r} cannot name an output file")
    if not isinstance(module, str) or not module:
        raise ManifestError(f"{where}: module: expected a path")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ManifestError(f"{where}: args: expected a list of strings")
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ManifestError(f"{where}: env: expected an object of strings")
    try:  # names and values checked by the policy's own door, named as the manifest names them
        Policy(env=env)
    except PolicyError as exc:
        raise ManifestError(str(exc.at(f"{where}: env", exc.item))) from None
    stdin = entry.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise ManifestError(f"{where}: stdin: expected a file path")
    limits = entry.get("limits", {})
    if not isinstance(limits, dict):
        raise ManifestError(f"{where}: limits: expected an object")
    preopens = []
    for i, item in enumerate(entry.get("preopens", [])):
        # The policy's own doors: `--dir`'s grammar for a string, [[fs.preopen]]'s keys for an object; a
        # relative host resolves against the manifest's folder, as a policy file's against its own.
        try:
            if isinstance(item, str):
                pre = parse_dir_flag(item, base_dir=base)
            elif isinstance(item, dict) and set(item) <= {"host", "guest", "mode"} and "host" in item:
                try:
                    pre = Preopen.under(base, item["host"], item.get("guest"), item.get("mode", "rw"))
                except PolicyError as exc:
                    raise exc.at(None, exc.field) from None
            else:
                raise ManifestError(f"{where}: preopens[{i}]: expected \"HOST[::GUEST[::ro]]\" or "
                                    "{\"host\", \"guest\", \"mode\"}")
        except PolicyError as exc:
            raise ManifestError(f"{where}: preopens[{i}]: {exc}") from None
        preopens.append(pre)
    try:  # checked once, here, as a flag's are; the job keeps the values
        checked = Policy().with_limits(f"{where}: limits", **limits).limits
    except PolicyError as exc:
        raise ManifestError(str(exc)) from None
    limits = {name: getattr(checked, name) for name in limits}
    reachable = shared + tuple(preopens)
    try:
        expect = parse_expect(entry["expect"], base, reachable) if "expect" in entry else None
        check = parse_check(entry["check"], base) if "check" in entry else None
        outputs = parse_outputs(entry.get("outputs", []), base, reachable)
    except ExpectationError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    return Job(
        id=job_id, module=base / module, args=tuple(args), env=tuple(env.items()),
        stdin=(base / stdin) if stdin else None, preopens=tuple(preopens), limits=limits, line=number,
        expect=expect, check=check, outputs=outputs,
    )


def job_policy(base: Policy, job: Job) -> Policy:
    policy = base
    for pre in job.preopens:
        policy = policy.with_preopen(pre.host, pre.guest, mode=pre.mode)
    for name, value in job.env:
        policy = policy.with_env(name, value)
    if job.limits:
        policy = policy.with_limits(f"job {job.id}: limits", **job.limits)
    return policy


# -- fingerprints -----------------------------------------------------------------------------------


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("wasijail")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_digest(path: Path, seen: dict[Path, str | None]) -> str | None:
    """SHA-256 of a file's bytes (None when it cannot be read), once per path per batch."""
    if path not in seen:
        sha = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
            seen[path] = sha.hexdigest()
        except OSError:
            seen[path] = None
    return seen[path]


def fingerprint(job: Job, policy: Policy, digests: dict[Path, str | None], version: str) -> str:
    """A hash of everything that decides the job's run and verdict.

    The module's and stdin's bytes, arguments, the effective policy (preopens,
    environment as resolved now, limits, required layers), the expectations
    (expected files by content), the checker's command, and wasijail's version.
    """
    try:
        effective = job_policy(policy, job)
        rules = attrs.evolve(effective, source=None, env=(), inherit_env=()).to_toml()
        env = effective.resolved_env(os.environ)
    except PolicyError as exc:
        rules, env = f"policy error: {exc}", []
    parts = {
        "wasijail": version,
        "module": [str(job.module), file_digest(job.module, digests)],
        "args": list(job.args),
        "stdin": None if job.stdin is None else [str(job.stdin), file_digest(job.stdin, digests)],
        "policy": rules,
        "env": env,
        "expect": job.expect.fingerprint() if job.expect else None,
        "check": list(job.check.argv) if job.check else None,
        "outputs": [o.name for o in job.outputs],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- running --------------------------------------------------------------------------------------------


def job_error(exc: WasijailError | OSError) -> RunResult:
    """The ``error`` result of a job that cannot run (bad policy, unreadable module or stdin),
    saying why in one line: the same for the local batch, the cluster client and its workers."""
    if isinstance(exc, OSError):
        return RunResult.error(f"{exc.filename}: {exc.strerror}")
    return RunResult.error(str(exc))


async def run_job(supervisor: Supervisor, spec: RunSpec, stdin: bytes) -> RunResult:
    """Run one job, its output captured: the one runner of the local batch and the cluster's
    workers. A job that cannot start fails alone, as an ``error`` result."""
    try:
        return await supervisor.run_spec(spec, stdin=stdin, capture_stdout=True, capture_stderr=True)
    except (WasijailError, OSError) as exc:
        return job_error(exc)


async def _run_local(supervisor: Supervisor, base: Policy, job: Job) -> RunResult:
    try:
        policy = job_policy(base, job)
        stdin = job.stdin.read_bytes() if job.stdin is not None else b""
    except (WasijailError, OSError) as exc:
        return job_error(exc)
    return await run_job(supervisor, RunSpec(job.module, job.args, policy), stdin)


def parse_retry(text: str) -> frozenset[str]:
    """--retry's value: outcomes, comma-separated."""
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - set(OUTCOMES))
    if not names or unknown:
        raise ValueError(f"--retry: {unknown[0] if unknown else text!r} is not an outcome"
                         f" (outcomes: {', '.join(OUTCOMES)})")
    return names


def _inside(path: Path, folder: str) -> bool:
    real = os.path.realpath(path)
    return real == folder or real.startswith(folder.rstrip("/") + "/")


def refuse_writable_overlap(jobs: Iterable[Job], policy: Policy, writes: dict[str, Path]) -> None:
    """A BatchError if a folder or file the batch writes lies in a writable preopen of one of its jobs.

    A job could plant links there, or rewrite another job's result.
    """
    roots: dict[Path, str] = {}
    for pre in policy.preopens:
        if pre.mode == "rw":
            roots.setdefault(pre.host, "the policy")
    for job in jobs:
        for pre in job.preopens:
            if pre.mode == "rw":
                roots.setdefault(pre.host, f"job {job.id}")
    for host, who in roots.items():
        real = os.path.realpath(host)
        for what, path in writes.items():
            if _inside(path, real):
                raise BatchError(f"{what} {path} is inside {host}, a writable preopen of {who}: a job could plant"
                                 " links or rewrite results there; use a folder outside every writable preopen")


class Batch:
    """One run of a manifest: which jobs to run, and the writing of their results.

    Shared by the local batch and the cluster client. `finish` judges a job
    and appends its record; it may be called from several threads at once.
    """

    def __init__(self, jobs: list[Job], *, policy: Policy, results: Path, output_dir: Path | None = None,
                 retry: Iterable[str] = (), check_timeout: float = DEFAULT_CHECK_TIMEOUT,
                 on_result: Callable[[Job, dict], None] | None = None) -> None:
        self.jobs, self.policy, self.on_result = jobs, policy, on_result
        self.started = time.monotonic()
        self.ran = 0
        self.workers: Counter = Counter()
        self._lock = threading.Lock()
        self._closed = False
        self._out_fd: int | None = None
        self.scratch: Path | None = None
        self.output_dir = output_dir
        writes = {"the results file": results}
        if output_dir is not None:
            writes["--output-dir"] = output_dir
        refuse_writable_overlap(jobs, policy, writes)
        self.live = LiveCheckers()
        self._held = ExitStack()  # what close() releases: the results file, the output folder, scratch
        with ExitStack() as on_fail:
            on_fail.callback(self.close)
            self.results = ResultsFile(results)
            self._held.callback(self.results.close)
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                self._out_fd = open_dir(output_dir)
                self._held.callback(os.close, self._out_fd)
            if any(job.check is not None for job in jobs):
                self.scratch = Path(tempfile.mkdtemp(prefix="wasijail-check-"))
                self._held.callback(shutil.rmtree, self.scratch, ignore_errors=True)
                refuse_writable_overlap(jobs, policy, {"the checkers' folder": self.scratch})
            self.judge = Judge(scratch=self.scratch, timeout=check_timeout, live=self.live)
            self.digests: dict[Path, str | None] = {}
            version = _version()
            retry = frozenset(retry)
            self.fingerprints = {job.id: fingerprint(job, policy, self.digests, version) for job in jobs}
            self.todo = []
            for job in jobs:
                record = self.results.records.get(job.id)
                if (record is None or record.get("fingerprint") != self.fingerprints[job.id]
                        or record.get("outcome") in retry):
                    self.todo.append(job)
            on_fail.pop_all()
        self.skipped = len(jobs) - len(self.todo)

    @property
    def problems(self) -> list[str]:
        """Lines of the results file that could not be read (each names its line number)."""
        return self.results.problems

    def verdict(self, job: Job, result: RunResult) -> Verdict | None:
        return self.judge.judge(job.id, job.expect, job.check, job.outputs, result)

    def finish(self, job: Job, result: RunResult, worker: str | None = None) -> dict | None:
        """Judge the job, append its record and report it; None when the batch was closed meanwhile."""
        verdict = self.verdict(job, result)
        with self._lock:
            if self._closed:  # interrupted while judging: a killed checker says nothing about the job
                return None
            record = self._record(job, result, verdict)
            if worker is not None:
                record["worker"] = worker
                self.workers[worker] += 1
            self.results.append(record)
            self.ran += 1
            if self.on_result is not None:
                self.on_result(job, record)
        return record

    def _record(self, job: Job, result: RunResult, verdict: Verdict | None) -> dict:
        outcome = result.outcome
        record: dict[str, Any] = {"id": job.id, "outcome": outcome.kind.value, "returncode": result.returncode}
        if outcome.detail:
            record["detail"] = outcome.detail
        if outcome.signal is not None:
            record["signal"] = outcome.signal
        if verdict is not None:
            record.update(verdict.fields())
        record["usage"] = {k: getattr(result.usage, k) for k in Usage.__dataclass_fields__}
        for name in ("stdout", "stderr"):
            data = getattr(result, name) or b""
            if self.output_dir is not None:
                assert self._out_fd is not None
                write_beneath(self._out_fd, f"{job.id}.{name}", data)
                record[f"{name}_file"] = str(self.output_dir / f"{job.id}.{name}")
            else:
                try:
                    record[name] = data.decode("utf-8")
                except UnicodeDecodeError:
                    record[f"{name}_base64"] = base64.b64encode(data).decode()
        record["fingerprint"] = self.fingerprints[job.id]
        record["module_sha256"] = self.digests.get(job.module)
        return record

    def summary(self, summary: BatchSummary | None = None) -> BatchSummary:
        """The whole batch as the results file now has it (this run's jobs and earlier runs')."""
        summary = summary if summary is not None else BatchSummary()
        summary.total, summary.skipped, summary.ran = len(self.jobs), self.skipped, self.ran
        summary.wall_time = time.monotonic() - self.started
        summary.workers = self.workers
        for job in self.jobs:
            record = self.results.records.get(job.id)
            if record is None or record.get("fingerprint") != self.fingerprints[job.id]:
                summary.pending.append(job.id)
                continue
            summary.outcomes[record.get("outcome", "?")] += 1
            if "verdict" in record:
                summary.verdicts[record["verdict"]] += 1
            if isinstance(record.get("score"), (int, float)):
                summary.scores.append(float(record["score"]))
            if record_failed(record):
                summary.failing.append(job.id)
        return summary

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.live.kill_all()
        self._held.close()  # once: the stack is empty afterwards

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record_failed(record: dict) -> bool:
    """A job failed when its verdict is not pass, or, without a verdict, when it did not exit 0."""
    if "verdict" in record:
        return record["verdict"] != PASS
    return record.get("outcome") != OutcomeKind.EXIT.value or record.get("returncode") != 0


@dataclass
class BatchSummary:
    """The whole batch: outcomes and verdicts of every job's current result, and this run's work."""

    total: int = 0
    skipped: int = 0  # unchanged since their result: not run again
    ran: int = 0  # run by this invocation
    outcomes: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    scores: list[float] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)  # ids, in manifest order
    pending: list[str] = field(default_factory=list)  # no current result (an interrupted run)
    wall_time: float = 0.0  # of this invocation
    workers: Counter = field(default_factory=Counter)  # jobs per worker (--cluster only)

    @property
    def done(self) -> int:
        return self.ran

    @property
    def failed(self) -> int:
        return len(self.failing)

    @property
    def ok(self) -> bool:
        return not self.failing and not self.pending


async def run_batch(jobs: list[Job], *, policy: Policy, results: Path, parallel: int,
                    output_dir: Path | None = None,
                    on_result: Callable[[Job, dict], None] | None = None,
                    cache=None, retry: Iterable[str] = (), check_timeout: float = DEFAULT_CHECK_TIMEOUT,
                    on_start: Callable[[Batch], None] | None = None) -> BatchSummary:
    """Run every job whose result is missing, stale or retried, appending one line per finished job.

    `on_start` sees the Batch before any job runs (the CLI
    reports unreadable results lines and starts its progress bar there).
    """
    with Batch(jobs, policy=policy, results=results, output_dir=output_dir, retry=retry,
               check_timeout=check_timeout, on_result=on_result) as batch:
        if on_start is not None:
            on_start(batch)
        send, receive = trio.open_memory_channel(math.inf)
        for job in batch.todo:
            send.send_nowait(job)
        send.close()
        async with open_supervisor(max_parallel=parallel, cache=cache) as supervisor:
            if supervisor.cache is not None:
                await compile_modules(supervisor, policy, batch.todo)

            async def worker() -> None:
                async for job in receive:
                    result = await _run_local(supervisor, policy, job)
                    if job.expect is None and job.check is None:
                        batch.finish(job, result)
                    else:  # reads files and may run a checker: off the event loop, killed on an interrupt
                        await trio.to_thread.run_sync(batch.finish, job, result, abandon_on_cancel=True)

            async with trio.open_nursery() as nursery:
                for _ in range(max(1, parallel)):
                    nursery.start_soon(worker)
        return batch.summary()


async def compile_modules(supervisor: Supervisor, base: Policy, jobs: list[Job]) -> None:
    """Compile each distinct module (per engine setting) into the cache once, before the jobs
    start, so jobs of one module do not each compile it side by side. A module that does not
    compile is left for its jobs to report."""
    seen: set[tuple[Path, bool]] = set()
    for job in jobs:
        try:
            policy = job_policy(base, job)
        except PolicyError:
            continue
        key = (job.module, bool(policy.limits.fuel))
        if key in seen:
            continue
        seen.add(key)
        try:
            await supervisor.compile(job.module, policy=policy)
        except (WasijailError, OSError):
            pass


# -- what the operator sees -----------------------------------------------------------------------------


def ending(record: dict) -> str:
    """Why a job ended as it did, in a few words: "status 7", "timed out after 5 s", "wasm trap: unreachable"."""
    outcome = record.get("outcome", "?")
    detail = str(record.get("detail") or "").strip()
    if outcome == "exit":
        return f"status {record.get('returncode')}"
    if outcome == "trap":
        lines = [line.strip() for line in detail.splitlines() if "wasm trap" in line] or detail.splitlines()
        return lines[-1].strip() if lines else "trap"
    return detail.splitlines()[0] if detail else f"status {record.get('returncode')}"


def reason(record: dict) -> str:
    """One line saying how a job ended and was judged: "timeout (timed out after 5 s)", "exit (status 0), pass"."""
    text = f"{record.get('outcome', '?')} ({ending(record)})"
    if "verdict" in record:
        text += f", {record['verdict']}" + (f" ({record['why']})" if record.get("why") else "")
        if isinstance(record.get("score"), (int, float)):
            text += f", score {record['score']:g}"
    return text


class Progress:
    """A rich progress bar on a terminal, plain lines otherwise; it starts when the batch does."""

    def __init__(self, total: int, skipped: int = 0, stream=sys.stderr) -> None:
        self.total, self.stream = total, stream
        self.done, self.skipped, self.failed = skipped, skipped, 0
        self.started = time.monotonic()
        self._bar = None

    def start(self, batch: Batch) -> None:
        """Report the unreadable lines of the results file, count the skipped jobs, show the bar."""
        for problem in batch.problems:
            self.write(f"wasijail: warning: {problem}\n")
        self.done = self.skipped = batch.skipped
        self.started = time.monotonic()
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed, {task.fields[rate]}/s"),
                            TimeRemainingColumn(), transient=False, console=Console(file=self.stream))
            self._task = self._bar.add_task("jobs", total=self.total, completed=self.done, failed=0, rate="0")
            self._bar.start()

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, end="", markup=False, highlight=False)
        else:
            self.stream.write(text)
            self.stream.flush()

    def update(self, job: Job, record: dict) -> None:
        self.done += 1
        if record_failed(record):
            self.failed += 1
        rate = (self.done - self.skipped) / max(time.monotonic() - self.started, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failed=self.failed, rate=f"{rate:.1f}")
        else:
            self.write(f"[{self.done}/{self.total}] {job.id}: {reason(record)}\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # before any closing line: an error, the interrupt notice or the summary


def format_summary(summary: BatchSummary) -> str:
    rows = [("jobs", str(summary.total)), ("  skipped (unchanged)", str(summary.skipped)),
            ("  ran", str(summary.ran))]
    if summary.pending:
        rows.append(("  no result yet", str(len(summary.pending))))
    rows.append(("outcomes", ""))
    rows += [(f"  {kind}", str(count)) for kind, count in sorted(summary.outcomes.items())]
    if summary.verdicts:
        rows.append(("verdicts", ""))
        rows += [(f"  {name}", str(summary.verdicts.get(name, 0))) for name in VERDICTS]
    if summary.scores:
        scores = summary.scores
        rows.append(("score", f"{sum(scores):g} total, {sum(scores) / len(scores):.3g} mean of {len(scores)}"))
    failed = ", ".join(summary.failing[:FAILED_SHOWN])
    if len(summary.failing) > FAILED_SHOWN:
        failed += f" and {len(summary.failing) - FAILED_SHOWN} more"
    rows.append(("failed", f"{summary.failed}" + (f": {failed}" if failed else "")))
    rows.append(("wall time", f"{summary.wall_time:.2f} s"))
    if summary.ran and summary.wall_time > 0:
        rows.append(("rate", f"{summary.ran / summary.wall_time:.1f} jobs/s"))
    if summary.workers:
        rows.append(("workers", str(len(summary.workers))))
        rows += [(f"  {worker}", str(count)) for worker, count in sorted(summary.workers.items())]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}".rstrip() for k, v in rows) + "\n"
