"""cProfile across every thread of a server process, timed by each thread's own CPU clock.

cProfile hooks only the thread that enables it, and a gRPC server does its work on pool threads it starts
later (and the audit log on its writer thread). ``threading.setprofile`` makes each new thread start a
profiler of its own on its first event; timing by ``time.thread_time`` counts CPU, not waits (an fsync, a
lock, an idle poll), so the figures say where the process spends its cores.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any


class _Snapshot:
    """What pstats needs from a profile, taken without disabling it (disable acts on the calling thread)."""

    def __init__(self, profile: cProfile.Profile) -> None:
        profile.snapshot_stats()
        self.stats = profile.stats

    def create_stats(self) -> None:
        """Already taken in __init__."""


class ThreadProfiler:
    """Install before the server starts its threads; ``dump`` once the load is over."""

    def __init__(self) -> None:
        self._profiles: list[cProfile.Profile] = []  # kept alive: a thread's hook points at its profile
        self._lock = threading.Lock()

    def install(self) -> None:
        threading.setprofile(self._first_event)
        self._start_on_this_thread()

    def dump(self, path: Path) -> int:
        """Write the merged statistics of every thread to ``path``; returns how many threads were profiled."""
        threading.setprofile(None)
        with self._lock:
            profiles = list(self._profiles)
        stats = pstats.Stats(_Snapshot(profiles[0]))
        for profile in profiles[1:]:
            stats.add(_Snapshot(profile))
        stats.dump_stats(str(path))
        return len(profiles)

    def _start_on_this_thread(self) -> None:
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def _first_event(self, _frame: Any, _event: str, _arg: Any) -> None:
        sys.setprofile(None)  # replaced at once by this thread's own C-level profiler
        self._start_on_this_thread()


# --- reading a profile ------------------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parent.parent
_REPO_GROUPS = (  # first match wins; paths relative to the repository root
    ("node/gate.py", "gate steps (node/gate.py)"),
    ("node/authn.py", "authenticate (node/authn.py)"),
    ("node/policy_point.py", "decide (policy point, policies/)"),
    ("policies/", "decide (policy point, policies/)"),
    ("node/recorder.py", "record (recorder, audit/)"),
    ("audit/", "record (recorder, audit/)"),
    ("node/grants.py", "grant + handler"),
    ("node/handlers/", "grant + handler"),
    ("node/store", "dataset store (node/store*.py)"),
    ("crypto/", "crypto/"),
    ("contracts/", "contracts/ (stubs)"),
    ("node/", "node/ (other)"),
    ("bench/", "bench servicer"),
)


def group_of(filename: str, function: str) -> str:
    """The part of the server a profiled function belongs to (a built-in goes by its own name)."""
    if filename == "~":
        for marker, group in (
            ("sqlite3", "sqlite3 (C)"),
            ("cygrpc", "grpc core (C)"),
            ("_hashlib", "hashing (C)"),
            ("acquire", "locks (C)"),
            ("_thread", "locks (C)"),
            ("protobuf", "protobuf (C)"),
        ):
            if marker in function:
                return group
        return "other built-ins (C)"
    path = Path(filename)
    if path.is_relative_to(_REPO) and ".venv" not in path.parts:
        relative = path.relative_to(_REPO).as_posix()
        return next((group for prefix, group in _REPO_GROUPS if relative.startswith(prefix)), "repo (other)")
    parts = path.parts
    if "grpc" in parts:
        return "grpc (python)"
    if "protobuf" in parts:
        return "protobuf (python)"
    if path.name in {"threading.py", "queue.py", "thread.py", "_base.py"}:
        return "threads, queues, pools (stdlib)"
    return "stdlib and other libraries"


def _label(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    path = Path(filename)
    where = path.relative_to(_REPO).as_posix() if path.is_relative_to(_REPO) else path.name
    return f"{where}:{line} {function}"


def cpu_breakdown(path: Path, calls: int, *, top: int = 12) -> dict[str, Any]:
    """CPU milliseconds per served call: by part of the server, and the costliest functions.

    ``self`` is CPU spent in a function's own code; ``cumulative`` includes what it called on the same
    thread (so the writer thread's work is not under the gate's record step).
    """
    stats = pstats.Stats(str(path)).stats
    per_call = 1000.0 / max(calls, 1)
    groups: dict[str, float] = {}
    total = 0.0
    rows = []
    for (filename, line, function), (_cc, _nc, own, cumulative, _callers) in stats.items():
        group = group_of(filename, function)
        groups[group] = groups.get(group, 0.0) + own
        total += own
        rows.append((_label(filename, line, function), group, own, cumulative, filename))
    by_self = sorted(rows, key=lambda row: row[2], reverse=True)[:top]
    ours = [row for row in rows if row[4] != "~" and Path(row[4]).is_relative_to(_REPO)]
    by_cumulative = sorted(ours, key=lambda row: row[3], reverse=True)[:top]
    return {
        "calls": calls,
        "profiled_cpu_ms_per_call": round(total * per_call, 4),
        "groups_ms_per_call": {
            name: round(seconds * per_call, 4)
            for name, seconds in sorted(groups.items(), key=lambda item: item[1], reverse=True)
        },
        "top_self": [
            {"function": label, "group": group, "self_ms_per_call": round(own * per_call, 4)}
            for label, group, own, _cumulative, _file in by_self
        ],
        "top_cumulative_repo": [
            {"function": label, "cumulative_ms_per_call": round(cumulative * per_call, 4)}
            for label, _group, _own, cumulative, _file in by_cumulative
        ],
    }
