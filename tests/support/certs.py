"""Throw-away X.509 material for TLS tests, made with `cryptography`.

    pki = make_pki(tmp_path)
    env = {"ORCHESTRATOR_TLS_CERT_FILE": str(pki.server.cert_file), ...}
    grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)

A CA; a server certificate for 127.0.0.1 and localhost signed by it; a client
certificate signed by it (for mutual TLS); and a client certificate signed by
another CA the server does not trust. Keys are ECDSA P-256: quick to make.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=2)
# Issued a little in the past, so a clock a few seconds apart does not matter.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertAndKey:
    """One certificate and its key, as PEM bytes and as files."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Pki:
    ca: CertAndKey
    server: CertAndKey
    client: CertAndKey
    # Signed by a CA the server does not know: must be refused by mutual TLS.
    rogue_client: CertAndKey

    def channel_credentials(self, client: CertAndKey | None = None) -> grpc.ChannelCredentials:
        """Trusts the CA; presents `client`'s certificate when given."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Orchestrator tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> CertAndKey:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_file = directory / f"{stem}.crt"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    return CertAndKey(cert_pem, key_pem, cert_file, key_file)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
    )


def _ca(
    directory: Path, stem: str, common_name: str
) -> tuple[CertAndKey, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key), cert, key


def _leaf(
    directory: Path,
    stem: str,
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> CertAndKey:
    issuer_cert, issuer_key = issuer
    key = _key()
    builder = (
        _builder(_name(common_name), issuer_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(directory, stem, builder.sign(issuer_key, hashes.SHA256()), key)


def make_pki(directory: Path) -> Pki:
    """Creates every certificate and key under `directory` (which must exist)."""
    ca, ca_cert, ca_key = _ca(directory, "ca", "Orchestrator test CA")
    _, rogue_cert, rogue_key = _ca(directory, "rogue-ca", "Somebody else's CA")
    return Pki(
        ca=ca,
        server=_leaf(directory, "server", "127.0.0.1", (ca_cert, ca_key), server=True),
        client=_leaf(directory, "client", "test-client", (ca_cert, ca_key), server=False),
        rogue_client=_leaf(
            directory, "rogue-client", "rogue-client", (rogue_cert, rogue_key), server=False
        ),
    )


__all__ = ["CertAndKey", "Pki", "make_pki"]
