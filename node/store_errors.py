"""Errors of the dataset store: one class per kind of failure, each with a reason a person understands."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every dataset-store failure."""


class UnknownDataset(StoreError):
    """No dataset of that name is held by this node."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no dataset named {name!r} is held by this node")
        self.name = name


class UnknownField(StoreError):
    """The dataset has no field of that name."""

    def __init__(self, dataset: str, field: str) -> None:
        super().__init__(f"dataset {dataset!r} has no field {field!r}")
        self.dataset = dataset
        self.field = field


class InvalidDataset(StoreError):
    """A CSV cannot be imported: bad name or header, ragged row, missing or repeated record id."""


class DatasetExists(StoreError):
    """A dataset of that name is already held and replacing it was not asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a dataset named {name!r} already exists (import with replace=True to overwrite it)"
        )
        self.name = name


class NotEmbedded(StoreError):
    """The dataset holds no embedding set of the fields asked for (or none at all), so it cannot be matched
    or train on them."""

    def __init__(
        self, name: str, *, wanted: tuple[str, ...] | None = None, held: tuple[tuple[str, ...], ...] = ()
    ) -> None:
        if not held:
            message = (
                f"dataset {name!r} was imported without embeddings: import it again naming the text fields "
                "to embed (ipspace node init --embed FIELD)"
            )
        else:
            sets = "; ".join("+".join(group) for group in held)
            asked = f"no embedding set of {'+'.join(wanted)}" if wanted else "several embedding sets"
            message = f"dataset {name!r} has {asked} (it holds: {sets})"
        super().__init__(message)
        self.name = name
