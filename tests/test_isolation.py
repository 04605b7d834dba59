"""No job exhausts the supervisor, the host or the jobs beside it (issue 13).

Each abusive module runs beside a healthy one, in one supervisor and in one
`wasijail batch`; the healthy job must finish with its own output, in
(generously) its own time, and the abuse must meet its limit. What a
compromised child (native code out of wasmtime) can do against the same limits
is in tests/escape/test_resource_isolation.py.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tracemalloc

import pytest
import trio
import trio.testing

from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.supervisor import RunSpec
from wasijail.descriptors import RUN_DESCRIPTORS, DescriptorBudget, raise_nofile_limit

from helpers import PROGRAMS, program

MiB = 1 << 20
HEALTHY_SECONDS = 30  # a generous bound: the healthy job waits on nothing the abuse holds


def big_directory(path, names: int = 2000):
    path.mkdir()
    for i in range(names):
        (path / (f"{i:05}" + "n" * 200)).touch()
    return path


def abuses(tmp_path) -> dict[str, tuple[str, tuple[str, ...], Policy]]:
    out = tmp_path / "out"
    out.mkdir()
    listing = big_directory(tmp_path / "listing")
    base = Policy.default()
    return {
        # One poll_oneoff with 600,000 subscriptions under a 64 MiB guest.
        "poll": ("pollflood.wasm", ("600000",), base.with_limits(memory="64MiB")),
        # Four memories of 48 MiB under a 64 MiB limit.
        "multimem": ("multimem.wasm", (), base.with_limits(memory="64MiB")),
        # 25 handles on a directory of 2000 long names, each listed once, all kept open.
        "readdir": ("dirlist.wasm", ("/d", "25"), base.with_preopen(listing, "/d", mode="ro")),
        "files": ("mkmany.wasm", ("/out", "100000"), base.with_preopen(out, "/out").with_limits(files=100)),
        "disk": ("filefill.wasm", ("/out/big", str(64 * MiB)),
                 base.with_preopen(out, "/out").with_limits(disk="1MiB")),
        # Directories opened until refused, with open_files unlimited.
        "dirhog": ("dirhog.wasm", ("/d",), base.with_preopen(listing, "/d", mode="ro")
                   .with_limits(open_files="unlimited")),
    }


def check_abuse(name: str, outcome: str, stdout: str, peak_memory: int, budget_handles: int) -> None:
    """What each abuse must meet (outcome as the result's kind name)."""
    if name == "poll":
        assert (outcome, stdout) == ("exit", "events 600000\n")
        # The guest's own 48 MB of subscriptions and events, the runtime, and a
        # bounded rest: before, the host kept ~250 bytes per subscription.
        assert peak_memory < 64 * MiB + 64 * MiB
    elif name == "multimem":
        assert outcome == "error" and "multiple memories" in stdout
    elif name == "readdir":
        assert (outcome, stdout) == ("exit", "entries 50050\n")
    elif name == "files":
        assert (outcome, stdout) == ("exit", "created 100\nfailed: Quota exceeded\n")
    elif name == "disk":
        assert (outcome, stdout) == ("exit", f"wrote {MiB}\nfailed: Quota exceeded\n")
    elif name == "dirhog":
        # The broker holds at most the handles its budget gave the run (the preopen is one).
        assert (outcome, stdout) == ("exit", f"opened {budget_handles - 1}\nfailed: No file descriptors available\n")


@pytest.mark.parametrize("name", ["poll", "multimem", "readdir", "files", "disk", "dirhog"])
async def test_abuse_beside_a_healthy_job(tmp_path, name):
    module, args, policy = abuses(tmp_path)[name]
    # A small descriptor budget: the dirhog holds it all, so the healthy job is admitted after it.
    budget = DescriptorBudget(600)
    traced = name == "readdir"  # what the supervisor itself allocates (tracing slows it: only here)
    if traced:
        tracemalloc.start()
    try:
        async with open_supervisor() as sup:
            sup.descriptors = budget
            results = {}

            async def run(key, prog, prog_args, pol):
                results[key] = await sup.run(program(prog), prog_args, policy=pol,
                                             capture_stdout=True, capture_stderr=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "abuse", module, args, policy)
                nursery.start_soon(run, "healthy", "demo_p1.wasm", (), Policy.default())
        _, supervisor_peak = tracemalloc.get_traced_memory()
    finally:
        if traced:
            tracemalloc.stop()
    healthy = results["healthy"]
    assert (healthy.outcome.kind, healthy.stdout) == (OutcomeKind.EXIT, b"hello world\n")
    assert healthy.usage.wall_time < HEALTHY_SECONDS
    abuse = results["abuse"]
    text = (abuse.stdout or b"").decode() if abuse.outcome.kind is OutcomeKind.EXIT else abuse.outcome.detail
    check_abuse(name, abuse.outcome.kind.value, text, abuse.usage.peak_memory,
                budget.handles_for(None, 1024))
    if traced:
        # What the supervisor allocated while serving both: listings stream, nothing
        # grows with the directory or the number of handles (before: 16 MiB).
        assert supervisor_peak < 4 * MiB, supervisor_peak


@pytest.mark.parametrize("call,errno", [("random", 0), ("longpath", 37)])
async def test_guest_sized_lengths_cost_the_host_no_copy(tmp_path, call, errno):
    """random_get of 96 MiB and a path of 96 MiB: the host works through them a
    piece at a time (before: 222 and 318 MiB peak for a 128 MiB guest)."""
    policy = Policy.default().with_limits(memory="128MiB").with_preopen(tmp_path, "/d")
    async with open_supervisor() as sup:
        result = await sup.run_spec(RunSpec(program("bigcalls.wasm"), (), policy, invoke=call,
                                            invoke_args=(str(96 * MiB),)), capture_stdout=True)
    assert result.stdout == f"{errno}\n".encode()  # ENAMETOOLONG for the path, as wasmtime
    assert result.usage.peak_memory < 128 * MiB + 32 * MiB


def test_readdir_costs_the_supervisor_what_one_reply_holds(tmp_path):
    from wasijail.protocol import broker as wire
    from wasijail.broker.handlers import Broker
    from wasijail.wasi import Oflags, Rights
    import os

    listing = big_directory(tmp_path / "listing")
    fd = os.open(listing, os.O_RDONLY | os.O_DIRECTORY)
    broker = Broker([(fd, True)])
    tracemalloc.start()
    try:
        for _ in range(200):
            reply = broker.dispatch(wire.PathOpen(0, 0, int(Oflags.DIRECTORY), 0, int(Rights.FD_READDIR), 0, b"."))
            broker.dispatch(wire.FdReaddir(reply.body.handle, 0, 4096))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        broker.close()
    assert held < 2 * MiB  # before: 129 MiB, the full listing cached per handle


def _batch_under_nofile(tmp_path, manifest, limit: int):
    results = tmp_path / "results.jsonl"

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "wasijail", "batch", "--jobs", "4", "--no-cache", "--allow-failures",
         "--results", str(results), str(manifest)],
        capture_output=True, preexec_fn=low_limit, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    return {record["id"]: record for record in map(json.loads, results.read_text().splitlines())}


def test_abuse_beside_healthy_jobs_in_one_batch_under_1024_descriptors(tmp_path):
    """The issue's setting: a common 1024-descriptor limit, four jobs with open_files
    unlimited, healthy jobs beside them and every other abuse at once."""
    jobs = []
    for name, (module, args, policy) in abuses(tmp_path).items():
        limits = {key: value for key, value in (("memory", policy.limits.memory), ("files", policy.limits.files),
                                                ("disk", policy.limits.disk)) if value is not None}
        if name == "dirhog":
            limits["open_files"] = "unlimited"
        preopens = [f"{p.host}::{p.guest}::{p.mode}" for p in policy.preopens]
        copies = 4 if name == "dirhog" else 1
        for i in range(copies):
            jobs.append({"id": f"{name}-{i}", "module": str(PROGRAMS / module), "args": list(args),
                         "preopens": preopens, "limits": limits})
    jobs.sort(key=lambda job: not job["id"].startswith("dirhog"))  # dirhogs first (a stable sort)
    for i in range(3):  # each started beside a dirhog
        jobs.insert(1 + 2 * i, {"id": f"healthy-{i}", "module": str(PROGRAMS / "demo_p1.wasm")})
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    records = _batch_under_nofile(tmp_path, manifest, 1024)
    assert len(records) == len(jobs)
    for i in range(3):
        healthy = records[f"healthy-{i}"]
        assert (healthy["outcome"], healthy["stdout"]) == ("exit", "hello world\n"), healthy
        assert healthy["usage"]["wall_time"] < HEALTHY_SECONDS
    opened = {records[f"dirhog-{i}"]["stdout"] for i in range(4)}
    (dirhog,) = opened  # each held the same budgeted share, one after another
    handles = int(dirhog.split()[1]) + 1
    assert handles + RUN_DESCRIPTORS < 1024  # admission kept the supervisor under its limit
    for job in jobs:
        name = job["id"].rsplit("-", 1)[0]
        if name in ("healthy", "dirhog"):
            continue
        record = records[job["id"]]
        text = record["stdout"] if record["outcome"] == "exit" else record["detail"]
        check_abuse(name, record["outcome"], text, record["usage"]["peak_memory"], handles)


def test_supervisor_raises_its_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_nofile_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_admission_waits_for_descriptors_instead_of_failing():
    budget = DescriptorBudget(100)
    entered = []
    release = trio.Event()

    async def job(name, count):
        async with budget.hold(count):
            entered.append((name, budget.free))
            if name == "big":
                await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(job, "big", 80)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(job, "next", 50)  # does not fit beside "big": waits
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(job, "small", 10)  # would fit, but arrived later: waits its turn
        await trio.testing.wait_all_tasks_blocked()
        assert entered == [("big", 20)]
        release.set()
    # Both were admitted once "big" left (and "small" not before "next" was).
    assert sorted(name for name, _ in entered[1:]) == ["next", "small"]
    assert budget.free == 100


def test_supervisor_takes_its_share_from_the_raised_limit():
    budget = DescriptorBudget.for_this_process()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert budget.total < soft
    assert budget.handles_for(64, 1024) == 64
    assert budget.handles_for(None, 1024) == min(1024, budget.total - RUN_DESCRIPTORS)
