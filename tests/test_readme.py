"""Every ``afterimage`` command README.md shows is exercised: run here in a sandbox, or (the long-running
ones) by the end-to-end test named in ``ELSEWHERE``. A command added to README without either fails this."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.demo.scene import trailer_frames

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: commands that run for a long time or need servers: the test that runs them as README shows
ELSEWHERE = {
    "run": ("tests/e2e/test_daemon.py", '"run", "-c"'),
    "demo": ("tests/e2e/test_demo.py", '["demo", "--out"'),
    "poll": ("tests/e2e/test_poll_once.py", '"poll", "--once"'),
    "web": ("tests/e2e/test_web_console.py", '"web", "-c"'),
    "users": ("tests/e2e/test_web_console.py", '"users", "add"'),
    "proof": ("tests/evidence/test_timestamps.py", '_cli("proof"'),
}
#: exit codes a command may end with in the sandbox (check: 2 when an input, here a URL, cannot be read;
#: alerts test: 1, the example's chat URL points at a closed port here)
EXIT_CODES = {"check": {0, 2}, "alerts test": {1}}


def readme_commands() -> list[str]:
    """``afterimage ...`` lines of README's shell blocks (comments after the command removed)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("afterimage "):
                commands.append(line)
            elif " && afterimage " in line:  # the quick start: install && afterimage ...
                commands.append("afterimage " + line.split(" && afterimage ", 1)[1])
    return commands


def test_readme_shows_commands():
    assert len(readme_commands()) >= 10


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder holding the files README's examples name, with the example config as afterimage.yaml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    monkeypatch.setenv("AFTERIMAGE_DATA", str(tmp_path / "data"))
    for name, value in {
        "X_BEARER_TOKEN": "readme-x-token",
        "FB_PAGE_TOKEN": "readme-fb-token",
        "SLACK_WEBHOOK_URL": "json://127.0.0.1:9/hook",
    }.items():
        monkeypatch.setenv(name, value)
    config = (ROOT / "config.example.yaml").read_text().replace("data_dir: ./afterimage-data", f"data_dir: {tmp_path / 'data'}")
    (tmp_path / "afterimage.yaml").write_text(config)
    frames = trailer_frames()
    (tmp_path / "trailers").mkdir()
    frames[10].save(tmp_path / "trailers" / "frame-10.png")
    frames[60].convert("RGB").save(tmp_path / "stock-photo.jpg", quality=90)
    frames[30].convert("RGB").crop((100, 50, 800, 500)).save(tmp_path / "suspicious.jpg", quality=80)
    (tmp_path / "pdq-hashes.csv").write_text("signal_type,signal,label,source\npdq," + "f0" * 32 + ",a debunked photo,https://example.org/d\n")
    return tmp_path


def test_every_readme_command_runs(sandbox):
    runner = CliRunner()
    ran = set()
    for command in readme_commands():
        args = shlex.split(command)[1:]
        name = args[0]
        if name in ELSEWHERE:
            path, needle = ELSEWHERE[name]
            assert needle in (ROOT / path).read_text(), f"{command!r}: {path} does not run it"
            continue
        if args[:2] in (["known", "remove"], ["known", "show"]):  # README's id is an example: use one that exists
            listing = runner.invoke(main, ["known", "list"])
            args[2] = re.search(r"\b([0-9a-f]{12})\b", listing.output).group(1)
        result = runner.invoke(main, args)
        codes = EXIT_CODES.get(" ".join(args[:2]), EXIT_CODES.get(name, {0}))
        if args[:2] == ["known", "add"] and args[2].startswith("https://"):
            # no internet here: the URL form fails to download (tests/test_known_library.py serves one locally)
            assert result.exit_code == 1 and "1 failed" in result.output, result.output
            ran.add("known add URL")
            continue
        assert result.exit_code in codes, f"{command!r} -> {result.exit_code}:\n{result.output}"
        ran.add(" ".join(args[:2]))
    assert {"config check", "known add", "known add URL", "known import", "known export", "known list", "known show",
            "known remove", "deletions export"} <= ran
    assert {"alerts test", "alerts parked", "alerts retry"} <= ran
    assert (sandbox / "known.csv").read_text().startswith("signal_type,signal,label,source")
    assert (sandbox / "report.html").exists() and (sandbox / "deletions.csv.manifest.json").exists()


def test_quick_start_is_install_then_demo():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
    assert [b.strip() for b in blocks] == ["pip install -e '.[dev]' && afterimage demo", "python -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q --disable-pip-version-check -e '.[dev]'" in ci and ci.rstrip().endswith("python -m pytest -q")
