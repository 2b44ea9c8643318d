"""HTTP(S) servers for the fetch tests: threaded pytest-httpserver instances on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer


def _cleared(srv: HTTPServer) -> Iterator[HTTPServer]:
    """A session-wide server with no handlers or logs left from another test."""
    srv.clear()
    yield srv
    srv.clear()


def _running(srv: HTTPServer) -> Iterator[HTTPServer]:
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _http_server() -> Iterator[HTTPServer]:
    yield from _running(HTTPServer(host="127.0.0.1", port=0, threaded=True))


@pytest.fixture
def server(_http_server: HTTPServer) -> Iterator[HTTPServer]:
    """A plain-http server on 127.0.0.1, shared by the session (stopping one takes 0.5 s), cleared per test."""
    yield from _cleared(_http_server)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # also the CA bundle clients verify against (self-signed)
    key: Path
    hostname: str


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    hostname = "media.test"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsFiles(cert_path, key_path, hostname)


@pytest.fixture(scope="session")
def _tls_server(tls_files: TlsFiles) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    yield from _running(HTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True))


@pytest.fixture
def tls_server(_tls_server: HTTPServer) -> Iterator[HTTPServer]:
    """An https server on 127.0.0.1 with a self-signed certificate for ``media.test`` (and 127.0.0.1)."""
    yield from _cleared(_tls_server)
