"""CPU and lifetimes of the processes under a federated job, read from /proc by a sampling thread.

Flower starts a `flwr-clientapp` process per message and a `flwr-serverapp` process per run, each living a
second or a few; their CPU is what a process per message costs. The sampler walks the process trees of the
roots it is given (the SuperLink, each SuperNode, each node's gate) every `interval_s`, and keeps for every
process its start time (from /proc/<pid>/stat, 10 ms resolution) and its CPU time at each sample. A process
that exited stays a zombie until its parent waits for it (Flower's SuperExec waits only at its next launch),
and a zombie's /proc entry still holds its final CPU time, so short lives are caught whole.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CLIENTAPP = "flwr-clientapp"
SERVERAPP = "flwr-serverapp"
SUPERLINK_COMPONENT = "superlink"  # the SuperLink, its SuperExec and the ServerApp processes it starts
_SUPERNODE_PREFIX, _GATE_PREFIX = "supernode ", "node gate "
# What a CPU second was spent on, for the per-round CPU figures.
KIND_SUPERLINK = "SuperLink + ServerApp"
KIND_SUPERNODES = "SuperNodes + SuperExecs"
KIND_CLIENTAPPS = "flwr-clientapp processes"
KIND_GATES = "node gates (Train handler)"
KINDS = (KIND_SUPERLINK, KIND_SUPERNODES, KIND_CLIENTAPPS, KIND_GATES)


def supernode_component(org: str) -> str:
    return _SUPERNODE_PREFIX + org


def gate_component(org: str) -> str:
    return _GATE_PREFIX + org


@dataclass
class ProcessTrace:
    """One process seen under a root: which root (the component), what it runs, when it started."""

    pid: int
    component: str
    program: str  # the script name of its command line, e.g. "flwr-clientapp"
    started: float  # epoch seconds
    samples: list[tuple[float, float]] = field(default_factory=list)  # (epoch seconds, CPU seconds so far)
    exited: float | None = None  # first sample that found it a zombie or gone

    def cpu_at(self, moment: float) -> float:
        """CPU seconds used by `moment` (0 before the first sample)."""
        used = 0.0
        for seen, cpu in self.samples:
            if seen > moment:
                break
            used = cpu
        return used

    @property
    def cpu_total(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


def _boot_epoch() -> float:
    with open("/proc/uptime", encoding="ascii") as handle:
        uptime = float(handle.read().split()[0])
    return time.time() - uptime


def _stat(pid: int) -> tuple[str, float, int] | None:
    """(state, CPU seconds, start ticks since boot) of `pid`, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces; fields resume after ')'
    state, utime, stime, start = fields[0], int(fields[11]), int(fields[12]), int(fields[19])
    return state, (utime + stime) / _CLOCK_TICKS, start


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
        except OSError:
            continue
    return found


def _program(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    # `python script args` or `script args` (a console-script shim): the first path that is not python
    for part in argv[:2]:
        name = os.path.basename(part.decode(errors="replace"))
        if name and not name.startswith("python"):
            return name
    return os.path.basename(argv[0].decode(errors="replace")) or "?"


class ProcessSampler:
    """Samples the trees under `roots` (component -> root PID) until stopped; use as a context manager."""

    def __init__(self, roots: dict[str, int], interval_s: float = 0.1) -> None:
        self._roots = dict(roots)
        self._interval_s = interval_s
        self._boot = _boot_epoch()
        self._lock = threading.Lock()
        self._traces: dict[tuple[int, float], ProcessTrace] = {}  # (pid, start) -> trace: pids are reused
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def set_root(self, component: str, pid: int) -> None:
        """Follow a new root for `component` (a restarted process)."""
        with self._lock:
            self._roots[component] = pid

    def traces(self) -> list[ProcessTrace]:
        with self._lock:
            return list(self._traces.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            roots = dict(self._roots)
        seen: set[tuple[int, float]] = set()
        for component, root in roots.items():
            pending = [root]
            while pending:
                pid = pending.pop()
                stat = _stat(pid)
                if stat is None:
                    continue
                state, cpu, start_ticks = stat
                started = self._boot + start_ticks / _CLOCK_TICKS
                key = (pid, started)
                seen.add(key)
                with self._lock:
                    trace = self._traces.get(key)
                    if trace is None:
                        trace = ProcessTrace(pid, component, _program(pid), started)
                        self._traces[key] = trace
                    trace.samples.append((now, cpu))
                    if state == "Z" and trace.exited is None:
                        trace.exited = now
                if state != "Z":
                    pending += _children(pid)
        with self._lock:
            for key, trace in self._traces.items():
                if key not in seen and trace.exited is None:
                    trace.exited = now


def _kind(trace: ProcessTrace) -> str:
    if trace.program == CLIENTAPP:
        return KIND_CLIENTAPPS
    if trace.component.startswith(_SUPERNODE_PREFIX):
        return KIND_SUPERNODES
    if trace.component.startswith(_GATE_PREFIX):
        return KIND_GATES
    return KIND_SUPERLINK


def cpu_by_kind(traces: list[ProcessTrace], start: float, end: float) -> dict[str, float]:
    """CPU seconds spent between `start` and `end` on each of KINDS."""
    used = dict.fromkeys(KINDS, 0.0)
    for trace in traces:
        used[_kind(trace)] += max(0.0, trace.cpu_at(end) - trace.cpu_at(start))
    return used


def still_running(traces: list[ProcessTrace]) -> list[ProcessTrace]:
    """The traced processes that still exist as the same process (same PID and start time), zombies aside."""
    boot = _boot_epoch()
    left = []
    for trace in traces:
        stat = _stat(trace.pid)
        if stat is not None and stat[0] != "Z" and abs(boot + stat[2] / _CLOCK_TICKS - trace.started) < 0.05:
            left.append(trace)
    return left
