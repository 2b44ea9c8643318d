"""A local RFC 3161 time-stamping authority for tests: a test CA and a TSA certificate (extendedKeyUsage
timeStamping, critical) made with ``cryptography``, and an HTTP endpoint (pytest-httpserver) that answers
timestamp queries with ``openssl ts -reply``, as a real TSA would. ``fail`` makes it answer 503 (an outage).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.wrappers import Request, Response


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "afterimage tests"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_pki(folder: Path, cn: str = "Test TSA") -> dict[str, Path]:
    """CA (ca.pem) and TSA certificate/key (tsa.pem, tsa.key) and an openssl config (tsa.cnf) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name(f"{cn} Root CA")).issuer_name(_name(f"{cn} Root CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
        .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "tsa.pem", "key": folder / "tsa.key", "cnf": folder / "tsa.cnf",
             "serial": folder / "serial"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key"], tsa_key)
    paths["serial"].write_text("01\n")
    # no "certs =" line: openssl writes a SignedData certificate SET out of DER order when it holds more than
    # the signer, which strict parsers (rfc3161-client) refuse; the signer alone chains to ca.pem
    paths["cnf"].write_text(
        "[ tsa ]\ndefault_tsa = tsa_config\n\n[ tsa_config ]\n"
        f"serial = {paths['serial']}\ncrypto_device = builtin\nsigner_cert = {paths['cert']}\n"
        f"signer_key = {paths['key']}\nsigner_digest = sha256\n"
        "default_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\ndigests = sha256, sha384, sha512\n"
        "accuracy = secs:1\nordering = yes\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )
    return paths


@dataclass
class LocalTsa:
    """Serves ``openssl ts -reply`` answers on ``url``; counts requests; ``fail`` simulates an outage."""

    pki: dict[str, Path]
    url: str = ""
    fail: bool = False
    requests: int = 0
    refused: int = 0
    tokens: list[bytes] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        self.requests += 1
        if self.fail:
            self.refused += 1
            return Response("down for maintenance", status=503)
        with tempfile.TemporaryDirectory() as tmp:
            query = Path(tmp) / "q.tsq"
            reply = Path(tmp) / "r.tsr"
            query.write_bytes(request.get_data())
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.pki["cnf"]), "-queryfile", str(query), "-out", str(reply)],
                capture_output=True, text=True, check=False,
            )
            if done.returncode != 0:
                return Response(done.stderr, status=400)
            token = reply.read_bytes()
        self.tokens.append(token)
        return Response(token, content_type="application/timestamp-reply")


def start_tsa(httpserver, folder: Path, path: str = "/tsa", cn: str = "Test TSA") -> LocalTsa:  # type: ignore[no-untyped-def]
    tsa = LocalTsa(make_pki(folder, cn))
    httpserver.expect_request(path, method="POST").respond_with_handler(tsa.handle)
    tsa.url = httpserver.url_for(path)
    return tsa
