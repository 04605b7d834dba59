"""The compiled-module cache: hits skip compilation, and only our own entries are ever loaded."""

from __future__ import annotations

import os
import time

import pytest
import wasmtime

from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.cache import ModuleCache, engine_fingerprint

from helpers import program, text, wasijail


@pytest.fixture(scope="module")
def large_module(tmp_path_factory):
    """A module that takes over a second to compile here (40,000 small functions)."""
    functions = ["(func $f0 (param i32) (result i32) (local.get 0))"]
    functions += [f"(func $f{i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i}))"
                  f" (call $f{i - 1} (i32.const 1))))" for i in range(1, 40000)]
    path = tmp_path_factory.mktemp("large") / "large.wasm"
    path.write_bytes(wasmtime.wat2wasm(
        f'(module (memory (export "memory") 1) {"".join(functions)} (func (export "_start")))'))
    return path


async def test_second_run_is_at_least_10x_faster(tmp_path, large_module):
    async with open_supervisor(cache=tmp_path / "cache") as sup:
        started = time.monotonic()
        first = await sup.run(large_module)
        cold = time.monotonic() - started
        started = time.monotonic()
        second = await sup.run(large_module)
        warm = time.monotonic() - started
        assert first.returncode == second.returncode == 0
        assert sup.cache.info().entries == 1
    assert cold >= 10 * warm, (cold, warm)


async def test_tampered_entry_is_refused_and_replaced(tmp_path):
    cache = ModuleCache(tmp_path / "cache")
    async with open_supervisor(cache=cache) as sup:
        assert (await sup.run(program("demo_p1.wasm"), capture_stdout=True)).stdout == b"hello world\n"
        (entry,) = (tmp_path / "cache").glob("*.cwasm")
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
        result = await sup.run(program("demo_p1.wasm"), capture_stdout=True)
        assert result.stdout == b"hello world\n"
        assert cache.refused == 1
        assert entry.read_bytes() != bytes(data)  # compiled again and stored anew
        # and the fresh entry is accepted
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)
        assert cache.refused == 1


async def test_entry_not_stored_by_the_supervisor_is_refused(tmp_path):
    cache = ModuleCache(tmp_path / "cache")
    module = program("demo_p1.wasm")
    engine = wasmtime.Engine()
    key = ModuleCache.key(module.read_bytes(), engine_fingerprint(fuel=False))
    cache._ensure()
    # A well-formed artifact, but written by someone without the cache's key.
    artifact = wasmtime.Module(engine, module.read_bytes()).serialize()
    (tmp_path / "cache" / f"{key}.cwasm").write_bytes(artifact + b"\0" * 32)
    async with open_supervisor(cache=cache) as sup:
        # Policy(): no fuel, the setting the key above was made for
        result = await sup.run(module, policy=Policy(), capture_stdout=True)
    assert result.stdout == b"hello world\n"
    assert cache.refused == 1


def test_cache_key_covers_engine_settings():
    data = program("demo_p1.wasm").read_bytes()
    keys = {ModuleCache.key(data, engine_fingerprint(fuel=f)) for f in (False, True)}
    assert len(keys) == 2


async def test_size_cap_evicts_least_recently_used(tmp_path):
    cache = ModuleCache(tmp_path / "cache", max_size=1)
    async with open_supervisor(cache=cache) as sup:
        await sup.run(program("exit7.wasm"))
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)
    assert cache.info().entries == 0  # each entry alone exceeds a 1-byte cap
    roomy = ModuleCache(tmp_path / "cache2", max_size=10 << 20)
    async with open_supervisor(cache=roomy) as sup:
        await sup.run(program("exit7.wasm"))
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)
    assert roomy.info().entries == 2


async def test_results_are_the_same_with_and_without_cache(tmp_path):
    async with open_supervisor(cache=tmp_path / "cache") as sup:
        runs = [await sup.run(program("trap.wasm"), capture_stderr=True) for _ in range(2)]
    assert [r.outcome.kind for r in runs] == [OutcomeKind.TRAP, OutcomeKind.TRAP]
    assert runs[0].outcome.detail == runs[1].outcome.detail


def test_cli_cache_info_clear_and_no_cache(tmp_path):
    cache_dir = tmp_path / "c"
    run = wasijail("run", "--cache-dir", cache_dir, program("demo_p1.wasm"))
    assert run.stdout == b"hello world\n"
    info = wasijail("cache", "info", "--cache-dir", cache_dir)
    assert "entries:  1\n" in text(info.stdout)
    wasijail("run", "--no-cache", "--cache-dir", tmp_path / "unused", program("demo_p1.wasm"))
    assert not (tmp_path / "unused").exists()
    cleared = wasijail("cache", "clear", "--cache-dir", cache_dir)
    assert text(cleared.stdout) == f"removed 1 compiled modules from {cache_dir}\n"
    assert "entries:  0\n" in text(wasijail("cache", "info", "--cache-dir", cache_dir).stdout)


async def test_entry_edited_back_to_its_old_size_and_times_is_refused(tmp_path):
    """Trust is by sealed identity: same size, mtime set back, still a different ctime."""
    cache = ModuleCache(tmp_path / "cache")
    async with open_supervisor(cache=cache) as sup:
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)
        (entry,) = (tmp_path / "cache").glob("*.cwasm")
        before = entry.stat()
        data = bytearray(entry.read_bytes())
        data[100] ^= 0x01
        entry.chmod(0o600)
        entry.write_bytes(bytes(data))
        os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert entry.stat().st_size == before.st_size and entry.stat().st_mtime_ns == before.st_mtime_ns
        result = await sup.run(program("demo_p1.wasm"), capture_stdout=True)
    assert result.stdout == b"hello world\n"
    assert cache.refused == 1


def test_module_digest_is_sealed_by_identity(tmp_path, monkeypatch):
    """An unchanged module is hashed once; a changed one (or a forged record) is hashed again."""
    from wasijail import cache as cache_module

    hashed = []
    real_hash = cache_module._hash_fd
    monkeypatch.setattr(cache_module, "_hash_fd", lambda fd: hashed.append(fd) or real_hash(fd))
    cache = ModuleCache(tmp_path / "cache")
    module = tmp_path / "m.wasm"
    module.write_bytes(program("demo_p1.wasm").read_bytes())
    fingerprint = engine_fingerprint(fuel=False)
    expected = ModuleCache.key(module.read_bytes(), fingerprint)

    def key() -> str:
        fd = os.open(module, os.O_RDONLY)
        try:
            return cache.module_key(fd, fingerprint)
        finally:
            os.close(fd)

    assert key() == expected and len(hashed) == 1
    assert key() == expected and len(hashed) == 1  # from the sealed record
    (record,) = (tmp_path / "cache" / "modules").iterdir()
    record.write_bytes(b"\0" * 32 + record.read_bytes()[32:])  # another digest, the old seal
    assert key() == expected and len(hashed) == 2
    module.write_bytes(module.read_bytes() + b"\0")  # changed: a new identity, a new key
    assert key() == ModuleCache.key(module.read_bytes(), fingerprint) and len(hashed) == 3


async def test_compile_ahead_of_time_then_runs_load_it(tmp_path, large_module):
    cache = ModuleCache(tmp_path / "cache")
    async with open_supervisor(cache=cache) as sup:
        first = await sup.compile(large_module)
        again = await sup.compile(large_module)
        result = await sup.run(large_module)
    assert (first.cached, again.cached) == (False, True)
    assert result.returncode == 0
    assert cache.info().entries == 1 and cache.refused == 0


async def test_long_first_compile_is_announced_once(tmp_path, monkeypatch):
    from wasijail import supervisor as supervisor_module

    monkeypatch.setattr(supervisor_module, "LONG_COMPILE", 0.0)
    notices = []
    async with open_supervisor(cache=tmp_path / "cache") as sup:
        sup.on_long_compile = lambda module, cached: notices.append((module.name, cached))
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)
        await sup.run(program("demo_p1.wasm"), capture_stdout=True)  # warm: loading is quick
    assert notices[:1] == [("demo_p1.wasm", True)] and len(notices) <= 2


def test_cli_compile_fills_the_cache(tmp_path):
    cache_dir = tmp_path / "c"
    (tmp_path / "bad.wat").write_text("(module")
    done = wasijail("compile", "--cache-dir", cache_dir, program("demo_p1.wasm"), program("exit7.wasm"))
    assert done.returncode == 0, text(done.stderr)
    lines = text(done.stdout).splitlines()
    assert [line.split(": ")[1].split(" in ")[0] for line in lines] == ["compiled", "compiled"]
    assert "entries:  2\n" in text(wasijail("cache", "info", "--cache-dir", cache_dir).stdout)
    again = wasijail("compile", "--cache-dir", cache_dir, program("demo_p1.wasm"))
    assert text(again.stdout) == f"{program('demo_p1.wasm')}: already in the cache\n"
    failed = wasijail("compile", "--cache-dir", cache_dir, tmp_path / "bad.wat", tmp_path / "missing.wasm")
    assert failed.returncode == 1 and failed.stdout == b""
    assert text(failed.stderr).splitlines() == [
        f"wasijail: error: {tmp_path / 'bad.wat'}:1:8: expected `)`",
        f"wasijail: error: {tmp_path / 'missing.wasm'}: no such file"]


def test_cli_says_on_a_terminal_that_a_long_first_compile_is_cached(tmp_path):
    import pty
    import subprocess
    import sys

    # 100,000 functions: about 4 s of CPU to compile here, well past the 1 s before the notice
    functions = ["(func $f0 (param i32) (result i32) (local.get 0))"]
    functions += [f"(func $f{i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i}))"
                  f" (call $f{i - 1} (i32.const 1))))" for i in range(1, 100000)]
    module = tmp_path / "slow.wasm"
    module.write_bytes(wasmtime.wat2wasm(
        f'(module (memory (export "memory") 1) {"".join(functions)} (func (export "_start")))'))

    def run_on_terminal() -> bytes:
        master, slave = pty.openpty()
        try:
            proc = subprocess.run([sys.executable, "-m", "wasijail", "run", "--cache-dir", tmp_path / "c",
                                   module], stderr=slave, stdout=subprocess.PIPE, timeout=300)
        finally:
            os.close(slave)
        assert proc.returncode == 0
        try:
            return os.read(master, 4096)
        except OSError:  # EIO: nothing was written to the terminal
            return b""
        finally:
            os.close(master)

    size = f"{module.stat().st_size / 1e6:.0f} MB"
    assert run_on_terminal() == (f"wasijail: compiling slow.wasm ({size}) before its first run; the result is"
                                 f" cached, so later runs start at once\r\n").encode()
    assert run_on_terminal() == b""  # warm: nothing to say


def _stored(tmp_path):
    """A cache holding demo_p1's artifact (as a run would store it), its key and a module copy."""
    cache = ModuleCache(tmp_path / "cache")
    module = tmp_path / "m.wasm"
    module.write_bytes(program("demo_p1.wasm").read_bytes())
    fingerprint = engine_fingerprint(fuel=False)
    key = ModuleCache.key(module.read_bytes(), fingerprint)
    cache.store(key, wasmtime.Module(wasmtime.Engine(), module.read_bytes()).serialize())
    return cache, module, fingerprint, key


def _open_known(cache, module, fingerprint):
    fd = os.open(module, os.O_RDONLY)
    try:
        return cache.open_known(fd, fingerprint)
    finally:
        os.close(fd)


def _full_lookup(cache, module, fingerprint):
    fd = os.open(module, os.O_RDONLY)
    try:
        artifact = cache.open(cache.module_key(fd, fingerprint))
    finally:
        os.close(fd)
    if artifact is not None:
        artifact.close()
    return artifact


def test_open_known_answers_only_what_this_process_verified(tmp_path):
    cache, module, fingerprint, key = _stored(tmp_path)
    assert _open_known(cache, module, fingerprint) is None  # nothing verified yet
    assert _full_lookup(cache, module, fingerprint) is not None
    known = _open_known(cache, module, fingerprint)
    assert known is not None
    found, artifact = known
    try:
        assert found == key
        assert os.fstat(artifact.fd).st_ino == (tmp_path / "cache" / f"{key}.cwasm").stat().st_ino
    finally:
        artifact.close()
    assert _open_known(cache, module, engine_fingerprint(fuel=True)) is None  # another engine's key


def test_open_known_refuses_a_changed_artifact_and_the_full_lookup_deletes_it(tmp_path):
    cache, module, fingerprint, key = _stored(tmp_path)
    _full_lookup(cache, module, fingerprint)
    entry = tmp_path / "cache" / f"{key}.cwasm"
    before = entry.stat()
    data = bytearray(entry.read_bytes())
    data[100] ^= 0x01
    entry.chmod(0o600)
    entry.write_bytes(bytes(data))
    os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: ctime differs
    assert _open_known(cache, module, fingerprint) is None
    assert _full_lookup(cache, module, fingerprint) is None
    assert cache.refused == 1 and not entry.exists()


def test_open_known_does_not_answer_for_a_changed_module(tmp_path):
    cache, module, fingerprint, key = _stored(tmp_path)
    _full_lookup(cache, module, fingerprint)
    module.write_bytes(module.read_bytes() + b"\0")  # a new identity: its digest is not known
    assert _open_known(cache, module, fingerprint) is None


async def test_runs_of_a_verified_module_skip_the_full_lookup(tmp_path, monkeypatch):
    """The third run of a module finds it by what the second verified: no record read, no thread."""
    cache = ModuleCache(tmp_path / "cache")
    lookups = []
    real_key = ModuleCache.module_key
    monkeypatch.setattr(ModuleCache, "module_key", lambda self, fd, fp: lookups.append(fd) or real_key(self, fd, fp))
    async with open_supervisor(cache=cache) as sup:
        runs = [await sup.run(program("demo_p1.wasm"), capture_stdout=True) for _ in range(3)]
    assert [r.stdout for r in runs] == [b"hello world\n"] * 3
    assert len(lookups) == 2  # the compile, the first load; the third run's load was known
    assert cache.refused == 0
