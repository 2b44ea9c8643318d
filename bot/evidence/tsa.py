"""RFC 3161 time-stamping with rfc3161-client: asking a TSA, and verifying what it answered.

The message a token covers is a batch's 32-byte Merkle root (:mod:`bot.evidence.merkle`); the token's
message imprint is the SHA-256 of those 32 bytes, so ``openssl ts -verify -data <root file>`` checks it too.
Every token is verified against the configured roots (``evidence.tsa_ca_file``, default the system's CA
bundle) before it is kept: a token that does not verify is a TSA failure, not evidence.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from bot.redact import redact_url

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TIMEOUT_SECONDS = 30.0


class TsaError(Exception):
    """A TSA could not give a verified token (unreachable, refused, or a token that does not verify)."""


@dataclass(frozen=True)
class TokenInfo:
    """What a verified token says: when, by whom, under which serial number."""

    gen_time: datetime
    serial: int
    tsa: str  # subject of the signing certificate

    def to_dict(self) -> dict[str, object]:
        return {"gen_time": self.gen_time.isoformat().replace("+00:00", "Z"), "serial": str(self.serial), "tsa": self.tsa}


def default_ca_file() -> Path | None:
    """The system's CA bundle (what TLS clients on this machine trust)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_roots(ca_file: str | Path | None) -> list[x509.Certificate]:
    """The PEM certificates of ``ca_file`` (default: the system bundle). Raises TsaError if none."""
    path = Path(ca_file) if ca_file else default_ca_file()
    if path is None:
        raise TsaError("no CA file to verify timestamps against (set evidence.tsa_ca_file)")
    try:
        with warnings.catch_warnings():  # system bundles hold a few old roots with non-RFC 5280 serials
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TsaError(f"cannot read the TSA CA file {path}: {e}") from e
    if not certs:
        raise TsaError(f"{path} holds no PEM certificate")
    return certs


def verify_token(token: bytes, message: bytes, roots: Sequence[x509.Certificate], nonce: int | None = None) -> TokenInfo:
    """Check ``token`` (a DER TimeStampResp) covers ``message`` and chains to one of ``roots``."""
    try:
        response = decode_timestamp_response(token)
    except Exception as e:  # the library raises ValueError or its own parse errors
        raise TsaError(f"not a timestamp response: {e}") from e
    builder = VerifierBuilder(roots=list(roots), nonce=nonce)
    try:
        builder.build().verify_message(response, message)
    except VerificationError as e:
        raise TsaError(f"token does not verify: {e}") from e
    except ValueError as e:
        raise TsaError(f"token does not verify: {e}") from e
    signer = _signer_subject(response)
    gen_time = response.tst_info.gen_time
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=timezone.utc)
    return TokenInfo(gen_time=gen_time, serial=int(response.tst_info.serial_number), tsa=signer)


def token_message_imprint(token: bytes) -> bytes:
    """The digest the token was issued for (to say which hash a wrong token covers)."""
    return bytes(decode_timestamp_response(token).tst_info.message_imprint.message)


def _signer_subject(response: object) -> str:
    try:
        signer = next(iter(response.signed_data.signer_infos))  # type: ignore[attr-defined]
        for der in response.signed_data.certificates:  # type: ignore[attr-defined]
            cert = x509.load_der_x509_certificate(der)
            if cert.serial_number == signer.serial_number:
                return cert.subject.rfc4514_string()
    except Exception:  # a name is only for display
        pass
    return "unknown"


class TsaClient:
    """Asks the configured TSAs in order until one gives a token that verifies."""

    def __init__(self, urls: Sequence[str], ca_file: str | Path | None = None, timeout: float = TIMEOUT_SECONDS):
        self.urls = list(urls)
        self.ca_file = ca_file
        self.timeout = timeout
        self._roots: list[x509.Certificate] | None = None

    @property
    def roots(self) -> list[x509.Certificate]:
        if self._roots is None:
            self._roots = load_roots(self.ca_file)
        return self._roots

    def stamp(self, message: bytes) -> tuple[str, bytes, TokenInfo]:
        """``(tsa_url, token, info)`` for ``message``; TsaError naming every TSA's failure if none gave one."""
        if not self.urls:
            raise TsaError("no TSA configured (evidence.tsa_urls)")
        errors = []
        for url in self.urls:
            try:
                token, info = self._ask(url, message)
                return url, token, info
            except TsaError as e:  # a TSA URL may carry credentials: named by scheme and host only
                errors.append(f"{redact_url(url)}: {e}")
        raise TsaError("; ".join(errors))

    def _ask(self, url: str, message: bytes) -> tuple[bytes, TokenInfo]:
        request = TimestampRequestBuilder(data=message, hash_algorithm=HashAlgorithm.SHA256, nonce=True, cert_req=True).build()
        try:
            answer = requests.post(
                url, data=request.as_bytes(), headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE}, timeout=self.timeout
            )
        except requests.RequestException as e:
            raise TsaError(f"unreachable ({type(e).__name__})") from e
        if answer.status_code != 200:
            raise TsaError(f"HTTP {answer.status_code}")
        token = answer.content
        info = verify_token(token, message, self.roots, nonce=request.nonce)
        return token, info
