"""The local cluster's PKI: one CA that signs every serving and client certificate.

A real cluster authenticates components by client certificate (user = CN, groups = O) and
verifies the API server, the kubelet and the webhooks against a CA. Doing the same here
means RBAC, the Node authorizer and `kubectl logs` behave as they do on kind.
Files are generated once and kept: an exported KUBECONFIG stays valid across restarts.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Cert:
    """A certificate to issue: file stem, subject, and what it is used for."""

    name: str
    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pki:
    """Paths of the generated material (certificates by name)."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def ensure(*, directory: Path, certs: list[Cert]) -> Pki:
    """Create the CA, the service-account key pair and any missing certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(dir=directory)
    if not pki.ca_crt.exists():
        _write_ca(pki)
    if not pki.sa_key.exists():
        _write_sa_keys(pki)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_crt = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    for cert in certs:
        if not pki.crt(cert.name).exists():
            _issue(cert, ca_key=ca_key, ca_crt=ca_crt, pki=pki)
    return pki


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # tolerate clock skew


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds; every Kubernetes component accepts them.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def _write_ca(pki: Pki) -> None:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopwright-local-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + 10 * _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.ca_key, key)
    pki.ca_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_sa_keys(pki: Pki) -> None:
    # RSA keeps the service-account tokens RS256, the algorithm every client library expects.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_key, key)
    pki.sa_pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _issue(cert: Cert, *, ca_key: ec.EllipticCurvePrivateKey, ca_crt: x509.Certificate, pki: Pki) -> None:
    key = _new_key()
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in cert.orgs]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, cert.cn))
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if cert.server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if cert.client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject)).issuer_name(ca_crt.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
            content_commitment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in cert.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in cert.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(pki.key(cert.name), key)
    signed = builder.sign(ca_key, hashes.SHA256())
    pki.crt(cert.name).write_bytes(signed.public_bytes(serialization.Encoding.PEM))
