"""Security: secrets never in output, the media address policy, Redis password and TLS, the HTML export.

Every output here goes to the suite's secret scanner (``conftest.CAPTURED``) too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.config import MediaConfig, parse_config
from bot.daemon import Daemon
from bot.demo.fakes import Fault
from bot.errors import MediaError, StoreError
from bot.media.fetch import MediaFetcher
from bot.models import Post
from bot.store import open_store

from .conftest import (
    REDIS_PASSWORD,
    ROOT,
    SECRETS,
    X_TOKEN,
    RedisServer,
    add_post,
    capture,
    free_port,
    leaked,
    picture,
)
from .test_platform_faults import Clock
from bot.store.deletion_log import EventFilter
from bot.store.posts import AccountPoll


def test_secrets_are_test_specific() -> None:
    assert len(set(SECRETS)) == 3 and all("secret" in s for s in SECRETS)


# ------------------------------------------------------------------------------------------- media policy
def test_media_fetch_refuses_http_and_private_addresses_unless_trusted(world) -> None:
    w, server = world
    w.media["/media/ok.jpg"] = ("image/jpeg", picture(21))
    untrusted = MediaFetcher(MediaConfig(retries=0, timeout=3))
    cases = {
        f"http://{server.host}/media/ok.jpg": "not_https",
        f"https://{server.host}/media/ok.jpg": "private_address",
        "https://localhost/media/ok.jpg": "private_address",
        "https://[::1]/media/ok.jpg": "private_address",
        "https://169.254.169.254/latest/meta-data/": "private_address",
        "https://10.0.0.8/x.jpg": "private_address",
        "file:///etc/passwd": "bad_url",
    }
    for url, reason in cases.items():
        with pytest.raises(MediaError) as e:
            untrusted.fetch(url)
        assert e.value.reason == reason, (url, e.value)

    trusted = MediaFetcher(MediaConfig(trusted_hosts=[server.host], retries=0, timeout=3))
    assert trusted.fetch(f"http://{server.host}/media/ok.jpg").data == picture(21)
    # a trusted host redirecting to an untrusted loopback port or a private address: refused at the hop
    other = f"127.0.0.1:{free_port()}"
    for location, reason in ((f"http://{other}/x.jpg", "not_https"), (f"https://{other}/x.jpg", "private_address"),
                             ("https://192.168.1.1/x.jpg", "private_address")):
        w.inject("/media/redirect.jpg", Fault("status", 302, {"Location": location}))
        with pytest.raises(MediaError) as e:
            trusted.fetch(f"http://{server.host}/media/redirect.jpg")
        assert e.value.reason == reason, (location, e.value)


# ------------------------------------------------------------------------------------------- redis auth, TLS
def _certs(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), as the media tests make theirs."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, cert_path, key_path


def test_redis_password_and_tls(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ca, cert, key = _certs(tmp_path / "tls")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        base = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
        deadline = time.monotonic() + 10
        while True:
            try:
                store = open_store(base)
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        now = datetime.now(timezone.utc)
        post = Post(platform="x", account="a", post_id="1", url="https://x.com/a/status/1", text="over TLS",
                    created_at=now, raw={"id": "1"})
        store.record_poll(AccountPoll("x", "a", [post], "1", [], at=now))
        assert store.get_post("x", "1").post.text == "over TLS"
        assert REDIS_PASSWORD not in store.url and REDIS_PASSWORD not in repr(store)
        store.close()

        errors = []
        for url in (
            f"rediss://:wrong-{REDIS_PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}",  # bad password
            f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0",  # plain text to a TLS port
            f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required",  # unknown CA: refused
        ):
            with pytest.raises(StoreError) as e:
                open_store(url).close()
            errors.append(str(e.value))
        text = capture("redis tls errors", "\n".join(errors) + caplog.text)
        assert not leaked(text), text
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------------------------------- CLI output
def test_cli_errors_and_echoed_tokens_leak_no_secret(tmp_path: Path, world) -> None:
    """A store that refuses the password, and an API that echoes the bearer token in its error: the output
    of ``afterimage run`` and ``afterimage poll --once`` never shows either secret."""
    w, server = world
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        wrong = f"redis://:{REDIS_PASSWORD}x@127.0.0.1:{redis.port}/0"
        cfg = tmp_path / "cfg.yaml"
        from .conftest import daemon_env, write_config

        write_config(cfg, server, wrong, tmp_path / "data")
        env = daemon_env(wrong)
        run = subprocess.run([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        out = capture("run with a refused password", run.stdout + run.stderr)
        assert run.returncode == 2 and "cannot open the state store" in out, out
        assert not leaked(out), out

        good = redis.url
        write_config(cfg, server, good, tmp_path / "data")
        add_post(w, "1864000000000000001", picture(31))
        echo = {"title": "Unauthorized", "detail": f"token {X_TOKEN} is not valid", "type": "about:blank", "status": 401}
        w.inject("/2/users/by/username/", Fault("status", 401, {}, echo, sticky=True))
        poll = subprocess.run([sys.executable, "-m", "bot.cli", "poll", "--once", "-c", str(cfg)], cwd=ROOT,
                              env=daemon_env(good), capture_output=True, text=True, timeout=60)  # fmt: skip
        out = capture("poll --once with an echoed token", poll.stdout + poll.stderr)
        assert poll.returncode == 1 and "error" in out, out
        assert not leaked(out), out
    finally:
        redis.stop()


# ------------------------------------------------------------------------------------------- HTML export
def test_html_export_renders_script_in_a_post_as_text(tmp_path: Path, world, monkeypatch) -> None:
    w, server = world
    hostile = "<script>alert('pwned')</script><img src=x onerror=alert(2)> \"quoted\" & more"
    add_post(w, "1865000000000000001", picture(41), text=hostile, minutes_ago=0.05)
    cfg_text = f"""
data_dir: {tmp_path / "data"}
store: sqlite:///{tmp_path / "state.db"}
watchers:
  x:
    bearer_token: ${{FAULTS_X_TOKEN}}
    api_base: {server.base_url}
    accounts: [{w.username}]
    interval: 60s
    jitter: 0s
    recheck:
      schedule: [10s, 20s, 40s]
      confirm_after: 5s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
"""
    clock = Clock()
    daemon = Daemon(parse_config(cfg_text, {"FAULTS_X_TOKEN": X_TOKEN}), store=open_store(f"sqlite:///{tmp_path / 'state.db'}"),
                    clock=clock)
    try:
        assert daemon.poll_account("x", w.username).new == 1
        w.x_posts[0].deleted = True
        for _ in range(3):  # deleted, then confirmed
            clock.advance(30)
            daemon.run_rechecks("x")
        assert daemon.store.list_events(EventFilter(kinds=["deleted"])), "the deletion was not confirmed"
        daemon.deliver_alerts()
    finally:
        daemon.stop(timeout=2)
    (tmp_path / "cfg.yaml").write_text(cfg_text)
    out = tmp_path / "log.html"
    env = {**os.environ, "FAULTS_X_TOKEN": X_TOKEN}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "deletions", "export", "--format", "html", "-o", str(out), "-c", str(tmp_path / "cfg.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = capture("html export", out.read_text())
    capture("export cli output", result.stdout + result.stderr)
    capture("deletion alert payloads", str(w.received_alerts))
    assert "&lt;script&gt;alert(" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "<script" not in html.lower().replace("&lt;script", "")  # no script element at all
    assert not leaked(html)
    assert w.received_alerts and "<script>" not in str(w.received_alerts[-1].get("message", "")).replace("\\<script\\>", "")
