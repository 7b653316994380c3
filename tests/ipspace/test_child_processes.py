"""A process the data space starts (SuperLink, SuperNode, node) ends with its parent, even a killed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipspace.flower_processes import ChildProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")

END_BOUND_S = 10.0

PARENT = """
import os, sys, time
from pathlib import Path
from ipspace.flower_processes import ChildProcess
child = ChildProcess.start("sleeper", ["sleep", "300"], dict(os.environ), Path(sys.argv[1]))
print(child.pid, flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """True while `pid` runs; a zombie nobody reaped yet (a container's init may not) has ended."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_child_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "sleeper.log")], stdout=subprocess.PIPE, text=True
    )
    try:
        child_pid = int(parent.stdout.readline())
        assert _running(child_pid)
        parent.send_signal(signal.SIGKILL)  # no handler, no cleanup: only the kernel can tell the child
        parent.wait(timeout=10)
        deadline = time.monotonic() + END_BOUND_S
        while _running(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child_pid), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if "child_pid" in locals() and _running(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_a_child_is_stopped_by_its_process_group(tmp_path: Path) -> None:
    # `sh` starts `sleep` in the child's session: stop() must end both, as Flower's spawned apps must go.
    child = ChildProcess.start(
        "shell", ["sh", "-c", "sleep 300 & echo $! ; wait"], dict(os.environ), tmp_path / "shell.log"
    )
    deadline = time.monotonic() + END_BOUND_S
    while not (tmp_path / "shell.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild_pid = int((tmp_path / "shell.log").read_text().split()[0])
    child.stop(grace_s=2.0)

    assert not child.alive()
    deadline = time.monotonic() + END_BOUND_S
    while _running(grandchild_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(grandchild_pid)
