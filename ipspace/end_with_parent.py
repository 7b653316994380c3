"""Run a program that ends when the process that started it ends.

    python -m ipspace.end_with_parent PARENT_PID PROGRAM [ARGUMENT ...]

Sets Linux's parent-death signal (SIGTERM), exits at once if the parent is already gone, then replaces
itself with PROGRAM: the signal survives exec, and the PID stays the one the parent holds. This runs as a
process of its own rather than as `subprocess`'s `preexec_fn` because a parent that serves gRPC (a node, a
coordinator, a test) must not run Python between fork and exec: gRPC's fork handlers break the child's
event engine (measured: a SuperNode started that way died with "epoll_wait error: Bad file descriptor").
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m ipspace.end_with_parent PARENT_PID PROGRAM [ARGUMENT ...]")
    parent_pid, program = int(argv[0]), argv[1:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent_pid:  # the parent ended before the signal was set: nobody would send it
        sys.exit(f"the parent {parent_pid} ended before {program[0]} started")
    os.execvp(program[0], program)  # noqa: S606 - the program and its arguments, as the parent gave them


if __name__ == "__main__":
    main(sys.argv[1:])
