"""One job's expensive brokered calls do not starve another job's cheap ones.

A job that lists a 15,000-entry directory from its start again and again runs
beside a job that times 150 stat calls. Each child's broker is served by its
own thread, and a listing costs what it returns, so the stat job is slowed
by sharing two cores, not by queueing behind the listings (before: 19 ms alone,
3,169 ms beside such a neighbour, 167x). The bound asserted is loose, so that
a loaded machine does not make it flaky; the old behaviour fails it by far.
"""

from __future__ import annotations

import statistics

import trio

from helpers import program
from wasijail import Policy, open_supervisor

ENTRIES = 15_000
STATS = 150


def _policy(path) -> Policy:
    return Policy().with_preopen(path, "/d", mode="ro")


async def _time_stats(sup, policy) -> float:
    result = await sup.run(program("stat_timer.wasm"), ["/d", str(STATS)], policy=policy,
                           capture_stdout=True, capture_stderr=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout) / 1e6


async def test_a_listing_neighbour_does_not_starve_stat_calls(tmp_path):
    for i in range(ENTRIES):
        (tmp_path / f"f{i}").touch()
    policy = _policy(tmp_path)
    async with open_supervisor(max_parallel=2) as sup:
        alone = statistics.median([await _time_stats(sup, policy) for _ in range(3)])
        async with trio.open_nursery() as nursery:
            loops = []

            async def neighbour():
                loops.append(await sup.run(program("readdir_loop.wasm"), ["/d", "60"], policy=policy,
                                           capture_stdout=True, capture_stderr=True))

            nursery.start_soon(neighbour)
            await trio.sleep(1.0)  # the neighbour is listing by now
            beside = statistics.median([await _time_stats(sup, policy) for _ in range(3)])
            nursery.cancel_scope.cancel()
    # Two cores, two busy jobs, a loaded test machine: allow a lot, far below 167x.
    assert beside <= max(10 * alone, alone + 0.5), (alone, beside)
