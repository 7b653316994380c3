"""The CLI's exit codes: one table, used by the single top-level error handler in ``ipspace.cli``."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    VERIFICATION_FAILED = 1  # `audit verify` found tampering: the one "no" that is not an error of use
    USAGE = 2  # bad arguments or input files (typer uses 2 for its own usage errors too)
    REFUSED = 3  # a node refused the call: identity, policy or budget
    UNAVAILABLE = 4  # a node could not be reached or could not serve
    CONFIGURATION = 5  # a CA, identity or node directory is missing or wrong
