"""Provider-side training: what a node computes on its own rows for a federated job, and what it spends.

- `data`: the node's features and targets, split into training and held-out rows (no torch);
- `ledger`: the per-agreement privacy charge, as an effect of the call's audit transaction;
- `accountant`: the RDP ledger itself (Opacus's analysis); `calibration`: the noise for a job's epsilon;
- `dp_step`: the local DP-SGD step (Opacus); `rounds`: one round's plan, training and evaluation.

The package imports nothing itself: torch and Opacus load only when a module that needs them is imported,
so a node that never trains starts without them.
"""
