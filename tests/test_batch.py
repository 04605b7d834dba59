"""`wasijail batch`: outcomes for a mixed manifest, resume after a kill, Ctrl-C, bad manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from wasijail.batch import load_manifest, run_batch
from wasijail.policy import Policy

from helpers import PROGRAMS, assert_one_line_error, text, wasijail

KINDS = {
    "ok": ({"module": str(PROGRAMS / "demo_p1.wasm")}, "exit", 0),
    "exit7": ({"module": str(PROGRAMS / "exit7.wasm")}, "exit", 7),
    "trap": ({"module": str(PROGRAMS / "trap.wasm")}, "trap", 134),
    "timeout": ({"module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}}, "timeout", 134),
    "missing": ({"module": "no-such-module.wasm"}, "error", 1),
}


def mixed_manifest(path, count: int) -> dict[str, tuple[str, int]]:
    expected = {}
    order = ["ok"] * 6 + ["exit7", "trap", "missing"] + ["timeout"] * (1 if count >= 100 else 0)
    with path.open("w") as f:
        for i in range(count):
            kind = order[i % len(order)]
            fields, outcome, status = KINDS[kind]
            job_id = f"{kind}-{i:04}"
            f.write(json.dumps({"id": job_id, **fields}) + "\n")
            expected[job_id] = (outcome, status)
    return expected


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_200_mixed_jobs_give_200_right_results(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    expected = mixed_manifest(manifest, 200)
    results = tmp_path / "results.jsonl"
    summary = await run_batch(load_manifest(manifest), policy=Policy.default(), results=results, parallel=2)
    lines = read_lines(results)
    assert len(lines) == 200
    assert {r["id"]: (r["outcome"], r["returncode"]) for r in lines} == expected
    assert summary.done == 200 and summary.skipped == 0
    assert Counter(r["outcome"] for r in lines) == Counter(v[0] for v in expected.values())
    hello = next(r for r in lines if r["id"] == "ok-0000")
    assert hello["stdout"] == "hello world\n" and hello["stderr"] == ""
    missing = next(r for r in lines if r["outcome"] == "error")
    assert missing["detail"].endswith("no-such-module.wasm: no such file")


async def test_output_dir_and_stdin_file(tmp_path):
    (tmp_path / "in.txt").write_bytes(b"\xffbinary input\n")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "cat", "module": str(PROGRAMS / "cat.wasm"), "stdin": "in.txt"}) + "\n")
    results = tmp_path / "r.jsonl"
    await run_batch(load_manifest(manifest), policy=Policy(), results=results, parallel=1,
                    output_dir=tmp_path / "out")
    (record,) = read_lines(results)
    assert (tmp_path / "out" / "cat.stdout").read_bytes() == b"\xffbinary input\n"
    assert record["stdout_file"] == str(tmp_path / "out" / "cat.stdout")


def _start_batch(tmp_path, manifest, results, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "wasijail", "batch", "--jobs", "2", "--results", str(results), *extra,
         str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


def _wait_for_lines(path, count, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, "batch ended before it was interrupted"
        time.sleep(0.02)
    raise AssertionError("batch made no progress")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_interrupted_batch_resumes_without_repeating(tmp_path, how):
    manifest = tmp_path / "jobs.jsonl"
    with manifest.open("w") as f:
        for i in range(60):
            f.write(json.dumps({"id": f"job{i:03}", "module": str(PROGRAMS / "cat.wasm"),
                                "stdin": str(manifest)}) + "\n")
    results = tmp_path / "results.jsonl"
    proc = _start_batch(tmp_path, manifest, results)
    _wait_for_lines(results, 10, proc)
    forkserver = _children_of(proc.pid)
    proc.send_signal(how)
    proc.wait(timeout=30)
    if how == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in text(proc.stderr.read())
    time.sleep(0.2)
    for pid in forkserver:  # the fork server and every child went with the batch
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    partial = [json.loads(line) for line in results.read_text().splitlines() if line.endswith("}")]
    assert 10 <= len(partial) < 60
    rerun = _start_batch(tmp_path, manifest, results)
    assert rerun.wait(timeout=120) == 0, text(rerun.stderr.read())
    ids = [r["id"] for r in read_lines(results)]
    assert sorted(ids) == [f"job{i:03}" for i in range(60)]  # each job exactly once


def test_exit_status_counts_earlier_failures(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "bad", "module": str(PROGRAMS / "exit7.wasm")}) + "\n")
    first = wasijail("batch", "--results", tmp_path / "r.jsonl", manifest)
    assert first.returncode == 1
    again = wasijail("batch", "--results", tmp_path / "r.jsonl", manifest)
    assert again.returncode == 1  # the job ran before and did not exit 0
    allowed = wasijail("batch", "--allow-failures", "--results", tmp_path / "r.jsonl", manifest)
    assert allowed.returncode == 0


@pytest.mark.parametrize("line,message", [
    ("{not json", "jobs.jsonl:2: not JSON: "),
    ('{"module": "x.wasm"}', "jobs.jsonl:2: id: expected a non-empty string"),
    ('{"id": "a", "module": "x.wasm"}', "jobs.jsonl:2: id 'a' appears twice"),
    ('{"id": "b", "module": "x.wasm", "color": 1}', "jobs.jsonl:2: unknown key 'color'"),
    ('{"id": "b", "module": "x.wasm", "limits": {"memory": "lots"}}', "jobs.jsonl:2: limits: memory: "),
    ('{"id": "../x", "module": "x.wasm"}', "jobs.jsonl:2: id: '../x' cannot name an output file"),
])
def test_bad_manifest_lines_are_named(tmp_path, line, message):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"id": "a", "module": "x.wasm"}\n' + line + "\n")
    err = assert_one_line_error(wasijail("batch", manifest, cwd=tmp_path))
    assert message in err


async def test_each_distinct_module_is_compiled_once_before_its_jobs(tmp_path):
    from wasijail.cache import ModuleCache

    class CountingCache(ModuleCache):
        stored: list[str] = []

        def store(self, key: str, artifact: bytes) -> None:
            self.stored.append(key)
            super().store(key, artifact)

    manifest = tmp_path / "m.jsonl"
    mixed_manifest(manifest, 18)  # demo_p1, exit7, trap and a missing module, many jobs each
    cache = CountingCache(tmp_path / "cache")
    summary = await run_batch(load_manifest(manifest), policy=Policy(), results=tmp_path / "r.jsonl",
                              parallel=2, cache=cache)
    assert summary.done == 18
    # fuel-less and fuel-metered jobs would be two engines: here all share one, so one compile each
    assert len(cache.stored) == len(set(cache.stored)) == 3
