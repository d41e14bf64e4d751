"""`nox -s certs`: a local certificate authority and a server certificate for the backend's TLS.

Writes into a folder (default `.certs/`, git-ignored): `ca.pem` (give it to clients: the frontend's
BACKEND_CA_FILE, `grpcurl -cacert`, the backend's TLS_CA_FILE for its container probe), and
`server.pem` / `server.key` (the backend's TLS_CERT_FILE / TLS_KEY_FILE), valid for localhost,
127.0.0.1, ::1 and `backend` (its name inside docker compose). The CA's private key is not kept:
nothing else is ever signed with it, so there is nothing to steal. For development only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scripts.processes import ROOT

DNS_NAMES = ("localhost", "backend")
IP_ADDRESSES = ("127.0.0.1", "::1")
VALID_DAYS = 365


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fruitstack development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificates(out_dir: Path, *, dns_names: tuple[str, ...] = DNS_NAMES) -> CertFiles:
    """A fresh CA and a server certificate signed by it, as PEM files in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    not_before, not_after = now - timedelta(minutes=5), now + timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fruitstack development CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fruitstack backend"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = CertFiles(ca=out_dir / "ca.pem", cert=out_dir / "server.pem", key=out_dir / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    # Readable by others on purpose: the backend container runs as its own user (uid 10001) and
    # reads the key through a bind mount. A development key; never use these files elsewhere.
    os.chmod(files.key, 0o644)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / ".certs", help="folder for the PEM files")
    args = parser.parse_args(argv)
    files = make_certificates(args.out)
    print(f"wrote {files.ca}, {files.cert} and {files.key} (SANs: {', '.join(DNS_NAMES + IP_ADDRESSES)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
