"""Flower's own timestamped log lines, read back as events: what the ServerApp pushed and when, and for every
message a SuperNode handled, when it arrived, when its ClientApp process ran, and when the reply left.

With `FLWR_LOG_LEVEL=DEBUG` Flower stamps its lines with the wall clock (milliseconds). A SuperNode handles
one message at a time, and the processes under it (its SuperExec and each `flwr-clientapp`) write to the same
log file, so a SuperNode's log reads as a sequence of messages, each from "Receiving" to "Sent successfully".
The SuperLink's log holds the ServerApp's side: each push (`Runtime.PushMessages`), each reply it pulled
(`Runtime.ConfirmMessageReceived`), and each node's reply arriving (`[Fleet.PushMessages]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STAMPED = re.compile(r"^(DEBUG|INFO|WARNING|ERROR)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}):\s*(.*)$")
_HEADER = re.compile(r"^\[RUN (\d+)(?:, ROUND (\d+))?\]$")
_RECEIVING = re.compile(r"^Receiving: (\S+) message \(ID: ([0-9a-f]+)\)")
_SENDING = re.compile(r"^Sending: (\S+) message")
_CREATED_RUN = re.compile(r"^Created run (\d+)")
_TASK_STARTED = re.compile(r"^Started task \d+ of run (\d+)")
_TASK_FINISHED = re.compile(r"^Finished task \d+ of run (\d+)")
_REPLY_FROM = re.compile(r"^\[Fleet\.PushMessages\] Push replies from node_id=(\d+)")

# Events of one message at a SuperNode, in the order they happen.
RECEIVING = "receiving"  # the SuperNode's pull returned the message
FETCHED = "fetched"  # its objects are pulled and stored; a task for a ClientApp process exists
IMPORTED = "imported"  # the new flwr-clientapp process finished its imports
TASK_STARTED = "task_started"  # ... and got its task input (context, run, FAB) from the SuperNode
APP_LOADING = "app_loading"  # ... installed the FAB and starts loading our ClientApp
REPLY_PUSHED = "reply_pushed"  # our ClientApp returned; the process hands the reply to the SuperNode
TASK_FINISHED = "task_finished"  # the process reported its task finished (it exits next)
SENDING = "sending"  # the SuperNode's loop found the reply and starts sending it
SENT = "sent"  # the reply and its objects are at the SuperLink

_SUPERNODE_EVENTS = {
    "Received successfully": FETCHED,
    "Start `flwr-clientapp` process": IMPORTED,
    "[flwr-clientapp] Start `ClientApp` Loading.": APP_LOADING,
    "Runtime.PushMessages": REPLY_PUSHED,
    "Sent successfully": SENT,
}


@dataclass
class NodeMessage:
    """One message a SuperNode received and answered."""

    node: str
    run_id: int
    round: int | None  # the ServerApp's group id: the round number in the legacy workflow
    kind: str  # "train" or "evaluate" (SecAgg+ stages all travel as train messages)
    message_id: str
    events: dict[str, float] = field(default_factory=dict)  # event -> epoch seconds

    def at(self, event: str) -> float | None:
        return self.events.get(event)


@dataclass
class LinkEvents:
    """What the SuperLink logged about runs, the ServerApp's pushes and pulls, and replies arriving."""

    runs_created: list[tuple[float, int]] = field(default_factory=list)  # (epoch, run id)
    serverapp_started: list[tuple[float, int]] = field(default_factory=list)
    serverapp_finished: list[tuple[float, int]] = field(default_factory=list)
    pushes: list[float] = field(default_factory=list)  # one per ServerApp push_messages call
    confirms: list[float] = field(default_factory=list)  # one per reply the ServerApp pulled
    replies: list[tuple[float, int]] = field(default_factory=list)  # (epoch, Flower node id)

    def run_window(self, run_id: int) -> tuple[float, float] | None:
        """(ServerApp got its task, ServerApp finished) for `run_id`, None until both are logged."""
        started = [moment for moment, run in self.serverapp_started if run == run_id]
        finished = [moment for moment, run in self.serverapp_finished if run == run_id]
        return (started[0], finished[-1]) if started and finished else None


def _stamped_lines(path: Path) -> Iterator[tuple[float, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            match = _STAMPED.match(_ANSI.sub("", raw).rstrip("\n"))
            if match is None:
                continue  # uvicorn access lines, pip's "Successfully installed", blank lines
            moment = datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
            yield moment, match.group(3).strip()


def read_supernode_log(path: Path, node: str) -> list[NodeMessage]:
    """Every message in one SuperNode's log, with the events of its handling."""
    messages: list[NodeMessage] = []
    header: tuple[int, int | None] | None = None
    current: NodeMessage | None = None
    for moment, text in _stamped_lines(path):
        if match := _HEADER.match(text):
            header = (int(match.group(1)), int(match.group(2)) if match.group(2) else None)
        elif match := _RECEIVING.match(text):
            run_id, round_number = header if header else (0, None)
            current = NodeMessage(node, run_id, round_number, match.group(1), match.group(2))
            current.events[RECEIVING] = moment
            messages.append(current)
        elif current is None:
            continue
        elif _SENDING.match(text):
            current.events.setdefault(SENDING, moment)
        elif _TASK_STARTED.match(text):
            current.events.setdefault(TASK_STARTED, moment)
        elif _TASK_FINISHED.match(text):
            current.events.setdefault(TASK_FINISHED, moment)
        elif text in _SUPERNODE_EVENTS:
            current.events.setdefault(_SUPERNODE_EVENTS[text], moment)
    return messages


def read_superlink_log(path: Path) -> LinkEvents:
    events = LinkEvents()
    for moment, text in _stamped_lines(path):
        if text == "Runtime.PushMessages":
            events.pushes.append(moment)
        elif text == "Runtime.ConfirmMessageReceived":
            events.confirms.append(moment)
        elif match := _REPLY_FROM.match(text):
            events.replies.append((moment, int(match.group(1))))
        elif match := _CREATED_RUN.match(text):
            events.runs_created.append((moment, int(match.group(1))))
        elif match := _TASK_STARTED.match(text):
            events.serverapp_started.append((moment, int(match.group(1))))
        elif match := _TASK_FINISHED.match(text):
            events.serverapp_finished.append((moment, int(match.group(1))))
    return events
