"""`wasijail batch`: many untrusted jobs from a JSON Lines manifest, resumably.

Manifest: one JSON object per line::

    {"id": "s1", "module": "sub/s1.wasm", "args": ["in.txt"], "env": {"LANG": "C"},
     "stdin": "inputs/s1.txt", "preopens": ["data::/data::ro"], "limits": {"timeout": "5s"}}

Only `id` and `module` are required. Relative paths resolve against the
manifest's folder. Each finished job appends one line to the results file
(written whole, so an interrupted batch leaves only complete lines); a rerun
with the same results file skips the jobs already there.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import trio

from .policy import Policy, PolicyError, Preopen, parse_dir_flag
from .results import Outcome, OutcomeKind, RunResult, Usage, WasijailError
from .supervisor import RunSpec, Supervisor, open_supervisor

# Output at most this long goes inline into the results line; longer needs --output-dir.
INLINE_LIMIT = 64 * 1024
_JOB_KEYS = {"id", "module", "args", "env", "stdin", "preopens", "limits"}


class ManifestError(WasijailError):
    """The manifest cannot be read: names the file, the line and what is wrong."""


@dataclass(frozen=True)
class Job:
    id: str
    module: Path
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    stdin: Path | None = None
    preopens: tuple[Preopen, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)
    line: int = 0


def load_manifest(path: Path) -> list[Job]:
    """Every job in the manifest, validated; the first problem raises ManifestError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from None
    base = path.parent
    jobs: list[Job] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not JSON: {exc.msg}") from None
        job = _job(entry, where, base, number)
        if job.id in seen:
            raise ManifestError(f"{where}: id {job.id!r} appears twice")
        seen.add(job.id)
        jobs.append(job)
    return jobs


def _job(entry: Any, where: str, base: Path, number: int) -> Job:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    unknown = set(entry) - _JOB_KEYS
    if unknown:
        raise ManifestError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_JOB_KEYS))})")
    job_id, module = entry.get("id"), entry.get("module")
    if not isinstance(job_id, str) or not job_id:
        raise ManifestError(f"{where}: id: expected a non-empty string")
    if "/" in job_id or job_id in (".", "..") or "\0" in job_id:
        raise ManifestError(f"{where}: id: {job_id!r} cannot name an output file")
    if not isinstance(module, str) or not module:
        raise ManifestError(f"{where}: module: expected a path")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ManifestError(f"{where}: args: expected a list of strings")
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ManifestError(f"{where}: env: expected an object of strings")
    stdin = entry.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise ManifestError(f"{where}: stdin: expected a file path")
    limits = entry.get("limits", {})
    if not isinstance(limits, dict):
        raise ManifestError(f"{where}: limits: expected an object")
    preopens = []
    for i, item in enumerate(entry.get("preopens", [])):
        try:
            if isinstance(item, str):
                pre = parse_dir_flag(item)
                host = item.split("::")[0]
                pre = Preopen(base / host if not os.path.isabs(host) else Path(host), pre.guest, pre.mode)
            elif isinstance(item, dict) and set(item) <= {"host", "guest", "mode"} and "host" in item:
                host = Path(item["host"])
                pre = Preopen(base / host if not host.is_absolute() else host,
                              item.get("guest", item["host"]), item.get("mode", "rw"))
            else:
                raise ManifestError(f"{where}: preopens[{i}]: expected \"HOST[::GUEST[::ro]]\" or "
                                    "{\"host\", \"guest\", \"mode\"}")
        except PolicyError as exc:
            raise ManifestError(f"{where}: preopens[{i}]: {exc}") from None
        preopens.append(pre)
    try:
        Policy().with_limits(f"{where}: limits", **limits)
    except PolicyError as exc:
        raise ManifestError(str(exc)) from None
    except TypeError:
        raise ManifestError(f"{where}: limits: unknown key") from None
    return Job(
        id=job_id, module=base / module, args=tuple(args), env=tuple(env.items()),
        stdin=(base / stdin) if stdin else None, preopens=tuple(preopens), limits=limits, line=number,
    )


def read_results(results: Path) -> dict[str, dict]:
    """The records in a results file by id; a torn last line (killed mid-write) is ignored."""
    records: dict[str, dict] = {}
    try:
        with results.open() as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records[record["id"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return records


def finished_ids(results: Path) -> set[str]:
    return set(read_results(results))


def failures(results: Path, ids: set[str]) -> int:
    """How many of these jobs, in the whole results file, did not exit 0."""
    return sum(1 for job_id, record in read_results(results).items()
               if job_id in ids and (record.get("outcome") != "exit" or record.get("returncode") != 0))


def job_policy(base: Policy, job: Job) -> Policy:
    policy = base
    for pre in job.preopens:
        policy = policy.with_preopen(pre.host, pre.guest, mode=pre.mode)
    for name, value in job.env:
        policy = policy.with_env(name, value)
    if job.limits:
        policy = policy.with_limits(f"job {job.id}: limits", **job.limits)
    return policy


async def run_job(supervisor: Supervisor, base: Policy, job: Job) -> RunResult:
    """One job through the supervisor; a job that cannot start fails alone, as an error."""
    try:
        policy = job_policy(base, job)
        stdin = job.stdin.read_bytes() if job.stdin is not None else b""
        return await supervisor.run_spec(
            RunSpec(job.module, job.args, policy, argv0=job.module.name),
            stdin=stdin, capture_stdout=True, capture_stderr=True)
    except (WasijailError, PolicyError) as exc:
        return RunResult(1, Outcome(OutcomeKind.ERROR, str(exc)), b"", b"")
    except OSError as exc:
        return RunResult(1, Outcome(OutcomeKind.ERROR, f"{exc.filename}: {exc.strerror}"), b"", b"")


def result_record(job: Job, result: RunResult, output_dir: Path | None) -> dict:
    outcome = result.outcome
    record: dict[str, Any] = {
        "id": job.id,
        "outcome": outcome.kind.value,
        "returncode": result.returncode,
    }
    if outcome.detail:
        record["detail"] = outcome.detail
    if outcome.signal is not None:
        record["signal"] = outcome.signal
    record["usage"] = {k: getattr(result.usage, k) for k in Usage.__dataclass_fields__}
    for name in ("stdout", "stderr"):
        data = getattr(result, name) or b""
        if output_dir is not None:
            target = output_dir / f"{job.id}.{name}"
            target.write_bytes(data)
            record[f"{name}_file"] = str(target)
        else:
            try:
                record[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                record[f"{name}_base64"] = base64.b64encode(data).decode()
    return record


@dataclass
class BatchSummary:
    total: int = 0
    skipped: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failed: int = 0  # jobs that did not exit 0
    wall_time: float = 0.0
    workers: Counter = field(default_factory=Counter)  # jobs per worker (--cluster only)

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())


async def run_batch(jobs: list[Job], *, policy: Policy, results: Path, parallel: int,
                    output_dir: Path | None = None,
                    on_result: Callable[[Job, RunResult], None] | None = None,
                    cache=None) -> BatchSummary:
    """Run every job not already in `results`, appending one line per finished job."""
    summary = BatchSummary(total=len(jobs))
    todo = pending_jobs(jobs, results, output_dir, summary)
    started = time.monotonic()
    with results.open("a") as sink:
        send, receive = trio.open_memory_channel(math.inf)
        for job in todo:
            send.send_nowait(job)
        send.close()
        async with open_supervisor(max_parallel=parallel, cache=cache) as supervisor:
            if supervisor.cache is not None:
                await compile_modules(supervisor, policy, todo)

            async def worker() -> None:
                async for job in receive:
                    result = await run_job(supervisor, policy, job)
                    write_result(sink, summary, job, result, output_dir)
                    if on_result is not None:
                        on_result(job, result)

            async with trio.open_nursery() as nursery:
                for _ in range(max(1, parallel)):
                    nursery.start_soon(worker)
    summary.wall_time = time.monotonic() - started
    return summary


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


def pending_jobs(jobs: list[Job], results: Path, output_dir: Path | None,
                 summary: BatchSummary) -> list[Job]:
    """The jobs not yet in `results` (the rest count as skipped), with the output folder
    made and a torn last line of `results` dropped, ready for appending."""
    done = finished_ids(results)
    todo = [job for job in jobs if job.id not in done]
    summary.skipped = len(jobs) - len(todo)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    _repair_torn_tail(results)
    return todo


def write_result(sink, summary: BatchSummary, job: Job, result: RunResult, output_dir: Path | None,
                 **extra: Any) -> None:
    """Append one job's record (plus `extra` fields) and count it in the summary."""
    record = result_record(job, result, output_dir)
    record.update(extra)
    sink.write(json.dumps(record) + "\n")  # whole lines only: an interrupt never leaves half a record
    sink.flush()
    summary.outcomes[result.outcome.kind.value] += 1
    if result.returncode != 0 or result.outcome.kind is not OutcomeKind.EXIT:
        summary.failed += 1


def _repair_torn_tail(results: Path) -> None:
    """Drop a last line that a killed batch left half written, so appends stay valid JSONL."""
    try:
        with results.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


class Progress:
    """A rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, skipped: int, stream=sys.stderr) -> None:
        self.total, self.stream = total, stream
        self.done, self.failed = skipped, 0
        self.started = time.monotonic()
        self._bar = None
        if stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed, {task.fields[rate]}/s"),
                            TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("jobs", total=total, completed=skipped, failed=0, rate="0")
            self._bar.start()

    def update(self, job: Job, result: RunResult) -> None:
        self.done += 1
        if result.returncode != 0 or result.outcome.kind is not OutcomeKind.EXIT:
            self.failed += 1
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failed=self.failed, rate=f"{rate:.1f}")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {job.id}: {result.outcome.kind.value}"
                              f" (status {result.returncode})\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def format_summary(summary: BatchSummary) -> str:
    rows = [("jobs", str(summary.total)), ("skipped (already done)", str(summary.skipped)),
            ("ran", str(summary.done))]
    rows += [(f"  {kind}", str(count)) for kind, count in sorted(summary.outcomes.items())]
    rows += [("not exit 0", str(summary.failed)), ("wall time", f"{summary.wall_time:.2f} s")]
    if summary.done and summary.wall_time > 0:
        rows.append(("rate", f"{summary.done / summary.wall_time:.1f} jobs/s"))
    if summary.workers:
        rows.append(("workers", str(len(summary.workers))))
        rows += [(f"  {worker}", str(count)) for worker, count in sorted(summary.workers.items())]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"
