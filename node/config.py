"""A node's directory: its settings, identity, offers, datasets and state, in one place the provider owns.

<node>/node.json        name, org, listen address, datasets (written by ``ipspace node init``)
<node>/identity/        the node's certificates and keys (crypto.Identity)
<node>/offers/*.json    offers, edited by the provider (contracts.offers.Offer)
<node>/datasets.db      the dataset store
<node>/node.db          the audit log and the node's state (agreements, requests, revocations, budgets)
<node>/node.addr        written by ``ipspace node serve``: the address it listens on
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contracts.errors import OfferError
from contracts.offers import Offer, load_offer

CONFIG_FILE = "node.json"


class NodeConfigError(Exception):
    """The node directory is missing something or holds something wrong; the message names the file."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    org: str
    listen: str = "127.0.0.1:0"
    datasets: list[str] = field(default_factory=list)
    head_every: int = 1000
    head_interval_s: float = 5.0

    def save(self, directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> NodeConfig:
        path = directory / CONFIG_FILE
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise NodeConfigError(f"{path} does not exist: run 'ipspace node init' first") from None
        except json.JSONDecodeError as error:
            raise NodeConfigError(f"{path} is not valid JSON: {error}") from None
        try:
            return cls(**document)
        except TypeError as error:
            raise NodeConfigError(f"{path}: {error}") from None


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def identity(self) -> Path:
        return self.root / "identity"

    @property
    def offers(self) -> Path:
        return self.root / "offers"

    @property
    def datasets_db(self) -> Path:
        return self.root / "datasets.db"

    @property
    def state_db(self) -> Path:
        return self.root / "node.db"

    @property
    def address_file(self) -> Path:
        return self.root / "node.addr"


def load_offers(paths: NodePaths, provider_org: str, datasets: list[str]) -> dict[str, Offer]:
    """Every offer of the node, checked against the node: its org, datasets it holds, ids unique.

    Raises NodeConfigError naming the offending file, so a provider's typo stops the node at start-up rather
    than surfacing as a refusal later.
    """
    offers: dict[str, Offer] = {}
    for path in sorted(paths.offers.glob("*.json")):
        try:
            offer = load_offer(path)
        except OfferError as error:
            raise NodeConfigError(str(error)) from None
        if offer.provider_org != provider_org:
            raise NodeConfigError(
                f"{path}: provider_org is {offer.provider_org!r}, but this node is {provider_org!r}"
            )
        if offer.dataset not in datasets:
            raise NodeConfigError(
                f"{path}: dataset {offer.dataset!r} is not held by this node ({', '.join(datasets)})"
            )
        if offer.offer_id in offers:
            raise NodeConfigError(f"{path}: offer_id {offer.offer_id!r} is used by another offer file")
        offers[offer.offer_id] = offer
    return offers
