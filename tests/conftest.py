"""Test-wide fixtures: a private cache folder, and both path resolvers."""

from __future__ import annotations

import os
import tempfile

import pytest

from wasijail.broker.resolve import Resolver, openat2_available


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir():
    with tempfile.TemporaryDirectory(prefix="wasijail-test-cache-") as path:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = path
        yield
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(params=["openat2", "fallback"])
def resolver(request):
    """Each test runs under openat2 and under the O_NOFOLLOW walk that replaces it."""
    if request.param == "openat2" and not openat2_available():
        pytest.skip("openat2 missing on this kernel")
    return Resolver(use_openat2=request.param == "openat2")
