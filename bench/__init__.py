"""Benchmarks that print their measurements side by side with a baseline run and the goals they serve.

``python -m bench.gate``: the gate's cost against bare gRPC, durable audit appends, and bundle verification.
"""


class BenchFailed(Exception):
    """A call failed, a process did not start, or a check did not hold: the figures can not be trusted."""
