"""The coordinator's side of Flower: the SuperLink Control API, the valuation ServerApp, the job runner."""
