"""A Grid that polls for replies on a short interval, and keeps the reasons nodes give for errors.

Flower's own `send_and_receive` sleeps 3 s between pulls, which alone costs seconds per exchange (a SecAgg+
round has four). Nothing inside Flower is changed: this class wraps the Grid the ServerApp is given, forwards
every call to it, and implements `send_and_receive` with the public `push_messages` / `pull_messages` and a
short sleep. Everything that takes a Grid (strategies, DefaultWorkflow, SecAggPlusWorkflow) accepts it.

A node that refuses a round (its gate said no) answers with an error message; the workflows count it as a
failure without its reason, so the reasons are kept here for the job's status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

MIN_POLL_S, MAX_POLL_S = 0.01, 5.0
# How Flower 1.41 words an exception raised in a ClientApp: "<class 'module.Name'>:<'the message'>".
_CLIENT_APP_EXCEPTION = re.compile(r"<class '[^']*'>:<'(?P<message>.*)'>", re.DOTALL)


def readable_reason(reason: str) -> str:
    """The message of a ClientApp's exception without Flower's wrapping; other reasons as they are."""
    match = _CLIENT_APP_EXCEPTION.fullmatch(reason)
    return match["message"] if match else reason


class FastPollGrid(Grid):
    """Forwards to `inner`; polls every `poll_interval` seconds; `node_errors` maps node id -> last reason."""

    def __init__(self, inner: Grid, poll_interval: float = 0.1) -> None:
        if not MIN_POLL_S <= poll_interval <= MAX_POLL_S:
            raise ValueError(
                f"poll_interval must be within {MIN_POLL_S}..{MAX_POLL_S} s, not {poll_interval}"
            )
        self._inner = inner
        self._poll_interval = poll_interval
        self.node_errors: dict[int, str] = {}

    def set_run(self, run):
        self._inner.set_run(run)

    @property
    def run(self):
        return self._inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._inner.get_node_ids()

    def get_nodes(self):
        return self._inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push `messages`, then pull until every reply is in or `timeout` seconds have passed.

        The contract of Grid.send_and_receive: replies that did not arrive in time are absent, and a message
        that could not be pushed gets none. With timeout=None it waits for every reply.
        """
        outgoing = list(messages)
        if not outgoing:
            return []
        pending = {message_id for message_id in self.push_messages(outgoing) if message_id}
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            for reply in self.pull_messages(list(pending)):
                replies.append(reply)
                pending.discard(reply.metadata.reply_to_message_id)
                if reply.has_error():
                    self.node_errors[reply.metadata.src_node_id] = readable_reason(reply.error.reason)
            if not pending:
                break
            pause = self._poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                pause = min(pause, remaining)
            time.sleep(pause)
        return replies
