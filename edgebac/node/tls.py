"""TLS for the client API: the operator's certificate, or one the node makes for itself.

`--tls self-signed` makes a key and certificate on first start (`tls/key.pem`, mode 0600, and
`tls/cert.pem` in the data dir) and reuses them after, so a client that pinned the printed
fingerprint (`--tls-fingerprint`) keeps trusting the node across restarts.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgebac.errors import ConfigError
from edgebac.node.config import HostPort, NodeConfig, TlsConfig

if TYPE_CHECKING:  # cryptography loads only on a node that serves TLS
    from cryptography import x509

TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 3650  # clients pin the fingerprint; an expiry would only break them one day


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    fingerprint: str  # hex of the sha256 of the DER certificate
    cert: Path
    self_signed: bool


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def node_tls(config: NodeConfig, data_dir: Path) -> ServerTls | None:
    """The node's TLS, if any; a certificate it makes names every address it listens on."""
    if config.tls is None:
        return None
    hosts = [config.listen.host, config.api_address.host]
    hosts += [config.advertise.host] if config.advertise else []
    return server_tls(config.tls, data_dir, hosts)


def client_lines(api_listen: HostPort | None, api: HostPort, tls: ServerTls | None) -> list[str]:
    """What the node says after its `listening on` line when clients call elsewhere or over
    https: the client API's URL, and the certificate's fingerprint for clients to pin."""
    if api_listen is None and tls is None:
        return []
    lines = [f"client API on {'https' if tls else 'http'}://{api}"]
    if tls is not None:
        made = " (self-signed)" if tls.self_signed else ""
        lines.append(f"tls: certificate {tls.cert}{made} fingerprint sha256:{tls.fingerprint}")
    return lines


def server_tls(config: TlsConfig, data_dir: Path, hosts: list[str]) -> ServerTls:
    """The server context for `config`; a self-signed certificate names `hosts`."""
    if config.self_signed:
        folder = data_dir / TLS_DIR
        cert, key = folder / CERT_FILE, folder / KEY_FILE
        if not (cert.is_file() and key.is_file()):
            make_self_signed(folder, hosts)
        flags = ("--tls self-signed", "--tls self-signed")
    else:
        if config.cert is None or config.key is None:
            raise ConfigError("--tls-cert and --tls-key go together: give both files")
        cert, key = config.cert, config.key
        flags = ("--tls-cert", "--tls-key")
    der = _check_files(cert, key, *flags)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"{flags[1]}: {key} does not go with {cert}: {exc.reason}") from None
    return ServerTls(context, fingerprint_of(der), cert, config.self_signed)


def _check_files(cert: Path, key: Path, cert_flag: str, key_flag: str) -> bytes:
    """The leaf certificate's DER; each unreadable or malformed file named with its flag."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{cert_flag}: cannot read {cert}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{cert_flag}: {cert} is not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(key.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"{key_flag}: cannot read {key}: {exc.strerror}") from None
    except TypeError:
        raise ConfigError(f"{key_flag}: {key} is encrypted; give an unencrypted key") from None
    except ValueError:
        raise ConfigError(f"{key_flag}: {key} is not a PEM private key") from None
    return leaf.public_bytes(serialization.Encoding.DER)


def make_self_signed(folder: Path, hosts: list[str]) -> None:
    """An ECDSA P-256 key (0600) and a certificate naming `hosts`, localhost and 127.0.0.1.

    Written to temporary names and renamed, key first: a start killed half-way leaves no
    certificate, so the next start makes both again.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgebac node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(folder / KEY_FILE, key_pem, 0o600)
    _write(folder / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: dict[str, x509.GeneralName] = {}
    for host in [*hosts, "localhost", "127.0.0.1"]:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            names[host] = x509.DNSName(host)
            continue
        if not address.is_unspecified:  # 0.0.0.0 names no host a client could dial
            names[str(address)] = x509.IPAddress(address)
    return list(names.values())


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
