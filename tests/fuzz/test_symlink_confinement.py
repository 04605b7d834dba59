"""Whatever a guest does with links under `symlinks = "confined"`, a host tool
that later follows every link in the preopen stays inside it.

Hypothesis plays scripts of path_symlink (targets made of `..`, `.`, names),
path_rename of links and directories (up, down, across) and path_link against
a real broker, then follows every symlink in the tree as the kernel would for a host tool:
no step of any of them may leave the preopen.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasijail.protocol import broker as wire
from wasijail.broker.handlers import Broker

from helpers import links_leading_out

DIRS = [b"", b"a", b"a/b", b"a/b/c", b"d"]
in_dir = st.sampled_from(DIRS).map(lambda d: d + b"/" if d else d)
targets = st.one_of(
    st.lists(st.just(b".."), min_size=1, max_size=4).map(b"/".join),  # the climbs that matter most
    st.lists(st.sampled_from([b"..", b"..", b".", b"a", b"b", b"c", b"d", b"l", b""]), min_size=1,
             max_size=6).map(b"/".join))
links = st.builds(lambda d, n: d + n, in_dir, st.sampled_from([b"l", b"m"]))
moved = st.one_of(links, st.sampled_from(DIRS[1:]))  # a link, or a directory with links in it
destinations = st.builds(lambda d, n: d + n, in_dir, st.sampled_from([b"x", b"y"]))
ops = st.one_of(
    st.builds(wire.PathSymlink, st.just(0), targets, links),
    st.builds(wire.PathRename, st.just(0), st.just(0), moved, destinations),
    st.builds(wire.PathLink, st.just(0), st.just(0), st.just(0), links, destinations),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(ops, min_size=1, max_size=12))
def test_confined_links_never_lead_host_tools_out(script):
    base = tempfile.mkdtemp(prefix="wasijail-links-")
    try:
        root = os.path.join(base, "p", "root")  # two levels, so ".." chains have somewhere to go
        os.makedirs(os.path.join(root, "a", "b", "c"))
        os.makedirs(os.path.join(root, "d"))
        broker = Broker([(os.open(root, os.O_RDONLY | os.O_DIRECTORY), False)])
        try:
            for request in script:
                broker.dispatch(request)
        finally:
            broker.close()
        assert links_leading_out(root) == [], script
    finally:
        shutil.rmtree(base)
