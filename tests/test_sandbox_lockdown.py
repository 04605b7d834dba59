"""Unit tests of wasijail.sandbox.lockdown that do not lock the test process
down (the locked-down child is exercised in tests/escape/)."""

from __future__ import annotations

import pytest

from wasijail.sandbox import LAYER_NAMES, LAYERS
from wasijail.sandbox.lockdown import STEPS, LayerStatus, LockdownConfig, LockdownReport


# -- config -----------------------------------------------------------------------------


def test_config_defaults_and_coercion():
    cfg = LockdownConfig(keep_fds=[0, 1, 2, 5], file_size=None, open_files=64, cpu_time=1.5)
    assert cfg.keep_fds == (0, 1, 2, 5)
    assert (cfg.namespaces, cfg.landlock, cfg.seccomp) == (True, True, True)
    assert cfg.violation_fd is None
    assert cfg.required == frozenset()


@pytest.mark.parametrize("kwargs", [
    {"keep_fds": (-1,)},
    {"file_size": -1},
    {"open_files": -5},
    {"cpu_time": 0},
    {"cpu_time": -1.0},
    {"violation_fd": -2},
    {"required": {"selinux"}},
])
def test_config_rejects_nonsense(kwargs):
    base = dict(keep_fds=(0, 1, 2), file_size=None, open_files=None, cpu_time=None)
    base.update(kwargs)
    with pytest.raises(ValueError):
        LockdownConfig(**base)


def test_config_accepts_policy_layer_names():
    # the registry's names are what the fork server passes through
    cfg = LockdownConfig(keep_fds=(), file_size=None, open_files=None, cpu_time=None,
                         required=frozenset(LAYER_NAMES) | {"no_new_privs"})
    assert "userns" in cfg.required


def test_every_child_layer_is_applied_by_a_step():
    # a layer the registry gives to the child names a lockdown step, else `required` could never hold
    for layer in LAYERS:
        assert layer.step is None or layer.step in STEPS, layer


def test_config_is_frozen():
    cfg = LockdownConfig(keep_fds=(), file_size=None, open_files=None, cpu_time=None)
    with pytest.raises(AttributeError):
        cfg.seccomp = False  # type: ignore[misc]


# -- report ---------------------------------------------------------------------------------


def test_report_roundtrip_and_views():
    report = LockdownReport(
        (LayerStatus("fds", True, "kept [0, 1, 2]"),
         LayerStatus("landlock", False, "Landlock disabled at boot")),
        0.004,
    )
    assert report.applied == ("fds",)
    assert report.not_applied == {"landlock": "Landlock disabled at boot"}
    assert report.layer("landlock").detail == "Landlock disabled at boot"
    assert LockdownReport.from_dict(report.to_dict()) == report
    assert "NOT APPLIED" in report.summary()
    with pytest.raises(KeyError):
        report.layer("seccomp")


def test_step_names():
    assert STEPS == ("fds", "rlimits", "runtime", "namespaces", "capabilities",
                     "no_new_privs", "landlock", "seccomp")
