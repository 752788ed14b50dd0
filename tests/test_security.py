"""A session's CA and certificate: what they are, where they are, who may read them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dask_hpc.errors import SessionError
from dask_hpc.security import check_private, create_tls_files, tls_files


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "session"
    directory.mkdir(mode=0o700)
    return directory


def test_a_ca_signs_the_session_certificate(state_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    files = create_tls_files(state_dir, "climate")
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.issuer == ca.subject and "climate" in cert.subject.rfc4514_string()
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    # The CA's key is not kept: nobody can sign another certificate for the session.
    assert sorted(p.name for p in files.directory.iterdir()) == ["ca.pem", "session.key", "session.pem"]
    assert b"PRIVATE KEY" not in files.ca.read_bytes() + files.cert.read_bytes()


def test_files_are_private_and_give_every_role(state_dir: Path) -> None:
    files = create_tls_files(state_dir, "s")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    for path in (files.ca, files.cert, files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    security = files.security()
    assert security.require_encryption
    for role in ("client", "scheduler", "worker"):
        assert security.get_connection_args(role)["ssl_context"] is not None
    assert files.worker_arguments()[::2] == ["--tls-ca-file", "--tls-cert", "--tls-key"]


def test_new_certificates_each_time(state_dir: Path) -> None:
    first = create_tls_files(state_dir, "s").ca.read_bytes()
    assert create_tls_files(state_dir, "s").ca.read_bytes() != first


@pytest.mark.parametrize(("mode", "fix"), [(0o644, "chmod 600"), (0o640, "chmod 600"), (0o604, "chmod 600")])
def test_loose_file_refused(mode: int, fix: str, state_dir: Path) -> None:
    files = create_tls_files(state_dir, "s")
    files.key.chmod(mode)
    with pytest.raises(SessionError) as info:
        files.security()
    assert str(info.value) == (
        f"{files.key} has mode {mode:04o}: other users could read the session's keys; "
        f"fix with: {fix} {files.key}"
    )


def test_loose_directory_refused(state_dir: Path) -> None:
    create_tls_files(state_dir, "s")
    (state_dir / "tls").chmod(0o755)
    with pytest.raises(SessionError, match=r"tls has mode 0755.*fix with: chmod 700 .*tls$"):
        tls_files(state_dir).security()


def test_missing_file(state_dir: Path) -> None:
    with pytest.raises(SessionError, match="is missing; start the session again"):
        check_private(state_dir / "tls" / "session.key")
