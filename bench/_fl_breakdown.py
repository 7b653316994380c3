"""Where each round of a job went: its message exchanges, and along the last node to reply in each, the
segments between the events Flower logged, the node's audit entry and the ClientApp process's start.

An exchange starts when the ServerApp pushes its messages and ends when it pushes the next ones (or records
the job's last round): the ServerApp waits for the last reply, so the node that replied last is the one whose
segments add up to the exchange, and the segments of every exchange of a round add up to the round. A round
runs from the first push of its first exchange to the first push after its last one; the held-out evaluation
that follows the last round is its own exchange, reported apart.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

from bench._fl_procs import CLIENTAPP, ProcessTrace
from bench._fl_timeline import (
    APP_LOADING,
    FETCHED,
    RECEIVING,
    REPLY_PUSHED,
    SENDING,
    SENT,
    LinkEvents,
    NodeMessage,
)

# Flower 1.41's fixed waits (flwr/supernode/start_client_internal.py), none of them configurable:
IDLE_SLEEP_S = 3.0  # a SuperNode whose pull found no message sleeps this long before pulling again
REPLY_POLL_S = 0.5  # a SuperNode looks for its ClientApp's reply this often
SUPEREXEC_POLL_S = 1.0  # FLWR_SUPEREXEC_TASK_POLL_INTERVAL's default: how often a SuperExec claims tasks
PUSH_TOLERANCE_S = 0.005  # log stamps are whole milliseconds

PICKUP = "pickup"
FETCH = "fetch"
SPAWN = "spawn"
STARTUP = "startup"
APP = "app"
HANDLER = "handler"
REPLY_POLL = "reply_poll"
UPLOAD = "upload"
NOTICE = "notice"
SERVER = "server"
SEGMENTS = (PICKUP, FETCH, SPAWN, STARTUP, APP, HANDLER, REPLY_POLL, UPLOAD, NOTICE, SERVER)
FIXED_WAITS = (PICKUP, REPLY_POLL)  # Flower's hard-coded sleeps (SPAWN holds the configurable SuperExec poll)
SECAGG_STAGES = ("setup", "share keys", "collect masked vectors", "unmask")


@dataclass
class Exchange:
    round: int
    stage: str
    push: float
    end: float
    messages: list[NodeMessage]
    last_node: str = ""
    segments: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.push


@dataclass
class RoundTiming:
    round: int
    exchanges: list[Exchange]

    @property
    def seconds(self) -> float:
        return sum(exchange.seconds for exchange in self.exchanges)

    @property
    def start(self) -> float:
        return self.exchanges[0].push

    @property
    def end(self) -> float:
        return self.exchanges[-1].end

    def segments(self) -> dict[str, float]:
        total = dict.fromkeys(SEGMENTS, 0.0)
        for exchange in self.exchanges:
            for name, seconds in exchange.segments.items():
                total[name] += seconds
        return total


@dataclass
class JobTiming:
    """One job's rounds, its once-per-run costs, and the ClientApp processes it started."""

    submitted: float
    run_created: float
    serverapp_started: float
    first_push: float
    rounds: list[RoundTiming]
    evaluation: Exchange | None
    last_recorded: float
    serverapp_finished: float
    finished: float
    clientapp_startup_s: list[float]  # per message: process start -> our ClientApp starts loading
    clientapp_cpu_s: list[float]  # per message: the whole flwr-clientapp process

    @property
    def serverapp_startup_s(self) -> float:
        return self.first_push - self.submitted


@dataclass(frozen=True)
class JobEvidence:
    """What one job left behind, gathered after it ended."""

    run_id: int
    submitted: float
    finished: float  # the job store's last update (its final state)
    recorded_at: dict[int, float]  # round -> when the ServerApp recorded it in the job store
    messages: list[NodeMessage]  # every SuperNode's messages of this run
    link: LinkEvents
    node_calls: dict[str, list[float]]  # org -> when its Train/Evaluate audit entries were written
    handler_s: dict[str, float]  # org -> a Train call's time at that node, measured alone
    traces: list[ProcessTrace]
    component_of: dict[str, str]  # org -> the sampler component of its SuperNode


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def analyse(evidence: JobEvidence, *, secagg: bool) -> JobTiming:
    """Rebuild the job's exchanges and rounds from its evidence; raises ValueError when events are missing."""
    window = evidence.link.run_window(evidence.run_id)
    if window is None:
        raise ValueError(
            f"the SuperLink log shows no start and end of the ServerApp of run {evidence.run_id}"
        )
    pushes = [moment for moment in evidence.link.pushes if window[0] <= moment <= window[1]]
    if not pushes:
        raise ValueError(f"the ServerApp of run {evidence.run_id} pushed no message")
    grouped: dict[int, list[NodeMessage]] = {}
    for message in evidence.messages:
        index = bisect.bisect_right(pushes, message.events[RECEIVING] + PUSH_TOLERANCE_S) - 1
        grouped.setdefault(max(index, 0), []).append(message)
    last_round = max(evidence.recorded_at)
    exchanges = []
    for index in sorted(grouped):
        end = pushes[index + 1] if index + 1 < len(pushes) else evidence.recorded_at[last_round]
        members = grouped[index]
        kind = "evaluate" if any(message.kind == "evaluate" for message in members) else "train"
        exchange = Exchange(members[0].round or 0, kind, pushes[index], end, members)
        _critical_path(exchange, evidence)
        exchanges.append(exchange)
    rounds = _rounds([exchange for exchange in exchanges if exchange.stage != "evaluate"], secagg)
    evaluation = next((exchange for exchange in exchanges if exchange.stage == "evaluate"), None)
    startup, cpu = _clientapp_costs(evidence)
    created = [moment for moment, run in evidence.link.runs_created if run == evidence.run_id]
    return JobTiming(
        submitted=evidence.submitted,
        run_created=created[0] if created else evidence.submitted,
        serverapp_started=window[0],
        first_push=pushes[0],
        rounds=rounds,
        evaluation=evaluation,
        last_recorded=evidence.recorded_at[last_round],
        serverapp_finished=window[1],
        finished=evidence.finished,
        clientapp_startup_s=startup,
        clientapp_cpu_s=cpu,
    )


def _rounds(exchanges: list[Exchange], secagg: bool) -> list[RoundTiming]:
    by_round: dict[int, list[Exchange]] = {}
    for exchange in exchanges:
        by_round.setdefault(exchange.round, []).append(exchange)
    rounds = []
    for number in sorted(by_round):
        members = sorted(by_round[number], key=lambda exchange: exchange.push)
        stages = SECAGG_STAGES if secagg and len(members) == len(SECAGG_STAGES) else ()
        for position, exchange in enumerate(members):
            plain = "fit" if len(members) == 1 else f"exchange {position + 1}"
            exchange.stage = stages[position] if stages else plain
        rounds.append(RoundTiming(number, members))
    return rounds


def _critical_path(exchange: Exchange, evidence: JobEvidence) -> None:
    """Fill `exchange.segments` along the node that replied last; they add up to the exchange's time."""
    last = max(exchange.messages, key=lambda message: message.events.get(SENT, message.events[RECEIVING]))
    exchange.last_node = last.node
    process = _clientapp_of(last, evidence)
    notice = max(
        (moment for moment in evidence.link.confirms if last.events.get(SENT, 0.0) <= moment <= exchange.end),
        default=None,
    )
    points = (
        (PICKUP, last.at(RECEIVING)),
        (FETCH, last.at(FETCHED)),
        (SPAWN, process.started if process else None),
        (STARTUP, last.at(APP_LOADING)),
        (APP, last.at(REPLY_PUSHED)),
        (REPLY_POLL, last.at(SENDING)),
        (UPLOAD, last.at(SENT)),
        (NOTICE, notice),
        (SERVER, exchange.end),
    )
    reached = exchange.push
    segments = dict.fromkeys(SEGMENTS, 0.0)
    for name, moment in points:
        if moment is None:
            continue  # this stretch is counted in the next segment that has an event
        segments[name] = max(0.0, moment - reached)
        reached = max(reached, moment)
    # The node's audit entry marks the end of its Train/Evaluate handler; how long the handler ran is taken
    # from the same call measured alone, at most the time our ClientApp code had.
    loading, replied = last.at(APP_LOADING), last.at(REPLY_PUSHED)
    if loading is not None and replied is not None:
        calls = [moment for moment in evidence.node_calls.get(last.node, []) if loading <= moment <= replied]
        if calls:
            handler = min(evidence.handler_s.get(last.node, 0.0), calls[-1] - loading, segments[APP])
            segments[HANDLER] = handler
            segments[APP] -= handler
    exchange.segments = segments


def _clientapp_of(message: NodeMessage, evidence: JobEvidence) -> ProcessTrace | None:
    """The flwr-clientapp process that handled `message`: started under its SuperNode after the message
    arrived and before our ClientApp began loading."""
    component = evidence.component_of.get(message.node)
    received, loading = message.at(RECEIVING), message.at(APP_LOADING)
    if component is None or received is None or loading is None:
        return None
    candidates = [
        trace
        for trace in evidence.traces
        if trace.component == component
        and trace.program == CLIENTAPP
        and received - 0.05 <= trace.started <= loading
    ]
    return max(candidates, key=lambda trace: trace.started, default=None)


def _clientapp_costs(evidence: JobEvidence) -> tuple[list[float], list[float]]:
    startup, cpu = [], []
    for message in evidence.messages:
        process = _clientapp_of(message, evidence)
        loading = message.at(APP_LOADING)
        if process is None or loading is None:
            continue
        startup.append(loading - process.started)
        if process.exited is not None:
            cpu.append(process.cpu_total)
    return startup, cpu


def floor_per_round(exchanges_per_round: float) -> float:
    """The least a round can take from Flower's fixed waits alone: at every exchange the node that replied
    last finds no message when it pulls right after replying, so it sleeps IDLE_SLEEP_S before it can pick up
    the next one; then its reply waits half a reply poll on average."""
    return exchanges_per_round * (IDLE_SLEEP_S + REPLY_POLL_S / 2)
