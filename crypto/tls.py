"""gRPC mutual-TLS credentials built from an identity, trusting only this data space's CA.

Both ends present their TLS certificate and accept only peers whose certificate chains to the CA. Who the
peer is (and whether its token is bound to it) is decided afterwards by the gate, from the peer certificate,
with `principal_from_tls_certificate`.
"""

from __future__ import annotations

import grpc

from crypto._secret_access import TOKEN
from crypto.identity import Identity


def server_credentials(identity: Identity) -> grpc.ServerCredentials:
    """Server side of mTLS: presents the identity's TLS certificate, requires a CA-issued client one."""
    return grpc.ssl_server_credentials(
        [(identity.tls_key_pem(TOKEN), identity.tls_cert_pem)],
        root_certificates=identity.ca_cert_pem,
        require_client_auth=True,
    )


def channel_credentials(identity: Identity) -> grpc.ChannelCredentials:
    """Client side of mTLS: presents the identity's TLS certificate, trusts only the CA for the server's."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_cert_pem,
        private_key=identity.tls_key_pem(TOKEN),
        certificate_chain=identity.tls_cert_pem,
    )
