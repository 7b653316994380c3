"""The ipspace training Flower App (the valuation network or the matching head): entry points only.

See pyproject.toml.
"""
