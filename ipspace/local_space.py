"""Build a local data space on disk: a CA, member identities with tokens, provider nodes with data and offers.

Used by ``ipspace demo`` and by the tests, so both exercise the same set-up a person would do with the CLI
(``ipspace ca init``, ``ipspace identity issue``, ``ipspace node init``, offers written as JSON files).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from contracts.offers import Offer
from crypto import CertificateAuthority, Identity, Role
from ipspace.cli_identity import write_token
from ipspace.sample_data import shipped_embedder
from node.config import NodeConfig, NodePaths
from node.store import DatasetStore

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class LocalDataSpace:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.ca_dir = self.root / "ca"
        self._ca: CertificateAuthority | None = None

    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            self._ca = CertificateAuthority.load(self.ca_dir)
        return self._ca

    def create_ca(self) -> CertificateAuthority:
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        self._ca = CertificateAuthority.create(self.ca_dir)
        return self._ca

    def issue(
        self,
        name: str,
        org: str,
        role: Role,
        *,
        hosts: Sequence[str] = (),
        token_ttl: timedelta = timedelta(hours=2),
    ) -> Path:
        """Issue an identity into ``<root>/members/<name>`` with a token beside it; returns the directory."""
        directory = self.root / "members" / name
        directory.mkdir(parents=True, exist_ok=True)
        identity = self.ca.issue(name, org, role, hosts=hosts)
        identity.save(directory)
        write_token(directory, self.ca.issue_token(identity.principal(), ttl=token_ttl))
        return directory

    def init_node(
        self,
        name: str,
        org: str,
        *,
        datasets: dict[str, tuple[Path, str, str, str]],
        offers: Sequence[Offer],
        embed: dict[str, tuple[str, ...]] | None = None,
        embed_each: dict[str, tuple[str, ...]] | None = None,
        listen: str = "127.0.0.1:0",
        head_every: int = 1000,
        head_interval_s: float = 5.0,
    ) -> Path:
        """A node directory with its own provider identity (hosts: loopback), datasets and offer files.

        ``datasets`` maps a dataset name to (csv path, id field, description, source); ``embed`` maps a
        dataset name to the text fields embedded (joined) at import for matching, ``embed_each`` to the
        fields embedded one by one (a phrase pair's anchor and target, for training the matching head).
        """
        directory = self.root / "nodes" / name
        paths = NodePaths(directory)
        paths.offers.mkdir(parents=True, exist_ok=True)
        identity_dir = self.issue(name, org, Role.PROVIDER, hosts=LOOPBACK_HOSTS)
        Identity.load(identity_dir).save(paths.identity)
        (paths.identity / "token").write_bytes((identity_dir / "token").read_bytes())
        (paths.identity / "token").chmod(0o600)
        store = DatasetStore(paths.datasets_db)
        embedder = shipped_embedder() if embed or embed_each else None
        for dataset, (csv_path, id_field, description, source) in datasets.items():
            store.import_csv(
                dataset,
                csv_path,
                id_field=id_field,
                description=description,
                source=source,
                embed_fields=(embed or {}).get(dataset, ()),
                embed_each=(embed_each or {}).get(dataset, ()),
                embedder=embedder,
            )
        for offer in offers:
            (paths.offers / f"{offer.offer_id}.json").write_text(
                json.dumps(offer.model_dump(mode="json"), indent=2) + "\n"
            )
        NodeConfig(
            name=name,
            org=org,
            listen=listen,
            datasets=list(datasets),
            head_every=head_every,
            head_interval_s=head_interval_s,
        ).save(directory)
        return directory
