"""The child's load path for a cached artifact (wasijail/child/runner.py, Artifact).

Lockdown mounts the artifact at a path where it can (tests/escape/test_lockdown.py
covers the mount); here: the child maps it from that path with
Module.deserialize_file, copies it from its descriptor only when there is no
mount or mapping fails, and closes the descriptor either way.
"""

from __future__ import annotations

import os

import pytest
import wasmtime

from wasijail.child import runner
from wasijail.protocol.setup import ArtifactMode

WAT = '(module (func (export "answer") (result i32) i32.const 42))'


@pytest.fixture
def artifact(tmp_path):
    """(engine, path of a serialized module compiled by the child's own engine)."""
    engine = runner.make_engine(False)
    path = tmp_path / "entry.cwasm"
    path.write_bytes(wasmtime.Module(engine, wasmtime.wat2wasm(WAT)).serialize())
    path.chmod(0o400)
    return engine, path


def _answer(engine: wasmtime.Engine, module: wasmtime.Module) -> int:
    store = wasmtime.Store(engine)
    return wasmtime.Instance(store, module, []).exports(store)["answer"](store)


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_a_mounted_artifact_is_mapped_not_copied(artifact, monkeypatch):
    engine, path = artifact

    def copy(*_):
        raise AssertionError("copied from the descriptor although the artifact is mounted")

    monkeypatch.setattr(runner, "_deserialize_fd", copy)
    fd = os.open(path, os.O_RDONLY)
    module = runner.Artifact(ArtifactMode.LOAD, fd, str(path)).load(engine)
    assert module is not None and _answer(engine, module) == 42
    assert _closed(fd)


def test_an_artifact_that_cannot_be_mapped_is_copied_from_its_descriptor(artifact):
    engine, path = artifact
    fd = os.open(path, os.O_RDONLY)
    module = runner.Artifact(ArtifactMode.LOAD, fd, str(path.with_name("not-mounted"))).load(engine)
    assert module is not None and _answer(engine, module) == 42
    assert _closed(fd)


def test_without_a_mount_the_descriptor_is_used(artifact, monkeypatch):
    engine, path = artifact

    def mapped(*_):
        raise AssertionError("deserialize_file without a mounted artifact")

    monkeypatch.setattr(wasmtime.Module, "deserialize_file", mapped)
    fd = os.open(path, os.O_RDONLY)
    module = runner.Artifact(ArtifactMode.LOAD, fd, "").load(engine)
    assert module is not None and _answer(engine, module) == 42
    assert _closed(fd)


def test_an_artifact_no_engine_can_load_means_compiling(tmp_path):
    """Neither mapped nor copied (not an artifact of this engine): None, the child compiles."""
    path = tmp_path / "entry.cwasm"
    path.write_bytes(b"\x7fELF not an artifact")
    fd = os.open(path, os.O_RDONLY)
    assert runner.Artifact(ArtifactMode.LOAD, fd, str(path)).load(runner.make_engine(False)) is None
    assert _closed(fd)
