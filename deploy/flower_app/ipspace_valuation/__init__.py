"""The ipspace valuation Flower App: entry points only (see pyproject.toml)."""
