"""The node's certificates, without sockets: what a self-signed one names, that it is kept
across starts (clients pinned it), and which flag a bad file is blamed on."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgebac.errors import ConfigError
from edgebac.node.config import HostPort, NodeConfig, TlsConfig
from edgebac.node.tls import client_lines, fingerprint_of, node_tls, server_tls

SELF_SIGNED = TlsConfig(self_signed=True)


def names_in(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in sans}


def test_a_self_signed_certificate_names_where_clients_dial(tmp_path):
    config = NodeConfig(
        listen=HostPort("0.0.0.0", 7700),
        api_listen=HostPort("10.1.2.3", 7701),
        advertise=HostPort("node-7.example", 7700),
        tls=SELF_SIGNED,
    )
    tls = node_tls(config, tmp_path)
    assert tls is not None
    assert tls.self_signed
    names = names_in((tmp_path / "tls" / "cert.pem").read_bytes())
    assert names == {"10.1.2.3", "node-7.example", "localhost", "127.0.0.1"}  # not 0.0.0.0
    assert (tmp_path / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700


def test_the_certificate_is_kept_across_starts_and_made_again_if_half_there(tmp_path):
    first = server_tls(SELF_SIGNED, tmp_path, ["127.0.0.1"])
    assert server_tls(SELF_SIGNED, tmp_path, ["10.9.9.9"]).fingerprint == first.fingerprint
    der = x509.load_pem_x509_certificate(first.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert first.fingerprint == fingerprint_of(der)
    first.cert.unlink()  # a start killed between writing the key and the certificate
    again = server_tls(SELF_SIGNED, tmp_path, ["127.0.0.1"])
    assert again.fingerprint != first.fingerprint
    assert not list((tmp_path / "tls").glob("*.tmp"))


def test_no_tls_configured_is_none(tmp_path):
    assert node_tls(NodeConfig(), tmp_path) is None
    assert not (tmp_path / "tls").exists()


def test_an_encrypted_key_is_refused_naming_the_flag(tmp_path):
    made = server_tls(SELF_SIGNED, tmp_path, [])
    key = ec.generate_private_key(ec.SECP256R1())
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match=r"^--tls-key: .* is encrypted"):
        server_tls(TlsConfig(cert=made.cert, key=locked), tmp_path, [])


@pytest.mark.parametrize(
    ("api_listen", "tls", "lines"),
    [
        (None, False, []),
        (HostPort("10.0.0.1", 8443), False, ["client API on http://10.0.0.1:8443"]),
        (None, True, ["client API on https://10.0.0.1:8443", "tls: certificate"]),
    ],
)
def test_start_up_lines(tmp_path, api_listen, tls, lines):
    made = server_tls(SELF_SIGNED, tmp_path, []) if tls else None
    said = client_lines(api_listen, HostPort("10.0.0.1", 8443), made)
    assert [line[: len(want)] for line, want in zip(said, lines, strict=True)] == lines
    if made is not None:
        assert said[1].endswith(f"(self-signed) fingerprint sha256:{made.fingerprint}")


def test_ipv6_hosts_are_ip_names(tmp_path):
    server_tls(SELF_SIGNED, tmp_path, ["::", "fd00::1"])
    names = names_in((tmp_path / "tls" / "cert.pem").read_bytes())
    assert str(ipaddress.ip_address("fd00::1")) in names
    assert "::" not in names
