"""`wasijail batch --cluster`: the same manifest on Dask distributed workers.

The tests share one cluster started the README's way, as separate processes:
`dask scheduler` and `dask worker ADDRESS --nworkers 2 --preload
wasijail.cluster` (nannies restart a killed worker). The CLI tests of
`--cluster local:2` start their own LocalCluster in the `wasijail` process.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import trio

pytest.importorskip("distributed", reason="the cluster extra is not installed: pip install -e '.[cluster]'"
                                          " (scripts/test installs it)")

from wasijail.batch import BatchError, load_manifest, run_batch  # noqa: E402
from wasijail.cache import ModuleCache, engine_fingerprint  # noqa: E402
from wasijail.cluster import (  # noqa: E402
    ClusterError, open_cluster, run_cluster_batch, worker_reports, worker_stats)
from wasijail.doctor import probe_layers  # noqa: E402
from wasijail.policy import Policy  # noqa: E402

from helpers import PROGRAMS, assert_one_line_error, summary_rows, text, wasijail  # noqa: E402

# A module that rests 100 ms in poll_oneoff, then prints "rested" and exits 0:
# long enough for a worker to be killed while it runs.
NAP_WAT = """(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 200) "rested %s\\n")
    (func (export "_start")
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 100000000))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
        (i32.store (i32.const 300) (i32.const 200))
        (i32.store (i32.const 304) (i32.const %d))
        (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
    )
)
"""


def nap_module(folder: Path, tag: str) -> Path:
    """A nap module of its own (a new module hash) that prints "rested TAG"."""
    path = folder / f"nap-{tag}.wat"
    path.write_text(NAP_WAT % (tag, len(f"rested {tag}\n")))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask() -> str:
    beside = Path(sys.executable).with_name("dask")
    return str(beside) if beside.exists() else (shutil.which("dask") or "dask")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = (folder / "dask.log").open("wb")
    processes = [subprocess.Popen([_dask(), "scheduler", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                                  stdout=log, stderr=log, cwd=folder)]
    try:
        processes.append(subprocess.Popen(
            [_dask(), "worker", address, "--nworkers", "2", "--nthreads", "2", "--preload", "wasijail.cluster",
             "--no-dashboard"], stdout=log, stderr=log, cwd=folder))
        worker_pids: list[int] = []
        with open_cluster(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield client
            worker_pids = list(_pids(client).values())
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)
        # A worker the nanny restarted shortly before can take the nanny's 8 s grace time to close.
        time.sleep(0.2)
        for pid in worker_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture
def cluster(client):
    """The shared cluster, with both workers back (a test before may have killed some)."""
    client.wait_for_workers(2, timeout=60)
    yield client


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# The mixed manifest: every kind of ending, stdin, arguments, environment, preopens.
def write_mixed(folder: Path, count: int) -> Path:
    folder.mkdir()
    (folder / "data").mkdir()
    (folder / "data" / "in.txt").write_text("copied through a preopen\n")
    (folder / "out").mkdir()
    (folder / "bytes.bin").write_bytes(b"\xff\xfe not utf-8\n")
    kinds = [
        {"module": str(PROGRAMS / "demo_p1.wasm")},
        {"module": str(PROGRAMS / "exit7.wasm")},
        {"module": str(PROGRAMS / "trap.wasm")},
        {"module": str(PROGRAMS / "cat.wasm"), "stdin": "bytes.bin"},
        {"module": str(PROGRAMS / "env.wasm"), "args": ["a b", "c"], "env": {"LANG": "C", "X": "1"}},
        {"module": str(PROGRAMS / "demo.wasm"), "args": ["/data/in.txt", "/out/{id}.txt"],
         "preopens": ["data::/data::ro", "out::/out"]},
        {"module": str(PROGRAMS / "demo.wasm"), "args": ["/data/../etc/passwd", "/out/x"],
         "preopens": ["data::/data::ro", "out::/out"]},
        {"module": str(PROGRAMS / "demo.wasm"), "args": ["/data/in.txt", "/data/new.txt"],
         "preopens": ["data::/data::ro"]},
        {"module": "no-such-module.wasm"},
        {"module": str(PROGRAMS / "demo_p1.wasm"), "preopens": ["no-such-dir::/x"]},
        {"module": str(PROGRAMS / "cat.wasm"), "stdin": "no-such-input.txt"},
        {"module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}},
        {"module": str(PROGRAMS / "demo_wat.wasm"), "limits": {"fuel": 1_000_000}},
    ]
    manifest = folder / "jobs.jsonl"
    with manifest.open("w") as f:
        for i in range(count):
            kind = kinds[i % len(kinds)]
            job_id = f"job{i:03}"
            entry = json.loads(json.dumps(kind).replace("{id}", job_id))
            f.write(json.dumps({"id": job_id, **entry}) + "\n")
    return manifest


def comparable(record: dict, folder: Path) -> tuple:
    """What must match between a local and a cluster run: all but timings and the worker."""
    fields = [record.get(k) for k in ("outcome", "returncode", "detail", "signal", "stdout",
                                      "stdout_base64", "stderr", "stderr_base64")]
    if fields[2] is not None:
        fields[2] = fields[2].replace(str(folder), "FOLDER")  # each run has its own folder
    return tuple(fields)


def test_200_mixed_jobs_through_local_2_give_the_local_batch_results(tmp_path):
    """`wasijail batch --cluster local:2` and `wasijail batch --jobs 2` on the same 200 jobs."""
    local_manifest = write_mixed(tmp_path / "local", 200)
    cluster_manifest = write_mixed(tmp_path / "cluster", 200)
    local_results, cluster_results = tmp_path / "local.jsonl", tmp_path / "cluster.jsonl"
    # --no-cache: two runs in one process that first use a ModuleCache at once can read its key file
    # half written, and two first runs of one module store through the same .tmp<pid> file; the
    # outcomes are the same without it.
    local_run = wasijail("batch", "--jobs", "2", "--no-cache", "--allow-failures", "--results", local_results,
                         local_manifest, timeout=180)
    assert local_run.returncode == 0, text(local_run.stderr)
    cluster_run = wasijail("batch", "--cluster", "local:2", "--allow-failures", "--results", cluster_results,
                           cluster_manifest, timeout=180)
    err = text(cluster_run.stderr)
    assert cluster_run.returncode == 0, err
    local = {r["id"]: r for r in read_lines(local_results)}
    remote = read_lines(cluster_results)
    assert len(remote) == 200 and len({r["id"] for r in remote}) == 200
    assert ({r["id"]: comparable(r, tmp_path / "cluster") for r in remote}
            == {k: comparable(v, tmp_path / "local") for k, v in local.items()})
    # The same records, field for field, but for the worker that ran each job.
    assert all(set(r) - {"worker"} == set(local[r["id"]]) for r in remote)
    kinds = Counter(r["outcome"] for r in remote)
    assert kinds == Counter({"exit": 124, "error": 45, "trap": 16, "timeout": 15}), kinds
    # Jobs that could not start (missing module or stdin) fail on the client, the rest on a worker;
    # the summary counts each worker's jobs.
    workers = Counter(r["worker"] for r in remote if "worker" in r)
    assert len(workers) == 2 and sum(workers.values()) == 200 - 15 - 15
    summary = summary_rows(err)
    assert summary["ran"] == "200" and summary["workers"] == "2"
    for worker, count in workers.items():
        assert summary[worker] == str(count)
    copied = sorted(p.name for p in (tmp_path / "cluster" / "out").iterdir())
    assert copied == sorted(p.name for p in (tmp_path / "local" / "out").iterdir())
    assert len(copied) == 15
    assert (tmp_path / "cluster" / "out" / "job005.txt").read_text() == "copied through a preopen\n"
    by_id = {r["id"]: r for r in remote}
    assert by_id["job000"]["stdout"] == "hello world\n"
    assert by_id["job003"]["stdout_base64"] == "//4gbm90IHV0Zi04Cg=="
    assert by_id["job004"]["stdout"].startswith("argc=3\nargv[0]=env.wasm\nargv[1]=a b\nargv[2]=c\n")
    assert "env:LANG=C\nenv:X=1\n" in by_id["job004"]["stdout"]
    assert by_id["job006"]["stderr"] == "error opening input /data/../etc/passwd: Capabilities insufficient\n"
    assert by_id["job007"]["stderr"] == "error opening output /data/new.txt: Capabilities insufficient\n"
    assert by_id["job008"]["detail"].endswith("no-such-module.wasm: no such file")
    assert by_id["job009"]["detail"] == f"preopen {tmp_path / 'cluster' / 'no-such-dir'}: no such directory"
    assert by_id["job010"]["detail"] == f"{tmp_path / 'cluster' / 'no-such-input.txt'}: No such file or directory"
    assert by_id["job011"]["outcome"] == "timeout" and by_id["job011"]["returncode"] == 134


def _pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def _kill_after(client, count: int, which: str):
    """An on_result callback that SIGKILLs worker processes once `count` results are in."""
    seen = []
    killed: dict[str, int] = {}  # address -> tasks it was running or holding when killed

    def on_result(job, result):
        seen.append(job.id)
        if len(seen) == count:
            pids = _pids(client)
            busy = client.processing()
            # "one": a worker holding tasks (a snapshot may show the other one idle between tasks).
            victims = sorted(pids, key=lambda a: not busy.get(a))[:1] if which == "one" else sorted(pids)
            for address in victims:
                os.kill(pids[address], signal.SIGKILL)
                killed[address] = len(busy.get(address, ()))

    return on_result, killed


def _nap_manifest(folder: Path, count: int, tag: str) -> Path:
    module = nap_module(folder, tag)
    manifest = folder / f"{tag}.jsonl"
    with manifest.open("w") as f:
        for i in range(count):
            f.write(json.dumps({"id": f"{tag}{i:03}", "module": str(module)}) + "\n")
    return manifest


@pytest.mark.parametrize("which", ["one", "all"])
def test_killed_worker_loses_no_job_and_duplicates_none(cluster, tmp_path, which):
    manifest = _nap_manifest(tmp_path, 60, f"kill{which}")
    results = tmp_path / "results.jsonl"
    on_result, killed = _kill_after(cluster, 10, which)
    summary = run_cluster_batch(load_manifest(manifest), policy=Policy.default(), results=results,
                                client=cluster, on_result=on_result)
    assert len(killed) == (1 if which == "one" else 2)
    assert all(killed.values()), killed  # each was killed in the middle of its jobs
    lines = read_lines(results)
    assert sorted(r["id"] for r in lines) == [f"kill{which}{i:03}" for i in range(60)]  # once each
    assert {(r["outcome"], r["returncode"], r["stdout"]) for r in lines} == {("exit", 0, f"rested kill{which}\n")}
    assert summary.done == 60 and summary.failed == 0
    assert set(killed) <= set(summary.workers)
    if which == "all":
        # The rest ran on the workers the nannies started in place of the killed ones.
        assert len(summary.workers) > 2
        # The module's only copies died with the workers: it was sent again, its jobs resubmitted.
        assert summary.modules_sent == 2 and summary.resubmitted > 0
    else:
        assert summary.modules_sent == 1


def test_a_module_compiles_once_per_worker(cluster, tmp_path):
    manifest = _nap_manifest(tmp_path, 40, "once")
    module = (tmp_path / "nap-once.wat").read_bytes()
    summary = run_cluster_batch(load_manifest(manifest), policy=Policy.default(),
                                results=tmp_path / "r.jsonl", client=cluster)
    assert summary.done == 40 and summary.modules_sent == 1
    assert len(summary.workers) == 2
    limits = Policy.default().limits
    key = ModuleCache.key(module, engine_fingerprint(fuel=bool(limits.fuel)))
    stats = cluster.run(worker_stats)
    assert {address: s["compiled"].get(key) for address, s in stats.items()} == {a: 1 for a in summary.workers}


def test_large_stdin_travels_apart_and_no_cache_compiles_every_time(cluster, tmp_path):
    big = bytes(range(256)) * 1200  # 300 KiB: scattered under its hash rather than inside the task
    (tmp_path / "big.bin").write_bytes(big)
    module = nap_module(tmp_path, "nocache")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(
        [json.dumps({"id": f"cat{i}", "module": str(PROGRAMS / "cat.wasm"), "stdin": "big.bin"}) + "\n"
         for i in range(3)] + [json.dumps({"id": f"nap{i}", "module": str(module)}) + "\n" for i in range(4)]))
    results = tmp_path / "r.jsonl"
    summary = run_cluster_batch(load_manifest(manifest), policy=Policy.default(), results=results,
                                client=cluster, output_dir=tmp_path / "out", cache=False)
    assert summary.done == 7 and summary.failed == 0
    assert summary.modules_sent == 2  # cat.wasm and the nap module, each once
    for i in range(3):
        assert (tmp_path / "out" / f"cat{i}.stdout").read_bytes() == big
    limits = Policy.default().limits
    key = ModuleCache.key(module.read_bytes(), engine_fingerprint(fuel=bool(limits.fuel)))
    assert all(key not in s["compiled"] for s in cluster.run(worker_stats).values())


def test_resume_skips_finished_jobs(cluster, tmp_path):
    manifest = _nap_manifest(tmp_path, 12, "resume")
    results = tmp_path / "r.jsonl"
    jobs = load_manifest(manifest)
    first = run_cluster_batch(jobs[:5], policy=Policy.default(), results=results, client=cluster)
    assert first.done == 5
    with results.open("a") as f:
        f.write('{"id": "resume005", "outc')  # a line torn by a kill
    again = run_cluster_batch(jobs, policy=Policy.default(), results=results, client=cluster)
    assert again.skipped == 5 and again.done == 7
    assert sorted(r["id"] for r in read_lines(results)) == [f"resume{i:03}" for i in range(12)]


def test_worker_lacking_a_required_layer_refuses_the_job(cluster, tmp_path):
    missing = [layer for layer in probe_layers() if not layer.available]
    if not missing:
        pytest.skip("this host provides every sandbox layer: no worker can lack one")
    layer = missing[0]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n"
                                for i in range(4)))
    results = tmp_path / "r.jsonl"
    summary = run_cluster_batch(load_manifest(manifest), policy=Policy.default().with_require(layer.name),
                                results=results, client=cluster)
    assert summary.failed == 4
    for record in read_lines(results):
        assert (record["outcome"], record["returncode"]) == ("error", 1)
        assert record["detail"] == (f"worker {record['worker']} refuses the job: the policy requires sandbox"
                                    f" layer {layer.name}, which this worker lacks: {layer.detail}")
    fine = run_cluster_batch(load_manifest(manifest), policy=Policy.default().with_require("seccomp"),
                             results=tmp_path / "fine.jsonl", client=cluster)
    assert fine.failed == 0 and fine.done == 4


def test_worker_reports_are_doctor_reports(cluster):
    reports = worker_reports(cluster)
    assert sorted(reports) == sorted(cluster.scheduler_info()["workers"])
    for report in reports.values():
        assert [line.split()[0] for line in report.splitlines()] == [
            "seccomp", "landlock", "userns", "mountns", "netns", "openat2", "cgroup"]


def test_scheduler_without_workers_is_one_clear_error():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=":0") as empty:
        with pytest.raises(ClusterError) as info:
            with open_cluster(empty.scheduler_address, timeout=1):
                pass
    assert str(info.value) == (f"the Dask scheduler at {empty.scheduler_address} has no workers (waited 1 s);"
                               f" start them with: dask worker {empty.scheduler_address} --preload wasijail.cluster")


# -- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address,message", [
    ("localhost:8786", "--cluster: 'localhost:8786' is not tcp://HOST:PORT (a Dask scheduler) or local:N"),
    ("local:0", "--cluster: local:N needs at least one worker"),
    ("tcp://host", "is not tcp://HOST:PORT"),
])
def test_bad_cluster_address_is_a_usage_error(tmp_path, address, message):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n")
    err = assert_one_line_error(wasijail("batch", "--cluster", address, manifest), status=2)
    assert message in err


def test_unreachable_scheduler_is_one_line_within_the_timeout(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n")
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    err = assert_one_line_error(wasijail("batch", "--cluster", address, "--results", tmp_path / "r.jsonl",
                                         manifest, timeout=60))
    assert time.monotonic() - started < 30
    assert err.startswith(f"wasijail: error: cannot reach the Dask scheduler at {address} within 10 s")
    assert not (tmp_path / "r.jsonl").exists()


def test_cache_dir_applies_to_the_local_batch_only(tmp_path):
    err = assert_one_line_error(wasijail("batch", "--cluster", "local:1", "--cache-dir", tmp_path,
                                         tmp_path / "jobs.jsonl"), status=2)
    assert "--cache-dir applies to the local batch" in err


def test_without_the_extra_cluster_says_how_to_install(tmp_path):
    blocker = tmp_path / "block"
    for name in ("dask", "distributed"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    err = assert_one_line_error(wasijail("batch", "--cluster", "local:1", manifest, env=env))
    assert err == ("wasijail: error: --cluster needs Dask distributed, which is not installed:"
                   " pip install 'wasijail[cluster]'")


def test_local_batch_does_not_import_dask(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n")
    code = ("import sys\nfrom wasijail.cli import main\n"
            f"status = main(['batch', '--results', {str(tmp_path / 'r.jsonl')!r}, {str(manifest)!r}])\n"
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert text(proc.stdout) == "0 []\n", text(proc.stderr)


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working folder is `folder` (the CLI's workers, fork servers and children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(folder):
                    with open(f"/proc/{entry}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(entry))
            except OSError:
                pass
    return found


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, text(proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("the cluster batch made no progress")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_interrupted_cluster_batch_resumes(tmp_path, how):
    manifest = _nap_manifest(tmp_path, 50, "cli")
    results = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "wasijail", "batch", "--cluster", "local:2", "--results", str(results),
               str(manifest)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    _wait_for_lines(results, 8, proc)
    proc.send_signal(how)
    proc.wait(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130
        assert text(proc.stderr.read()).splitlines()[-1] == (
            f"wasijail: interrupted: finished jobs are in {results}; rerun to resume")
    deadline = time.monotonic() + 30
    while _processes_in(tmp_path) and time.monotonic() < deadline:  # workers notice their parent is gone
        time.sleep(0.1)
    assert _processes_in(tmp_path) == []
    partial = read_lines(results)
    assert 8 <= len(partial) < 50
    rerun = subprocess.run(command, capture_output=True, cwd=tmp_path, timeout=180)
    assert rerun.returncode == 0, text(rerun.stderr)
    lines = read_lines(results)
    assert sorted(r["id"] for r in lines) == [f"cli{i:03}" for i in range(50)]
    assert {r["stdout"] for r in lines} == {"rested cli\n"}
    summary = summary_rows(text(rerun.stderr))
    assert summary["skipped (unchanged)"] == str(len(partial)) and summary["ran"] == str(50 - len(partial))
    assert summary["workers"] == "2"


def test_cli_on_a_running_scheduler_shows_worker_reports(cluster, tmp_path):
    """--cluster tcp://HOST:PORT with --verbose: each worker's doctor report, then the batch."""
    address = cluster.scheduler.address
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(
        json.dumps({"id": f"w{i}", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n" for i in range(6)))
    proc = wasijail("batch", "--cluster", address, "--verbose", "--results", tmp_path / "r.jsonl", manifest,
                    timeout=120)
    err = text(proc.stderr)
    assert proc.returncode == 0, err
    workers = sorted(cluster.scheduler_info()["workers"])
    reports = err.split("[1/6]")[0]
    assert [line for line in reports.splitlines() if line.startswith("worker ")] == [f"worker {w}:" for w in workers]
    assert reports.count("\nseccomp      available  (") == 2
    assert {r["stdout"] for r in read_lines(tmp_path / "r.jsonl")} == {"hello world\n"}
    assert 1 <= int(summary_rows(err)["workers"]) <= len(workers)


def test_losing_the_scheduler_ends_the_batch_with_one_line(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = (tmp_path / "dask.log").open("wb")
    scheduler = subprocess.Popen([_dask(), "scheduler", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                                 stdout=log, stderr=log, cwd=tmp_path)
    worker = subprocess.Popen([_dask(), "worker", address, "--nthreads", "2", "--preload", "wasijail.cluster",
                               "--no-dashboard"], stdout=log, stderr=log, cwd=tmp_path)
    try:
        manifest = _nap_manifest(tmp_path, 200, "lost")
        results = tmp_path / "results.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "wasijail", "batch", "--cluster", address, "--results",
                                 str(results), str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tmp_path)
        _wait_for_lines(results, 6, proc)
        scheduler.kill()
        assert proc.wait(timeout=60) == 1
        last = text(proc.stderr.read()).splitlines()[-1]
        assert last == ("wasijail: error: lost the connection to the Dask scheduler; finished jobs are in the"
                        " results file: rerun to resume")
        lines = read_lines(results)  # whole lines only, each a job that really ran
        assert 6 <= len(lines) < 200 and len({r["id"] for r in lines}) == len(lines)
        assert {(r["outcome"], r["stdout"]) for r in lines} == {("exit", "rested lost\n")}
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait()
        log.close()


def test_verdicts_fingerprints_and_retry_through_the_cluster(cluster, tmp_path):
    """The local batch's resume, --retry, verdicts and whole-batch summary, with the jobs on workers."""
    module = str(nap_module(tmp_path, "judged"))
    checker = tmp_path / "grade.sh"
    checker.write_text('#!/bin/sh\ngrep -q "rested judged" && echo 0.5\n')
    checker.chmod(0o755)
    jobs = [{"id": "right", "module": module, "expect": {"stdout": "rested judged\n"}},
            {"id": "wrong", "module": module, "expect": {"stdout": "tired\n"}},
            {"id": "checked", "module": module, "check": ["./grade.sh"]},
            {"id": "slow", "module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}}]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    results = tmp_path / "r.jsonl"

    def run(**extra):
        return run_cluster_batch(load_manifest(manifest), policy=Policy.default(), results=results, client=cluster,
                                 **extra)

    first = run()
    records = {r["id"]: r for r in read_lines(results)}
    assert {k: (r["outcome"], r.get("verdict"), r.get("score")) for k, r in records.items()} == {
        "right": ("exit", "pass", None), "wrong": ("exit", "fail", None), "checked": ("exit", "pass", 0.5),
        "slow": ("timeout", None, None)}
    assert records["wrong"]["diff"]["stdout"].endswith("-tired\n+rested judged\n")
    assert all("worker" in r for r in records.values())
    assert (first.ran, first.failing, first.verdicts) == (4, ["wrong", "slow"], Counter({"pass": 2, "fail": 1}))
    again = run()
    assert (again.ran, again.skipped, again.failing, again.scores) == (0, 4, ["wrong", "slow"], [0.5])
    retried = run(retry={"timeout"})
    assert (retried.ran, retried.outcomes["timeout"]) == (1, 1)
    jobs[1]["expect"] = {"stdout": "rested judged\n"}  # the grader fixes the expectation: that job alone reruns
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    fixed = run()
    assert (fixed.ran, fixed.failing, fixed.verdicts["pass"]) == (1, ["slow"], 3)
    assert len(read_lines(results)) == 4 + 1 + 1
    with pytest.raises(BatchError, match="is inside .*, a writable preopen of job"):
        (tmp_path / "out").mkdir()
        manifest.write_text(json.dumps({**jobs[0], "preopens": [".::/all"]}) + "\n")
        run(output_dir=tmp_path / "out")


def test_each_job_failure_gives_the_local_batch_record_through_the_cluster(cluster, tmp_path):
    """The one runner: a job that fails before, as or after it starts, on the client or on a worker,
    writes the record the local batch writes for it, field for field but for usage and the worker."""
    (tmp_path / "empty.wasm").write_bytes(b"")
    (tmp_path / "text.wasm").write_text("not a module\n")
    (tmp_path / "v2.wasm").write_bytes(b"\0asm\x02\0\0\0")
    exit7 = str(PROGRAMS / "exit7.wasm")
    jobs = [{"id": "missing-module", "module": "none.wasm"},  # client side: the module cannot be opened
            {"id": "empty-module", "module": "empty.wasm"},
            {"id": "module-too-large", "module": exit7, "limits": {"module_size": 16}},
            {"id": "missing-stdin", "module": exit7, "stdin": "none.txt"},
            {"id": "missing-preopen", "module": exit7, "preopens": ["none::/x"]},  # worker side, before the child
            {"id": "not-wasm", "module": "text.wasm"},  # worker side, in the child
            {"id": "bad-version", "module": "v2.wasm"},
            {"id": "trap", "module": str(PROGRAMS / "trap.wasm")},
            {"id": "exit7", "module": exit7},
            {"id": "expected-0", "module": exit7, "expect": {"exit": 0}}]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))

    def records(path: Path) -> dict[str, dict]:
        return {r["id"]: {k: v for k, v in r.items() if k not in ("usage", "worker")} for r in read_lines(path)}

    local = tmp_path / "local.jsonl"
    trio.run(functools.partial(run_batch, load_manifest(manifest), policy=Policy.default(), results=local,
                               parallel=2))
    remote = tmp_path / "cluster.jsonl"
    summary = run_cluster_batch(load_manifest(manifest), policy=Policy.default(), results=remote, client=cluster)
    assert records(remote) == records(local)
    assert summary.failing == [job["id"] for job in jobs]
    ended = {k: (r["outcome"], r["returncode"]) for k, r in records(remote).items()}
    assert ended == {**{job["id"]: ("error", 1) for job in jobs[:7]}, "trap": ("trap", 134),
                     "exit7": ("exit", 7), "expected-0": ("exit", 7)}
    details = {k: r.get("detail") for k, r in records(remote).items()}
    assert details["missing-module"] == f"{tmp_path / 'none.wasm'}: no such file"
    assert details["empty-module"] == f"{tmp_path / 'empty.wasm'}: empty file, not a module"
    assert details["missing-stdin"] == f"{tmp_path / 'none.txt'}: No such file or directory"
    assert details["missing-preopen"] == f"preopen {tmp_path / 'none'}: no such directory"
    assert details["not-wasm"].startswith(f"{tmp_path / 'text.wasm'}")
    assert records(remote)["expected-0"]["verdict"] == "fail"
