"""Many runs leave nothing behind: no zombies, no descriptors, no memory growth."""

from __future__ import annotations

import os

import trio

from wasijail import open_supervisor

from helpers import program


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _zombies(parents: set[int]) -> list[int]:
    """Zombie processes whose parent is one of `parents` (ours, not other programs')."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) in parents:
                found.append(int(entry))
    return found


async def test_500_sequential_and_100_concurrent_runs_leave_nothing_behind():
    async with open_supervisor(max_parallel=4) as sup:
        parents = {os.getpid(), sup.launcher.pid}
        for _ in range(50):
            assert (await sup.run(program("exit7.wasm"))).returncode == 7
        fds_after_warmup = set(os.listdir("/proc/self/fd"))
        rss_after_warmup = _rss_kib()
        for _ in range(450):
            assert (await sup.run(program("exit7.wasm"))).returncode == 7

        codes = []

        async def one():
            codes.append((await sup.run(program("demo_p1.wasm"), capture_stdout=True)).stdout)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(one)
        assert codes == [b"hello world\n"] * 100
        assert set(os.listdir("/proc/self/fd")) == fds_after_warmup
        assert _rss_kib() <= rss_after_warmup * 1.10
        assert sup.live_children == 0
        assert _zombies(parents) == []  # every child reaped by the fork server
    assert _zombies(parents) == []  # and the fork server reaped by us
