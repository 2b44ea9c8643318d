"""Config: defaults with no file, pointed errors with key path and line, secrets from the environment only."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import WatcherConfig, load_config, parse_config, parse_duration
from bot.errors import ConfigError
from bot.redact import install_log_redaction

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = {
    "X_BEARER_TOKEN": "AAAA-x-bearer-secret-0001",
    "FB_PAGE_TOKEN": "EAAB-fb-page-secret-0002",
    "SLACK_WEBHOOK_URL": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
}


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ=environ or {}, source="cfg.yaml")
    return info.value.problems


def test_defaults_without_a_file_use_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    monkeypatch.delenv("AFTERIMAGE_DATA", raising=False)
    cfg = load_config(None)
    assert cfg.data_dir == Path("./afterimage-data")
    assert cfg.store_url == "sqlite:///afterimage-data/state.db"
    assert cfg.archive_path == Path("afterimage-data/archive")
    assert cfg.watchers.enabled() == {}


def test_data_folder_from_environment_and_file_override(tmp_path):
    cfg = parse_config("", environ={"AFTERIMAGE_DATA": str(tmp_path / "d")})
    assert cfg.store_url == f"sqlite:///{tmp_path}/d/state.db"
    cfg = parse_config(f"data_dir: {tmp_path}/file\n", environ={"AFTERIMAGE_DATA": str(tmp_path / "d")})
    assert cfg.archive_path == tmp_path / "file" / "archive"


def test_example_config_is_valid_and_documents_every_section():
    text = (ROOT / "config.example.yaml").read_text()
    cfg = parse_config(text, environ=EXAMPLE_ENV)
    assert set(cfg.watchers.enabled()) == {"x", "facebook"}
    assert cfg.watchers.x.bearer_token.get_secret_value() == EXAMPLE_ENV["X_BEARER_TOKEN"]
    assert cfg.watchers.x.interval == 300 and cfg.watchers.x.recheck.horizon == 30 * 86400
    assert cfg.health.listen == "127.0.0.1:9108"
    for key in ("store:", "redis://", "rediss://", "api_base", "interval", "targets", "trusted_hosts", "pdq_match"):
        assert key in text


def test_bluesky_plc_directory_and_trusted_hosts():
    cfg = parse_config("watchers:\n  bluesky:\n    accounts: [a.example]\n")
    assert cfg.watchers.bluesky.plc_directory == "https://plc.directory"
    assert cfg.watchers.bluesky.trusted_hosts == []
    text = "watchers:\n  bluesky:\n    plc_directory: https://plc.internal/\n    trusted_hosts: [pds.internal:2583]\n"
    cfg = parse_config(text)
    assert cfg.watchers.bluesky.plc_directory == "https://plc.internal"
    assert cfg.watchers.bluesky.trusted_hosts == ["pds.internal:2583"]
    assert problems_of("watchers:\n  bluesky:\n    plc_directory: plc.directory\n", {}) == [
        'cfg.yaml: line 3: watchers.bluesky.plc_directory: "plc.directory" is not a URL with scheme and host '
        "(e.g. https://plc.directory)"
    ]


def test_bad_duration_names_key_path_and_line():
    text = "watchers:\n  x:\n    bearer_token: ${TOKEN}\n    interval: 5 minutes\n"
    assert problems_of(text, {"TOKEN": "secret-token-1"}) == [
        'cfg.yaml: line 4: watchers.x.interval: "5 minutes" is not a duration (use 30s, 5m, 1h)'
    ]


def test_every_problem_is_reported_at_once():
    text = (
        "log_level: loud\n"
        "watchers:\n"
        "  x:\n"
        "    bearer_token: ${MISSING_X_TOKEN}\n"
        "    intervall: 5m\n"
        "    api_base: api.twitter.com\n"
        "media:\n"
        "  max_bytes: lots\n"
    )
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert "line 4: watchers.x.bearer_token: environment variable MISSING_X_TOKEN is not set" in joined
    assert "line 5: watchers.x.intervall: unknown key" in joined
    assert 'line 6: watchers.x.api_base: "api.twitter.com" is not a URL' in joined
    assert 'line 8: media.max_bytes: "lots" is not a size' in joined
    assert "line 1: log_level:" in joined
    assert len(problems) == 5


def test_park_after_defaults_to_5_and_must_be_at_least_1():
    assert parse_config("", environ={}).alerts.park_after == 5
    assert parse_config("alerts:\n  park_after: 3\n", environ={}).alerts.park_after == 3
    (problem,) = problems_of("alerts:\n  park_after: 0\n")
    assert problem.startswith("cfg.yaml: line 2: alerts.park_after:") and "1" in problem


def test_secret_written_in_the_file_is_refused():
    problems = problems_of("watchers:\n  facebook:\n    access_token: EAABliteral\n")
    assert problems == [
        "cfg.yaml: line 3: watchers.facebook.access_token: write secrets as ${ENV_NAME} references, not in the file"
    ]


def test_missing_variable_in_a_disabled_watcher_is_not_an_error():
    cfg = parse_config("watchers:\n  mastodon:\n    enabled: false\n    access_token: ${NOPE}\n", environ={})
    assert cfg.watchers.enabled() == {}


def test_invalid_yaml_reports_the_line():
    problems = problems_of("watchers:\n  x: [unclosed\n")
    assert len(problems) == 1 and "not valid YAML" in problems[0] and "line" in problems[0]


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_config_check_command_exit_codes(tmp_path, monkeypatch):
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", "-c", str(ROOT / "config.example.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output and "watchers.x: 1 account(s)" in ok.output
    assert EXAMPLE_ENV["SLACK_WEBHOOK_URL"] not in ok.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("watchers:\n  x:\n    bearer_token: ${X_BEARER_TOKEN}\n    interval: 5 minutes\n")
    result = runner.invoke(main, ["config", "check", "-c", str(bad)])
    assert result.exit_code == 1
    assert 'line 4: watchers.x.interval: "5 minutes" is not a duration (use 30s, 5m, 1h)' in result.output
    assert "1 problem(s) found." in result.output


def test_secrets_never_reach_log_output_or_reprs():
    text = (ROOT / "config.example.yaml").read_text().replace("# store: sqlite", "store: redis://:${REDIS_PW}@h:6379/0 #")
    cfg = parse_config(text, environ={**EXAMPLE_ENV, "REDIS_PW": "redis-pass-0004"})
    secrets = [*EXAMPLE_ENV.values(), "redis-pass-0004"]

    stream = io.StringIO()
    logger = logging.getLogger("afterimage.test.secrets")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    install_log_redaction(logger)
    try:
        token = cfg.watchers.x.bearer_token.get_secret_value()
        logger.warning("GET https://api.twitter.com/2/users?token=%s failed", token)
        logger.error("store %s unreachable", cfg.store_url)
        try:
            raise RuntimeError(f"Authorization: Bearer {token}; page token {EXAMPLE_ENV['FB_PAGE_TOKEN']}")
        except RuntimeError:
            logger.exception("request failed")
        logger.info("target %s", cfg.alerts.targets[0].get_secret_value())
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue() + repr(cfg) + str(cfg)
    for secret in secrets:
        assert secret not in output
    assert output.count("***") >= 4
    assert "RuntimeError" in output  # the trace itself is kept, only the secret is masked


def test_config_check_reports_an_unusable_alert_target(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts:\n  targets: ['${CHAT_URL}']\n")
    result = CliRunner().invoke(main, ["config", "check", "-c", str(bad)], env={"CHAT_URL": "nosuchscheme://tok3n-s3cret/x"})
    assert result.exit_code == 1
    assert "alerts" in result.output and "tok3n-s3cret" not in result.output


# ----------------------------------------------------------------------------- mistakes new users make

X_ENV = {"TOKEN": "AAAA-x-bearer-secret-0001"}


def x_section(extra: str, accounts: str = "[DefenceMinistry]") -> str:
    return f"watchers:\n  x:\n    bearer_token: ${{TOKEN}}\n    accounts: {accounts}\n{extra}"


def test_zero_interval_is_refused_and_the_platform_floor_applies():
    assert problems_of(x_section("    interval: 0s\n"), X_ENV) == [
        "cfg.yaml: line 5: watchers.x.interval: 0s is below 60s, the shortest interval allowed for this platform's public service"
    ]
    assert problems_of(x_section("    interval: 10s\n"), X_ENV)  # below X's floor
    assert parse_config(x_section("    interval: 60s\n"), environ=X_ENV).watchers.x.interval == 60
    # a proxy or test server of one's own may be polled faster, but never in a busy loop
    local = "    api_base: http://127.0.0.1:8080\n"
    assert parse_config(x_section(local + "    interval: 2s\n"), environ=X_ENV).watchers.x.interval == 2
    assert "below 1s" in problems_of(x_section(local + "    interval: 0s\n"), X_ENV)[0]


def test_duplicate_keys_are_reported_with_both_lines():
    text = x_section("    interval: 5m\n    interval: 10m\n")
    assert problems_of(text, X_ENV) == [
        "cfg.yaml: line 6: watchers.x.interval: duplicate key (already set at line 5; keep one)"
    ]


def test_an_enabled_watcher_without_accounts_is_refused():
    assert problems_of(x_section("", accounts="[]"), X_ENV) == [
        "cfg.yaml: line 4: watchers.x.accounts: an enabled watcher needs at least one account (or set enabled: false)"
    ]
    cfg = parse_config(x_section("    enabled: false\n", accounts="[]"), environ=X_ENV)
    assert cfg.watchers.enabled() == {}


def test_x_usernames_are_normalized_or_refused_clearly():
    cfg = parse_config(x_section("", accounts='["@DefenceMinistry", " mod_russia "]'), environ=X_ENV)
    assert cfg.watchers.x.accounts == ["DefenceMinistry", "mod_russia"]
    assert problems_of(x_section("", accounts='["https://x.com/DefenceMinistry"]'), X_ENV) == [
        'cfg.yaml: line 4: watchers.x.accounts: "https://x.com/DefenceMinistry" is not an X username '
        "(letters, digits and _ only, e.g. DefenceMinistry)"
    ]


def test_api_base_with_a_path_is_refused():
    assert problems_of(x_section("    api_base: https://api.twitter.com/2\n"), X_ENV) == [
        'cfg.yaml: line 5: watchers.x.api_base: "https://api.twitter.com/2" has a path; give scheme and host only '
        "(https://api.twitter.com): the watcher adds the API paths"
    ]


def test_feed_url_without_scheme_is_refused():
    text = "watchers:\n  rss:\n    accounts: [www.gov.example/press/feed.xml]\n"
    assert problems_of(text) == [
        'cfg.yaml: line 3: watchers.rss.accounts: "www.gov.example/press/feed.xml" is not a feed URL with scheme '
        "and host (e.g. https://www.gov.example/press/feed.xml)"
    ]


def test_config_check_gives_the_line_of_an_unusable_alert_target(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("log_level: info\nalerts:\n  targets:\n    - '${CHAT_URL}'\n")
    result = CliRunner().invoke(main, ["config", "check", "-c", str(bad)], env={"CHAT_URL": "nosuchscheme://tok3n-s3cret/x"})
    assert result.exit_code == 1
    assert f"{bad}: line 4: alerts.targets.0: apprise cannot use the URL" in result.output
    assert "tok3n-s3cret" not in result.output


def test_every_registered_platform_is_documented_in_readme_and_example():
    """Docs read the registry: a new watcher module without its README entry and example section fails here."""
    from watchers import registry

    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "config.example.yaml").read_text()
    base_fields = set(WatcherConfig.model_fields)
    for name, cls in registry().items():
        assert f"(`watchers.{name}`" in readme, name
        section = example.split(f"\n  {name}:\n", 1)
        assert len(section) == 2, f"config.example.yaml has no watchers.{name} section"
        body = section[1].split("\n\n", 1)[0]
        for field_name in set(cls.config_model.model_fields) - base_fields:
            assert f"{field_name}:" in body, f"watchers.{name}.{field_name} is not in config.example.yaml"
