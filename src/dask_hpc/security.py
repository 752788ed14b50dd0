"""Per-session TLS: a CA and a certificate of the session's own, so that only its owner gets in.

A Dask scheduler runs the functions its clients send: on a shared machine, anyone
who can connect could run code as you. At ``up`` each session gets a new CA
and one certificate signed by it, for every role (scheduler, workers,
clients), in ``<state dir>/tls/``. The CA's key is not kept: no one can sign
another certificate for the session. distributed verifies both ends against
the session's CA (mutual TLS); a client or worker without the files, or with
another session's, is refused.
"""

from __future__ import annotations

import datetime
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dask_hpc.errors import SessionError

if TYPE_CHECKING:
    from distributed import Security

__all__ = [
    "Credentials",
    "TLSFiles",
    "check_private",
    "create_tls_files",
    "make_credentials",
    "tls_files",
    "worker_credentials",
    "write_tls_files",
]

#: Certificates outlive any walltime; a new session gets new ones.
VALIDITY = datetime.timedelta(days=366)


class TLSFiles:
    """Where a session's CA certificate, certificate and key are."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "session.pem"
        self.key = directory / "session.key"

    def exists(self) -> bool:
        return self.ca.exists() and self.cert.exists() and self.key.exists()

    def security(self) -> Security:
        """distributed's Security for every role, after checking that only the user can read them."""
        from distributed import Security

        check_private(self.directory)
        for path in (self.ca, self.cert, self.key):
            check_private(path)
        return Security(
            require_encryption=True,
            tls_ca_file=str(self.ca),
            tls_client_cert=str(self.cert),
            tls_client_key=str(self.key),
            tls_scheduler_cert=str(self.cert),
            tls_scheduler_key=str(self.key),
            tls_worker_cert=str(self.cert),
            tls_worker_key=str(self.key),
        )

    def credentials(self) -> Credentials:
        """The credentials themselves (for a process that joins the cluster), after the same check."""
        self.security()
        return Credentials(ca=self.ca.read_text(), cert=self.cert.read_text(), key=self.key.read_text())

    def worker_arguments(self) -> list[str]:
        """``dask worker`` options that give a worker the session's certificate."""
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def tls_files(state_dir: Path) -> TLSFiles:
    return TLSFiles(state_dir / "tls")


@dataclass(frozen=True)
class Credentials:
    """A session's CA certificate, certificate and key, as PEM text."""

    ca: str
    cert: str
    key: str

    def security(self) -> Security:
        """distributed's Security for every role, from memory (distributed accepts PEM text)."""
        from distributed import Security

        return Security(
            require_encryption=True,
            tls_ca_file=self.ca,
            tls_client_cert=self.cert,
            tls_client_key=self.key,
            tls_scheduler_cert=self.cert,
            tls_scheduler_key=self.key,
            tls_worker_cert=self.cert,
            tls_worker_key=self.key,
        )

    def client_config(self) -> dict[str, object]:
        """dask config under which a plain ``Client()`` uses these credentials."""
        return {
            "distributed.comm.require-encryption": True,
            "distributed.comm.tls.ca-file": self.ca,
            "distributed.comm.tls.client.cert": self.cert,
            "distributed.comm.tls.client.key": self.key,
        }


def worker_credentials(security: Security) -> Credentials:
    """A user's ``Security``, the workers' part (its CA, the worker certificate and key,
    each a file or PEM text, as distributed takes them), as PEM text to write for the jobs.

    Raises SessionError for a Security without them: workers could not connect.
    """
    config = security.get_tls_config_for_role("worker")
    ca, cert, key = config.get("ca_file"), config.get("cert"), config.get("key")
    if not ca or not cert:
        raise SessionError(
            "security has no tls_ca_file or tls_worker_cert: workers could not connect; give both "
            "(Security.temporary() has them), or security=True for the session's own"
        )

    def pem(value: str) -> str:
        if "-----BEGIN" in value:
            return value
        try:
            return Path(value).read_text()
        except OSError as exc:
            raise SessionError(f"cannot read {value} of security: {exc.strerror}") from None

    cert_text = pem(cert)
    return Credentials(ca=pem(ca), cert=cert_text, key=pem(key) if key else cert_text)


def make_credentials(session_name: str) -> Credentials:
    """A new CA, and one certificate it signs for every role of the session; the CA key is dropped."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dask-hpc"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"dask-hpc session {session_name} CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # nodes' clocks differ a little
        .not_valid_after(now + VALIDITY)
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
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"dask-hpc session {session_name}"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Credentials(
        ca=ca_cert.public_bytes(pem).decode(),
        cert=cert.public_bytes(pem).decode(),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


def create_tls_files(state_dir: Path, session_name: str) -> TLSFiles:
    """A new CA and session certificate in ``<state_dir>/tls`` (dir 0700, files 0600)."""
    return write_tls_files(state_dir, make_credentials(session_name))


def write_tls_files(state_dir: Path, credentials: Credentials) -> TLSFiles:
    """``credentials`` in ``<state_dir>/tls`` (dir 0700, files 0600)."""
    files = tls_files(state_dir)
    files.directory.mkdir(mode=0o700, exist_ok=True)
    files.directory.chmod(0o700)
    _write_private(files.ca, credentials.ca.encode())
    _write_private(files.cert, credentials.cert.encode())
    _write_private(files.key, credentials.key.encode())
    return files


def check_private(path: Path) -> None:
    """Refuse a file or directory that anyone but its owner may read or change."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise SessionError(f"{path} is missing; start the session again with dask-hpc up") from None
    if mode & 0o077:
        wanted = 0o700 if path.is_dir() else 0o600
        raise SessionError(
            f"{path} has mode {mode:04o}: other users could read the session's keys; "
            f"fix with: chmod {wanted:o} {path}"
        )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)
