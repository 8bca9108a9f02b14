"""The container shim's pure helpers: mount-table parsing, path resolution inside a root, log tails."""

from __future__ import annotations

import os
from pathlib import Path

from clm_sandbox.node.launch import _unescape, resolve_in_root, topmost_under
from clm_sandbox.node.logs import tail_lines
from hypothesis import given
from hypothesis import strategies as st


def test_mountinfo_escapes_are_decoded() -> None:
    assert _unescape(r"/mnt/with\040space") == "/mnt/with space"
    assert _unescape(r"/a\011b\134c") == "/a\tb\\c"
    assert _unescape("/plain") == "/plain"


def test_topmost_mounts_under_a_directory() -> None:
    table = [
        (1, 0, "/"),
        (2, 1, "/dev"),
        (3, 2, "/dev/shm"),
        (4, 1, "/proc"),
        (5, 1, "/devices"),
        (6, 1, "/sys"),
        (7, 6, "/sys/fs/cgroup"),
    ]
    assert topmost_under(table, "/") == ["/dev", "/sys", "/proc", "/devices"]
    assert topmost_under(table, "/dev") == ["/dev/shm"]  # not /devices: a sibling, not a child
    assert topmost_under(table, "/sys/fs") == ["/sys/fs/cgroup"]
    assert topmost_under(table, "/tmp") == []


def test_paths_resolve_inside_the_root_following_its_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run" / "secrets").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")  # absolute: relative to the container's root, not the host's
    os.symlink("../run", root / "var" / "rel")
    os.symlink("/etc/../../../escape", root / "var" / "out")
    assert resolve_in_root(str(root), "/var/run/secrets/kubernetes.io") == f"{root}/run/secrets/kubernetes.io"
    assert resolve_in_root(str(root), "/var/rel/secrets") == f"{root}/run/secrets"
    assert resolve_in_root(str(root), "/var/out/x") == f"{root}/escape/x"  # ".." stops at the root
    assert resolve_in_root(str(root), "/") == str(root)


@given(st.lists(st.text(alphabet="ab\n", max_size=5), max_size=12), st.integers(min_value=0, max_value=15))
def test_tail_lines_keeps_the_last_lines(chunks: list[str], lines: int) -> None:
    data = "".join(chunks).encode()
    tail = tail_lines(data, lines)
    assert data.endswith(tail)
    assert len(tail.splitlines()) == min(lines, len(data.splitlines()))
