"""preview0 (`wasi_unstable`) layouts read back from guest memory, and the engine features.

`unstable_layouts.wat` calls wasi_unstable directly and prints the bytes it
finds where preview0 puts them: filestat (56 bytes, u32 nlink at 20), fd_seek's
whence order (CUR, END, SET) and subscriptions (56 bytes, the clock's u64
identifier before clock_id). `features.wat` uses each proposal that toolchains
emit and that the engine enables (SIMD, tail calls, exceptions, multi-value,
reference types, bulk memory).
"""

from __future__ import annotations

import os

import pytest

from wasijail.policy import Policy
from wasijail.supervisor import open_supervisor
from wasijail.wasi import PREVIEW0

from helpers import program

STAMP = 1_600_000_000_123_456_789  # ns: shows that timestamps keep their nanoseconds

UNSTABLE_OUTPUT = f"""\
open=0
fd_filestat_get=0 filetype=4 nlink=1 size=10 atim={STAMP} mtim={STAMP} byte56=170
path_filestat_get=0 filetype=4 nlink=1 size=10 atim={STAMP} mtim={STAMP} byte56=170
seek SET 3=0 pos=3
seek CUR 1=0 pos=4
seek END -2=0 pos=8
tell=0 pos=8
read=89
poll clock+fd=0 nevents=1 userdata=8 error=0 type=1
poll clock=0 nevents=1 userdata=7 error=0 type=0
"""

FEATURES_OUTPUT = """\
simd: 11 22 33 44 lane=3
tail call: 500000500000
exceptions: 42 7
multi-value: 7 3 3
reference types: 42 2 5 1 1
bulk memory: bulk!bulk!...
"""


def test_layout_facts_the_module_relies_on():
    assert PREVIEW0.filestat.size == 56 and PREVIEW0.subscription.size == 56
    assert PREVIEW0.subscription.clock_offset == 24 and PREVIEW0.subscription.fd_offset == 16
    assert PREVIEW0.whence == {0: os.SEEK_CUR, 1: os.SEEK_END, 2: os.SEEK_SET}


@pytest.mark.parametrize("name", ["unstable_layouts.wasm", "unstable_layouts.wat"])
async def test_unstable_layouts(tmp_path, name):
    box = tmp_path / "sandbox"
    box.mkdir()
    (box / "data.txt").write_text("0123456789")
    os.utime(box / "data.txt", ns=(STAMP, STAMP))
    async with open_supervisor() as sup:
        result = await sup.run(program(name), policy=Policy().with_preopen(box, "/sandbox"),
                               capture_stdout=True, capture_stderr=True)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode() == UNSTABLE_OUTPUT


@pytest.mark.parametrize("name", ["features.wasm", "features.wat"])
async def test_engine_features(name):
    async with open_supervisor() as sup:
        result = await sup.run(program(name), capture_stdout=True, capture_stderr=True)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode() == FEATURES_OUTPUT
