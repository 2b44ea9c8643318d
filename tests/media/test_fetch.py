from __future__ import annotations

import io
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
import requests
from PIL import Image
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bot.config import MediaConfig
from bot.errors import MediaError
from bot.media import fetch as fetch_module
from bot.net import client as client_module
from bot.media.fetch import FetchedMedia, MediaFetcher
from bot.net.policy import check_url, is_public_ip
from tests.media.conftest import TlsFiles
from tests.media.videos import make_video

MB = 1000**2


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, fmt)
    return buf.getvalue()


JPEG = _image("JPEG")
PNG = _image("PNG")
GIF = _image("GIF")
WEBP = _image("WEBP")
HTML = b"<!doctype html><html><head><title>x</title></head><body>" + b"hello " * 50 + b"</body></html>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _config(server: HTTPServer | None = None, **kwargs) -> MediaConfig:
    trusted = [f"127.0.0.1:{server.port}"] if server is not None else []
    kwargs.setdefault("trusted_hosts", trusted)
    kwargs.setdefault("timeout", 2)
    kwargs.setdefault("retries", 2)
    return MediaConfig(**kwargs)


def _fetcher(config: MediaConfig, **kwargs) -> tuple[MediaFetcher, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("sleep", sleeps)
    return MediaFetcher(config, **kwargs), sleeps


def _reason(fetcher: MediaFetcher, url: str) -> str:
    with pytest.raises(MediaError) as e:
        fetcher.fetch(url)
    return e.value.reason


def _response(body: bytes, declared: str | None, status: int = 200) -> Response:
    response = Response(body, status=status, content_type=declared or "x/x")
    if declared is None:
        del response.headers["Content-Type"]
    return response


def _count(server: HTTPServer, path: str) -> int:
    return sum(1 for request, _ in server.log if request.path == path)


# ----------------------------------------------------------------------------- address policy


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("fe80::1%eth0", False),
        ("fd12:3456::1", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("not an ip", False),
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
    ],
)
def test_is_public_ip(address: str, public: bool) -> None:
    assert is_public_ip(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "ftp://example.org/a.jpg",
        "file:///etc/passwd",
        "https:///a.jpg",
        "https://user:pw@example.org/a.jpg",
        "https://user@example.org/a.jpg",
        "https://example.org:99999/a.jpg",
        "https://example.org:0/a.jpg",
        "https://exa mple.org/a.jpg",
        "https://example.org/a b.jpg",
        "https://example.org/\r\nX-Injected: 1",
        "https://bad_host!.org/a.jpg",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(MediaError) as e:
        check_url(url)
    assert e.value.reason == "bad_url"


def test_check_url_https_and_trust() -> None:
    assert check_url("https://Example.ORG./a.jpg?x=1").url == "https://example.org/a.jpg?x=1"
    with pytest.raises(MediaError) as e:
        check_url("http://example.org/a.jpg")
    assert e.value.reason == "not_https"
    assert check_url("http://mirror.local/a.jpg", ["mirror.local"]).trusted
    assert check_url("http://mirror.local:8080/a.jpg", ["mirror.local:8080"]).trusted
    assert check_url("http://[::1]:8080/a.jpg", ["[::1]:8080"]).trusted
    with pytest.raises(MediaError):
        check_url("http://mirror.local:8081/a.jpg", ["mirror.local:8080"])
    assert check_url("https://bücher.example/a.jpg").host == "xn--bcher-kva.example"


def test_bad_url_is_refused_without_a_request() -> None:
    fetcher, sleeps = _fetcher(_config())
    assert _reason(fetcher, "https://u:p@example.org/a.jpg") == "bad_url"
    assert sleeps == []


# ----------------------------------------------------------------------------- success and trust


@pytest.mark.parametrize(
    ("body", "declared", "content_type", "ext", "kind"),
    [
        (JPEG, "image/jpeg", "image/jpeg", "jpg", "image"),
        (PNG, "image/jpeg", "image/png", "png", "image"),  # the bytes decide, not the header
        (GIF, "image/gif", "image/gif", "gif", "image"),
        (WEBP, "application/octet-stream", "image/webp", "webp", "image"),
        (make_video("mp4", "libx264", seconds=1), "video/mp4", "video/mp4", "mp4", "video"),
        (make_video("webm", "libvpx-vp9", seconds=1), "video/webm", "video/webm", "webm", "video"),
        (PNG, None, "image/png", "png", "image"),
    ],
    ids=["jpeg", "png-declared-jpeg", "gif", "webp-octet-stream", "mp4", "webm", "png-no-type"],
)
def test_fetch_trusted_host(
    server: HTTPServer, body: bytes, declared: str | None, content_type: str, ext: str, kind: str
) -> None:
    server.expect_request("/m").respond_with_response(_response(body, declared))
    fetcher, _ = _fetcher(_config(server))
    got = fetcher.fetch(server.url_for("/m"))
    assert isinstance(got, FetchedMedia)
    assert (got.data, got.content_type, got.ext, got.kind) == (body, content_type, ext, kind)
    assert got.url == got.final_url == server.url_for("/m")
    fetcher.close()


def test_same_url_refused_without_trust(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data(JPEG, content_type="image/jpeg")
    url = server.url_for("/a.jpg")
    assert _reason(_fetcher(_config(trusted_hosts=[]))[0], url) == "not_https"
    assert _reason(_fetcher(_config(trusted_hosts=["127.0.0.1:1"]))[0], url) == "not_https"  # other port
    assert _reason(_fetcher(_config(trusted_hosts=[]))[0], url.replace("http://", "https://")) == "private_address"
    assert _count(server, "/a.jpg") == 0


def test_trusted_bare_host_any_port(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data(JPEG, content_type="image/jpeg")
    fetcher, _ = _fetcher(_config(trusted_hosts=["localhost"]))
    assert fetcher.fetch(f"http://localhost:{server.port}/a.jpg").ext == "jpg"


@pytest.mark.parametrize("addresses", [["10.0.0.1"], ["8.8.8.8", "127.0.0.1"], ["::ffff:169.254.169.254"]])
def test_name_resolving_to_private_address_is_refused(addresses: list[str]) -> None:
    fetcher, sleeps = _fetcher(_config(), resolver=lambda host, port: addresses)
    assert _reason(fetcher, "https://cdn.example.org/a.jpg") == "private_address"
    assert sleeps == []


def test_dns_failure_is_unavailable_after_retries() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher, sleeps = _fetcher(_config(retries=1), resolver=resolver)
    assert _reason(fetcher, "https://nowhere.example/a.jpg") == "unavailable"
    assert len(sleeps) == 1


def test_connection_goes_to_the_checked_address(server: HTTPServer) -> None:
    """The name is never resolved by requests: the pinned address is used, with the name in Host."""
    host_header = f"media.invalid:{server.port}"
    server.expect_request("/a.jpg", headers={"Host": host_header}).respond_with_data(JPEG, content_type="image/jpeg")
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    fetcher, _ = _fetcher(_config(trusted_hosts=["media.invalid"]), resolver=resolver)
    got = fetcher.fetch(f"http://media.invalid:{server.port}/a.jpg")
    assert got.ext == "jpg" and resolved == ["media.invalid"]


def test_session_headers_are_used_but_not_credentials(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data(JPEG, content_type="image/jpeg")
    session = requests.Session()
    session.headers.update({"User-Agent": "test-agent/1", "Authorization": "Bearer secret"})
    fetcher, _ = _fetcher(_config(server), session=session)
    fetcher.fetch(server.url_for("/a.jpg"))
    request, _ = server.log[-1]
    assert request.headers["User-Agent"] == "test-agent/1"
    assert "Authorization" not in request.headers
    assert request.headers["Accept-Encoding"] == "identity"
    fetcher.close()
    assert session.get_adapter("https://x").__class__.__name__ == "HTTPAdapter"  # caller's session untouched


# ----------------------------------------------------------------------------- TLS


def test_https_with_pinned_address_sni_and_verification(
    tls_server: HTTPServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted https host: the address policy runs (here told 127.0.0.1 is public), the connection goes
    to the checked address, and the certificate is verified against the host name."""
    tls_server.expect_request("/a.png").respond_with_data(PNG, content_type="image/png")
    checked: list[str] = []

    def policy(address: str) -> bool:
        checked.append(address)
        return True

    monkeypatch.setattr(client_module, "is_public_ip", policy)
    fetcher, _ = _fetcher(
        _config(trusted_hosts=[]), resolver=lambda host, port: ["127.0.0.1"], verify=str(tls_files.cert)
    )
    got = fetcher.fetch(f"https://{tls_files.hostname}:{tls_server.port}/a.png")
    assert got.ext == "png" and checked == ["127.0.0.1"]


def test_certificate_for_another_name_is_refused(
    tls_server: HTTPServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls_server.expect_request("/a.png").respond_with_data(PNG, content_type="image/png")
    monkeypatch.setattr(client_module, "is_public_ip", lambda address: True)
    fetcher, sleeps = _fetcher(
        _config(trusted_hosts=[]), resolver=lambda host, port: ["127.0.0.1"], verify=str(tls_files.cert)
    )
    assert _reason(fetcher, f"https://other.test:{tls_server.port}/a.png") == "tls_error"
    assert sleeps == []


def test_untrusted_certificate_is_refused(tls_server: HTTPServer, tls_files: TlsFiles) -> None:
    tls_server.expect_request("/a.png").respond_with_data(PNG, content_type="image/png")
    fetcher, _ = _fetcher(_config(trusted_hosts=[tls_files.hostname]), resolver=lambda host, port: ["127.0.0.1"])
    assert _reason(fetcher, f"https://{tls_files.hostname}:{tls_server.port}/a.png") == "tls_error"


# ----------------------------------------------------------------------------- redirects


def test_redirect_followed_with_relative_location(server: HTTPServer) -> None:
    server.expect_request("/start").respond_with_response(Response(status=302, headers={"Location": "/media/a.jpg"}))
    server.expect_request("/media/a.jpg").respond_with_data(JPEG, content_type="image/jpeg")
    fetcher, _ = _fetcher(_config(server))
    got = fetcher.fetch(server.url_for("/start"))
    assert got.url == server.url_for("/start") and got.final_url == server.url_for("/media/a.jpg")


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://10.0.0.1/a.jpg", "private_address"),
        ("https://169.254.169.254/latest/meta-data/", "private_address"),
        ("https://[::1]/a.jpg", "private_address"),
        ("https://internal.example/a.jpg", "private_address"),  # a name resolving to a private address
        ("http://localhost:{port}/a.jpg", "not_https"),  # same server, but not under a trusted name
        ("https://u:p@example.org/a.jpg", "bad_url"),
        ("gopher://example.org/", "bad_url"),
    ],
)
def test_redirect_to_refused_target(server: HTTPServer, location: str, reason: str) -> None:
    server.expect_request("/start").respond_with_response(
        Response(status=302, headers={"Location": location.format(port=server.port)})
    )

    def resolver(host: str, port: int) -> list[str]:
        return {"internal.example": ["10.1.2.3"]}.get(host) or fetch_module.system_resolver(host, port)

    fetcher, sleeps = _fetcher(_config(server), resolver=resolver)
    assert _reason(fetcher, server.url_for("/start")) == reason
    assert sleeps == []


def test_redirect_limit(server: HTTPServer) -> None:
    for i in range(7):
        server.expect_request(f"/r{i}").respond_with_response(Response(status=301, headers={"Location": f"/r{i + 1}"}))
    server.expect_request("/r7").respond_with_data(JPEG, content_type="image/jpeg")
    fetcher, _ = _fetcher(_config(server))
    assert fetcher.fetch(server.url_for("/r2")).final_url == server.url_for("/r7")  # exactly 5 redirects
    assert _reason(fetcher, server.url_for("/r1")) == "too_many_redirects"  # 6


def test_redirect_loop(server: HTTPServer) -> None:
    server.expect_request("/loop").respond_with_response(Response(status=307, headers={"Location": "/loop"}))
    fetcher, _ = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/loop")) == "too_many_redirects"
    assert _count(server, "/loop") == 6


def test_redirect_without_location(server: HTTPServer) -> None:
    server.expect_request("/r").respond_with_response(Response(status=302))
    fetcher, _ = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/r")) == "http_302"


# ----------------------------------------------------------------------------- size


def _lazy_body(total: int, chunk: int = 64 * 1024) -> tuple[Iterator[bytes], list[int]]:
    sent = [0]

    def generate() -> Iterator[bytes]:
        block = b"\xff\xd8\xff\xe0" + b"\0" * (chunk - 4)
        while sent[0] < total:
            sent[0] += chunk
            yield block

    return generate(), sent


def test_huge_streamed_body_is_cut_at_the_cap(server: HTTPServer) -> None:
    body, sent = _lazy_body(100 * MB)
    server.expect_request("/huge").respond_with_handler(
        lambda request: Response(body, content_type="image/jpeg", direct_passthrough=True)
    )
    fetcher, sleeps = _fetcher(_config(server, max_bytes=1 * MB))
    tracemalloc.start()
    try:
        assert _reason(fetcher, server.url_for("/huge")) == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # tracemalloc is process-wide and also sees the server thread (a transient ~11 MB has been seen there);
    # reading the whole body would allocate well over 100 MB
    assert peak < 32 * MB
    assert sleeps == []
    assert sent[0] < 20 * MB  # the download was aborted, not read to the end


def test_huge_content_length_is_refused_before_reading(server: HTTPServer) -> None:
    body, _ = _lazy_body(100 * MB)
    server.expect_request("/huge").respond_with_handler(
        lambda request: Response(
            body, content_type="image/jpeg", direct_passthrough=True, headers={"Content-Length": str(100 * MB)}
        )
    )
    fetcher, _ = _fetcher(_config(server, max_bytes=1 * MB))
    started = time.monotonic()
    with pytest.raises(MediaError) as e:
        fetcher.fetch(server.url_for("/huge"))
    assert e.value.reason == "too_large" and "100000000 bytes" in str(e.value)
    assert time.monotonic() - started < 5


def test_body_at_the_cap_is_accepted(server: HTTPServer) -> None:
    server.expect_request("/a.png").respond_with_data(PNG, content_type="image/png")
    fetcher, _ = _fetcher(_config(server, max_bytes=len(PNG)))
    assert fetcher.fetch(server.url_for("/a.png")).data == PNG
    fetcher, _ = _fetcher(_config(server, max_bytes=len(PNG) - 1))
    assert _reason(fetcher, server.url_for("/a.png")) == "too_large"


# ----------------------------------------------------------------------------- type


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (HTML, "image/jpeg"),
        (HTML, "text/html; charset=utf-8"),
        (SVG, "image/svg+xml"),
        (SVG, "image/jpeg"),
        (SVG, None),
        (b'{"error": "not found"}', "application/json"),
        (b"", "image/jpeg"),
        (b"\xff\xd8", "image/jpeg"),  # too short to be a JPEG
        (b"%PDF-1.7\n" + b"x" * 100, "application/octet-stream"),
        (JPEG, "text/plain"),  # declared as text: refused before reading even if the bytes are an image
    ],
    ids=["html-as-jpeg", "html", "svg", "svg-as-jpeg", "svg-no-type", "json", "empty", "short", "pdf", "jpeg-as-text"],
)
def test_not_media(server: HTTPServer, body: bytes, declared: str | None) -> None:
    server.expect_request("/m").respond_with_response(_response(body, declared))
    fetcher, sleeps = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/m")) == "not_media"
    assert sleeps == []


def test_html_is_refused_without_reading_it_all(server: HTTPServer) -> None:
    body, sent = _lazy_body(100 * MB)
    html_first = (b"<html>" + b" " * (64 * 1024 - 6) if i == 0 else chunk for i, chunk in enumerate(body))
    server.expect_request("/page").respond_with_handler(
        lambda request: Response(html_first, content_type="image/jpeg", direct_passthrough=True)
    )
    fetcher, _ = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/page")) == "not_media"
    assert sent[0] < 20 * MB


# ----------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "a" * 70_000}, [(f"X-Header-{i}", "v") for i in range(150)]],
    ids=["long-header-line", "too-many-headers"],
)
def test_oversized_header(server: HTTPServer, headers) -> None:
    server.expect_request("/a.jpg").respond_with_data(JPEG, content_type="image/jpeg", headers=headers)
    fetcher, sleeps = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/a.jpg")) == "header_too_large"
    assert sleeps == [] and _count(server, "/a.jpg") == 1


# ----------------------------------------------------------------------------- retries


def _sequence(*responses: Response):
    calls = iter(responses)
    last = responses[-1]

    def handler(request: Request) -> Response:
        return next(calls, last)

    return handler


def test_500_then_200_succeeds_after_retry(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_handler(
        _sequence(Response("oops", status=500), Response(JPEG, content_type="image/jpeg"))
    )
    fetcher, sleeps = _fetcher(_config(server, retries=3))
    assert fetcher.fetch(server.url_for("/a.jpg")).data == JPEG
    assert sleeps == [0.5] and _count(server, "/a.jpg") == 2


def test_5xx_exhausts_retries_with_exponential_backoff(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data("down", status=503)
    fetcher, sleeps = _fetcher(_config(server, retries=3))
    with pytest.raises(MediaError) as e:
        fetcher.fetch(server.url_for("/a.jpg"))
    assert e.value.reason == "unavailable" and "4 attempts" in str(e.value)
    assert sleeps == [0.5, 1.0, 2.0] and _count(server, "/a.jpg") == 4


def test_retries_zero_means_one_attempt(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data("down", status=502)
    fetcher, sleeps = _fetcher(_config(server, retries=0))
    assert _reason(fetcher, server.url_for("/a.jpg")) == "unavailable"
    assert sleeps == [] and _count(server, "/a.jpg") == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_4xx_not_retried(server: HTTPServer, status: int) -> None:
    server.expect_request("/a.jpg").respond_with_data("no", status=status)
    fetcher, sleeps = _fetcher(_config(server, retries=3))
    assert _reason(fetcher, server.url_for("/a.jpg")) == f"http_{status}"
    assert sleeps == [] and _count(server, "/a.jpg") == 1


def test_429_is_retried(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data("slow down", status=429)
    fetcher, sleeps = _fetcher(_config(server, retries=1))
    assert _reason(fetcher, server.url_for("/a.jpg")) == "http_429"
    assert len(sleeps) == 1 and _count(server, "/a.jpg") == 2


def test_unexpected_success_status(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data("", status=204)
    fetcher, _ = _fetcher(_config(server))
    assert _reason(fetcher, server.url_for("/a.jpg")) == "http_204"


def test_timeout_is_retried_then_reported(server: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(JPEG, content_type="image/jpeg")

    server.expect_request("/slow").respond_with_handler(slow)
    fetcher, sleeps = _fetcher(_config(server, timeout=0.2, retries=1))
    started = time.monotonic()
    assert _reason(fetcher, server.url_for("/slow")) == "timeout"
    assert time.monotonic() - started < 1.5
    assert len(sleeps) == 1  # (the server logs a request only once its slow handler returns)


def test_slow_drip_body_hits_the_total_deadline(server: HTTPServer) -> None:
    def drip() -> Iterator[bytes]:
        yield JPEG[:100]
        for _ in range(100):
            time.sleep(0.05)
            yield b"\0"

    server.expect_request("/drip").respond_with_handler(
        lambda request: Response(drip(), content_type="image/jpeg", direct_passthrough=True)
    )
    fetcher, _ = _fetcher(_config(server, timeout=1, retries=0), total_timeout=0.5)
    started = time.monotonic()
    assert _reason(fetcher, server.url_for("/drip")) == "timeout"
    assert time.monotonic() - started < 2


class DripServer:
    """A raw TCP server that answers every connection with ``head`` and then one byte of ``drip`` at a time."""

    def __init__(self, head: bytes, drip: bytes, interval: float = 0.05):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.head, self.drip, self.interval = head, drip, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                for byte in self.drip:
                    if self.stopped.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.mark.parametrize(
    ("head", "drip"),
    [
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 10_000),  # headers never end
        (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG[:100], b"\0" * 10_000),  # body
        (b"", b"HTTP/1.1 200 OK\r\n" * 1000),  # the status line itself
    ],
    ids=["headers", "body", "status-line"],
)
def test_slow_drip_is_cut_at_the_total_deadline(head: bytes, drip: bytes) -> None:
    server = DripServer(head, drip)
    try:
        fetcher, sleeps = _fetcher(_config(trusted_hosts=["127.0.0.1"], timeout=1, retries=1), total_timeout=0.5)
        started = time.monotonic()
        assert _reason(fetcher, f"http://127.0.0.1:{server.port}/a.jpg") == "timeout"
        assert time.monotonic() - started < 3  # two attempts of 0.5 s
        assert len(sleeps) == 1
    finally:
        server.close()


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fetcher, sleeps = _fetcher(_config(trusted_hosts=["127.0.0.1"], retries=2))
    assert _reason(fetcher, f"http://127.0.0.1:{port}/a.jpg") == "unavailable"
    assert sleeps == [0.5, 1.0]


def test_connection_reset_mid_body_is_retried(server: HTTPServer) -> None:
    """A body shorter than its Content-Length (connection dropped) is retried, then succeeds."""
    calls = []

    def handler(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return Response(iter([JPEG[:100]]), content_type="image/jpeg", direct_passthrough=True,
                            headers={"Content-Length": str(len(JPEG))})
        return Response(JPEG, content_type="image/jpeg")

    server.expect_request("/a.jpg").respond_with_handler(handler)
    fetcher, sleeps = _fetcher(_config(server))
    assert fetcher.fetch(server.url_for("/a.jpg")).data == JPEG
    assert len(sleeps) == 1


def test_error_messages_hide_query_strings(server: HTTPServer) -> None:
    server.expect_request("/a.jpg").respond_with_data("no", status=403)
    fetcher, _ = _fetcher(_config(server))
    with pytest.raises(MediaError) as e:
        fetcher.fetch(server.url_for("/a.jpg") + "?token=s3cr3t")
    assert "s3cr3t" not in str(e.value)
