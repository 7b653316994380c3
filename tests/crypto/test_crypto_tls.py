"""A real gRPC mutual-TLS handshake on 127.0.0.1 with credentials built from identities."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from crypto import (
    CertificateAuthority,
    Identity,
    Role,
    channel_credentials,
    principal_from_tls_certificate,
    server_credentials,
)
from crypto._secret_access import TOKEN

TIMEOUT_S = 5


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture(scope="module")
def server_identity(ca: CertificateAuthority) -> Identity:
    return ca.issue("node-1", "acme", Role.PROVIDER, hosts=["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def client_identity(ca: CertificateAuthority) -> Identity:
    return ca.issue("consumer-1", "beta", Role.CONSUMER)


def _who_am_i(ca_cert_pem: bytes):
    """A handler that answers with the principal the server sees on the mTLS connection."""

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        peer_pem = context.auth_context()["x509_pem_cert"][0]
        principal = principal_from_tls_certificate(peer_pem, ca_cert_pem)
        return f"{principal.org}/{principal.name}/{principal.role}/{principal.tls_thumbprint}".encode()

    return grpc.method_handlers_generic_handler(
        "test.WhoAmI", {"Ask": grpc.unary_unary_rpc_method_handler(handle)}
    )


@pytest.fixture(scope="module")
def server_address(server_identity: Identity, ca: CertificateAuthority) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_generic_rpc_handlers([_who_am_i(ca.cert_pem)])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(server_identity))
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _health_check(address: str, credentials: grpc.ChannelCredentials) -> health_pb2.HealthCheckResponse:
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)


def test_mtls_handshake_between_members_of_one_data_space(server_address, client_identity):
    response = _health_check(server_address, channel_credentials(client_identity))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_server_sees_the_client_principal(server_address, client_identity):
    with grpc.secure_channel(server_address, channel_credentials(client_identity)) as channel:
        answer = channel.unary_unary("/test.WhoAmI/Ask")(b"", timeout=TIMEOUT_S)
    principal = client_identity.principal()
    assert answer.decode() == f"beta/consumer-1/consumer/{principal.tls_thumbprint}"


def test_client_certificate_from_another_ca_is_refused(server_address, ca, other_ca):
    stranger = other_ca.issue("consumer-1", "beta", Role.CONSUMER)
    # The stranger trusts our CA (so the server's certificate is fine) but presents a foreign certificate.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=stranger.tls_key_pem(TOKEN),
        certificate_chain=stranger.tls_cert_pem,
    )
    with pytest.raises(grpc.RpcError) as refused:
        _health_check(server_address, credentials)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_a_certificate_is_refused(server_address, ca):
    with pytest.raises(grpc.RpcError) as refused:
        _health_check(server_address, grpc.ssl_channel_credentials(root_certificates=ca.cert_pem))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_member_of_another_data_space_refuses_our_server(server_address, other_ca):
    stranger = other_ca.issue("consumer-1", "beta", Role.CONSUMER)
    with pytest.raises(grpc.RpcError) as refused:
        _health_check(server_address, channel_credentials(stranger))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_saved_and_loaded_identity_still_handshakes(tmp_path: Path, server_address, client_identity):
    client_identity.save(tmp_path)
    response = _health_check(server_address, channel_credentials(Identity.load(tmp_path)))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
