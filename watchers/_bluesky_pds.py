"""Asking the author's own PDS whether a post the Bluesky AppView no longer serves still exists.

The AppView hides both deleted posts and posts taken down by moderation; only the author's repository on
their PDS (Personal Data Server) tells the two apart. The author's DID is resolved to a DID document
(``did:plc`` at the PLC directory, ``did:web`` at ``https://<host>/.well-known/did.json``; http for
``localhost``, as atproto's own resolver does), its ``#atproto_pds`` service names the PDS, and
``com.atproto.repo.getRecord`` is asked for the post record:

- 200 with a record -> ``withheld``: the post exists, the AppView hides it (moderation), it was not deleted;
- 400 ``RecordNotFound`` -> ``deleted``, confirmed at the source;
- 400 ``RepoTakendown`` / ``RepoSuspended`` -> ``author_suspended``; ``RepoDeactivated`` / ``RepoNotFound`` ->
  ``author_deleted`` (the repository-level forms of the profile states the AppView reports);
- anything else (DID document or PDS unreachable, slow, too large, malformed, refused by the address policy)
  -> ``deleted`` as the AppView answer implied, with the reason it was not confirmed in the status detail: a
  PDS outage must not stop deletion detection, and the detail lets a person weigh the answer.

DID documents and PDS endpoints are chosen by third parties (anyone can publish a DID document naming any
URL), so every request goes through :class:`bot.net.client.GuardedClient`: https on public addresses only
unless the host is trusted, re-checked on redirects, pinned address, total deadline; answers are capped at
:data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote, urlencode

from bot.errors import MediaError
from bot.net.client import CHUNK, Answer, GuardedClient
from bot.models import PostStatus, StatusKind

#: a DID document or a getRecord answer is a few KB; anything much larger is not one
MAX_JSON_BYTES = 256 * 1024
WITHHELD_DETAIL = "hidden by the Bluesky AppView (moderation); the record still exists on the author's PDS"
CONFIRMED_DETAIL = "confirmed at the author's PDS"
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "afterimage"}
_PLC = re.compile(r"^did:plc:[a-z0-9]+$")
#: hostname-level did:web only (atproto does not use path-based did:web); ``%3A`` encodes a port
_WEB = re.compile(r"^did:web:([A-Za-z0-9.-]+(?:%3[Aa][0-9]{1,5})?)$")
#: repository-level XRPC errors of getRecord and the account state each one means
_REPO_STATES = {
    "RepoTakendown": (StatusKind.AUTHOR_SUSPENDED, "RepoTakendown at the author's PDS"),
    "RepoSuspended": (StatusKind.AUTHOR_SUSPENDED, "RepoSuspended at the author's PDS"),
    "RepoDeactivated": (StatusKind.AUTHOR_DELETED, "RepoDeactivated at the author's PDS (reversible)"),
    "RepoNotFound": (StatusKind.AUTHOR_DELETED, "RepoNotFound at the author's PDS"),
}


class Unconfirmed(Exception):
    """The PDS could not give a usable answer; the message says why (shown in the status detail)."""


class Unreachable(Unconfirmed):
    """No HTTP answer at all (timeout, connection failure, address policy refusal)."""


def did_document_url(did: str, plc_directory: str) -> str:
    """Where the DID document of ``did`` is published; raises :class:`Unconfirmed` for other DID methods."""
    if _PLC.match(did):
        return f"{plc_directory}/{quote(did, safe=':')}"
    m = _WEB.match(did)
    if m:
        host = unquote(m.group(1)).lower()
        scheme = "http" if host.split(":")[0] == "localhost" else "https"
        return f"{scheme}://{host}/.well-known/did.json"
    raise Unconfirmed(f"unsupported DID {did!r}")


def pds_endpoint(document: Any, did: str) -> str:
    """The ``serviceEndpoint`` of the ``#atproto_pds`` service of a DID document (raises :class:`Unconfirmed`)."""
    if not isinstance(document, dict) or document.get("id") != did:
        raise Unconfirmed("malformed DID document (not an object with this DID as id)")
    services = document.get("service")
    for service in services if isinstance(services, list) else []:
        if (
            isinstance(service, dict)
            and isinstance(service.get("id"), str)
            and service["id"].endswith("#atproto_pds")
            and service.get("type") == "AtprotoPersonalDataServer"
        ):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint:
                return endpoint.rstrip("/")
            raise Unconfirmed("the DID document's PDS service has no usable serviceEndpoint")
    raise Unconfirmed("the DID document names no PDS (#atproto_pds service)")


def record_status(status: int, body: Any) -> PostStatus:
    """The post's status from a getRecord answer (raises :class:`Unconfirmed` when it tells nothing)."""
    if status == 200:
        if isinstance(body, dict) and isinstance(body.get("value"), dict):
            return PostStatus.of(StatusKind.WITHHELD, WITHHELD_DETAIL)
        raise Unconfirmed("malformed getRecord answer (no record value)")
    error = body.get("error") if isinstance(body, dict) else None
    if status == 400 and error == "RecordNotFound":
        return PostStatus.of(StatusKind.DELETED, CONFIRMED_DETAIL)
    if status == 400 and error in _REPO_STATES:
        kind, detail = _REPO_STATES[error]
        return PostStatus.of(kind, detail)
    raise Unconfirmed(f"getRecord answered HTTP {status}" + (f" {error}" if isinstance(error, str) else ""))


class PdsChecker:
    """Resolves authors to their PDS and asks it for post records, under the third-party URL policy.

    ``lookup_record`` is given a per-run cache of DID resolutions, so several missing posts of one author
    cost one DID document request; a PDS that gave no answer at all is remembered there too, so a slow
    server holds a run up once, not once per missing post."""

    def __init__(self, guarded: GuardedClient, plc_directory: str):
        self._guarded = guarded
        self._plc_directory = plc_directory

    def lookup_record(self, did: str, rkey: str, endpoints: dict[str, str | Unconfirmed]) -> PostStatus:
        """The status the author's PDS gives the post ``at://did/app.bsky.feed.post/rkey``.

        Never raises: when the PDS cannot confirm, the answer is ``deleted`` (what the AppView implied)
        with the reason in its detail."""
        try:
            if did not in endpoints:
                endpoints[did] = self._resolve(did)
            endpoint = endpoints[did]
            if isinstance(endpoint, Unconfirmed):
                raise endpoint
            query = urlencode({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey})
            try:
                return record_status(*self._get_json(f"{endpoint}/xrpc/com.atproto.repo.getRecord?{query}"))
            except Unreachable as e:
                endpoints[did] = e
                raise
        except Unconfirmed as e:
            return PostStatus.of(StatusKind.DELETED, f"not confirmed at the author's PDS: {e}")

    def _resolve(self, did: str) -> str | Unconfirmed:
        """The PDS endpoint of ``did``, or why it could not be found (cached as such by the caller)."""
        try:
            status, document = self._get_json(did_document_url(did, self._plc_directory))
            if status != 200:
                raise Unconfirmed(f"DID document answered HTTP {status}")
            return pds_endpoint(document, did)
        except Unconfirmed as e:
            return Unconfirmed(f"cannot resolve {did}: {e}")

    def _get_json(self, url: str) -> tuple[int, Any]:
        """HTTP status and JSON body (None if the body is not JSON) of a GET under the policy."""
        try:
            with self._guarded.open(url, headers=_HEADERS) as answer:
                status = answer.response.status_code
                body = _read_capped(answer, MAX_JSON_BYTES)
        except MediaError as e:
            raise Unreachable(f"{e.reason}: {e}") from None
        try:
            return status, json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return status, None


def _read_capped(answer: Answer, limit: int) -> bytes:
    """The body of ``answer``, refused (Unconfirmed) past ``limit`` bytes.

    The exchange's deadline needs no check here: the watchdog cuts the socket, the read ends, and
    :meth:`GuardedClient.open` raises a timeout on exit instead of returning a short body."""
    declared = answer.response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Unconfirmed(f"answer of {declared} bytes is over the limit of {limit}")
    data = bytearray()
    while chunk := answer.response.raw.read1(CHUNK, decode_content=True):
        data += chunk
        if len(data) > limit:
            raise Unconfirmed(f"answer is over the limit of {limit} bytes")
    return bytes(data)
