"""Trusted timestamps end to end, against a local RFC 3161 TSA (``openssl ts -reply``, test CA made here):
archived files, raw post versions, post cards and deletion-log events get verified tokens in one batched
request; a TSA outage delays and a backlog catches up; ``afterimage verify`` names every tampered item; and
``openssl ts -verify`` accepts an exported token with the TSA's CA, as README documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scenario import build

from bot.archive import Archive
from bot.evidence import merkle
from bot.evidence.ledger import EvidenceLedger
from bot.evidence.stamper import Stamper, archive_files
from bot.evidence.tsa import TsaClient, load_roots, token_message_imprint
from bot.evidence.verify import verify_all
from tests.evidence.local_tsa import start_tsa
from tests.evidence.raw_versions import archive_raw_versions

ROOT = Path(__file__).resolve().parents[2]


def _setup(store, tmp_path, httpserver, batch_limit=None):
    scenario = build(store, tmp_path)
    tsa = start_tsa(httpserver, tmp_path / "pki")
    ledger = EvidenceLedger(tmp_path / "evidence")
    archive = Archive(scenario.archive_root, on_new=lambda f: ledger.enqueue_file(f.sha256, f.relpath))
    archive_raw_versions(store, archive)
    stamper = Stamper(ledger, TsaClient([tsa.url], tsa.pki["ca"]), store, archive)
    return scenario, tsa, ledger, archive, stamper


def _config(tmp_path, tsa, store_url: str) -> Path:
    cfg = {"data_dir": str(tmp_path), "archive_dir": str(tmp_path / "archive"), "store": store_url,
           "evidence": {"tsa_urls": [tsa.url], "tsa_ca_file": str(tsa.pki["ca"]), "dir": str(tmp_path / "evidence")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_files_versions_cards_and_events_get_verified_tokens_in_one_request(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    assert stamper.sweep_archive() == 4  # the media archived before the hook existed (3 posts + the known frame)

    report = stamper.run()

    events = store.list_events()
    assert {e.kind for e in events} >= {"deleted", "edited", "restored", "author_suspended"}
    chain = ledger.chain()
    assert [e["record"]["event_id"] for e in chain] == [e.id for e in events]
    assert report.chained == len(events) and report.error is None
    assert (report.batches, tsa.requests) == (1, 1)  # one request for the whole minute's hashes
    proofs = ledger.proofs()
    files = archive_files(scenario.archive_root)
    assert {p.suffix for p in files} == {".jpg", ".json", ".png"}  # media, raw versions, post cards
    for path in files:
        assert path.name.split(".")[0] in proofs, f"{path.name} has no timestamp"
    for entry in chain:
        assert proofs[entry["hash"]].ref == f"chain:{entry['seq']}"
    deletion = next(e for e in chain if e["kind"] == "deleted")
    assert deletion["record"]["cards"] and proofs[deletion["record"]["cards"][0]["sha256"]]
    # each item's path leads to the root the verified token covers
    roots = load_roots(tsa.pki["ca"])
    proof = proofs[deletion["hash"]]
    root = merkle.root_from_path(bytes.fromhex(proof.sha256), merkle.path_from_json(proof.path))
    assert root.hex() == proof.root
    assert token_message_imprint(proof.token_file.read_bytes()) == __import__("hashlib").sha256(root).digest()
    assert proof.tsa == "CN=Test TSA,O=afterimage tests" and proof.gen_time

    result = verify_all(scenario.archive_root, ledger, roots)
    assert result.ok, result.problems
    assert result.counts["timestamped items"] == len(files) + len(chain)
    assert not ledger.queued()

    # nothing new: no request; a new file: one more small batch
    stamper.run()
    assert tsa.requests == 1
    archive.put(b'{"late": true}', "json")
    assert stamper.run().stamped == 1 and tsa.requests == 2


def test_a_tsa_outage_delays_timestamps_and_the_backlog_catches_up(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    backup = start_tsa(httpserver, tmp_path / "pki-backup", path="/backup", cn="Backup TSA")
    tsa.fail = True
    stamper.sweep_archive()
    report = stamper.run()
    assert report.stamped == 0 and "HTTP 503" in (report.error or "")
    assert report.chained > 0  # the chain does not wait for the TSA
    waiting = len(ledger.queued())
    assert waiting == report.waiting > 0
    assert not ledger.proofs()
    result = verify_all(scenario.archive_root, ledger, load_roots(tsa.pki["ca"]))
    assert result.ok and any("wait for a timestamp" in n for n in result.notes)

    tsa.fail = False
    report = stamper.run()
    assert report.error is None and report.stamped == waiting and not ledger.queued()
    assert tsa.requests == 2  # one refused, one for the whole backlog

    # a second TSA takes over when the first is down; its token verifies against its own CA
    tsa.fail = True
    ca_bundle = tmp_path / "both.pem"
    ca_bundle.write_bytes(tsa.pki["ca"].read_bytes() + backup.pki["ca"].read_bytes())
    stamper.client = TsaClient([tsa.url, backup.url], ca_bundle)
    archive.put(b'{"after": "outage"}', "json")
    assert stamper.run().stamped == 1 and backup.requests == 1


def test_status_and_metrics_show_the_timestamp_queue_and_the_tsa_error_without_its_password(store, tmp_path, httpserver):
    from bot.models import utcnow
    from bot.status import render_prometheus, take_snapshot

    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    secret_url = tsa.url.replace("http://", "http://desk:tsa-pass-4711@")  # a TSA account in the URL
    stamper.client = TsaClient([secret_url], tsa.pki["ca"])
    config = _config(tmp_path, tsa, store.url)
    cfg = yaml.safe_load(config.read_text())
    cfg["evidence"]["tsa_urls"] = [secret_url]
    config.write_text(yaml.safe_dump(cfg))
    tsa.fail = True
    stamper.sweep_archive()
    report = stamper.run()
    waiting = report.waiting
    assert waiting > 0 and "tsa-pass-4711" not in (report.error or "")

    out = _cli("status", "-c", str(config))
    assert out.returncode == 0, out.stderr
    [line] = [line for line in out.stdout.splitlines() if line.startswith("trusted timestamps:")]
    host = tsa.url.split("//")[1].split("/")[0]
    assert line.startswith(f"trusted timestamps: {waiting} item(s) waiting, oldest queued ")
    assert "; TSA failing since " in line and f"http://desk:***@{host}/tsa: HTTP 503" in line
    assert "tsa-pass-4711" not in out.stdout + out.stderr

    metrics = render_prometheus(take_snapshot(store, {}, utcnow(), evidence=ledger))
    assert f"afterimage_timestamp_queue_items {waiting}" in metrics
    assert 'afterimage_timestamp_tsa_failing{error="http://desk:***@' in metrics and "tsa-pass-4711" not in metrics
    oldest = float(next(m for m in metrics.splitlines() if m.startswith("afterimage_timestamp_queue_oldest_seconds ")).split()[1])
    assert 0 <= oldest < 120

    tsa.fail = False  # the TSA is back: the backlog goes out and status says it recovered
    assert stamper.run().waiting == 0
    line = next(line for line in _cli("status", "-c", str(config)).stdout.splitlines() if line.startswith("trusted timestamps:"))
    assert line.startswith("trusted timestamps: 0 item(s) waiting; last TSA error ") and "(recovered " in line
    metrics = render_prometheus(take_snapshot(store, {}, utcnow(), evidence=ledger))
    assert "afterimage_timestamp_tsa_failing 0" in metrics and "afterimage_timestamp_queue_items 0" in metrics


def test_a_token_that_does_not_verify_is_refused_and_nothing_is_kept(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    other = start_tsa(httpserver, tmp_path / "pki-other", path="/other", cn="Unknown TSA")
    stamper.client = TsaClient([other.url], tsa.pki["ca"])  # its tokens do not chain to the configured CA
    report = stamper.run()
    assert report.stamped == 0 and "does not verify" in (report.error or "")
    assert not list(ledger.batches.glob("*")) if ledger.batches.exists() else True
    assert ledger.queued()


def test_verify_names_the_changed_file_the_edited_entry_and_the_wrong_token(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    stamper.sweep_archive()
    stamper.run()
    config = _config(tmp_path, tsa, store.url)
    ok = _cli("verify", "-c", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: everything holds" in ok.stdout

    # 1. a file changed after it was archived and timestamped
    changed = scenario.archive_root / scenario.paths["img101"]
    changed.write_bytes(changed.read_bytes() + b"retouched")
    # 2. a chain entry edited (the deletion's detection time moved)
    lines = ledger.chain_file.read_text().splitlines()
    seq, entry = next((n, json.loads(line)) for n, line in enumerate(lines) if json.loads(line)["kind"] == "deleted")
    entry["record"]["detected_at"] = "2026-01-01T00:00:00Z"
    lines[seq] = json.dumps(entry, sort_keys=True)
    ledger.chain_file.write_text("\n".join(lines) + "\n")
    # 3. a batch's token swapped for a (valid) token of another hash
    meta = next(ledger.batches.glob("*.json"))
    stray = TsaClient([tsa.url], tsa.pki["ca"]).stamp(b"\x01" * 32)[1]
    meta.with_suffix(".tsr").write_bytes(stray)

    bad = _cli("verify", "-c", str(config))
    assert bad.returncode == 1
    out = bad.stdout
    assert f"FAIL archive file {scenario.paths['img101']}: content changed after archiving" in out
    assert f"FAIL archive file {scenario.paths['img101']}: differs from the version timestamped" in out
    r = entry["record"]
    assert f"FAIL chain entry {seq} (deleted {r['platform']}/{r['account']} post {r['post_id']}): content does not match its hash" in out
    assert f"FAIL timestamp batch {meta.stem[:16]}…: token {meta.stem}.tsr is for another hash" in out
    # nothing else is blamed: the other files and entries still hold
    assert out.count("FAIL ") == 4, out


def test_verify_catches_a_removed_entry_and_an_entry_rehashed_to_hide_an_edit(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    stamper.run()
    from bot.evidence.ledger import entry_hash

    lines = ledger.chain_file.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["record"]["post_id"] = "999"
    entry["hash"] = entry_hash(entry)  # a careful forger recomputes the hash...
    lines[1] = json.dumps(entry)
    del lines[3]
    ledger.chain_file.write_text("\n".join(lines) + "\n")
    problems = verify_all(scenario.archive_root, ledger, load_roots(tsa.pki["ca"])).problems
    assert any(p.startswith("chain entry 2 ") and "prev does not match" in p for p in problems)  # ...the next link breaks
    assert "chain entry 1: differs from the entry timestamped" in " ".join(problems)  # ...and the token still says
    assert any(p.startswith("chain entry 4 ") and "out of place" in p for p in problems)


def test_verify_catches_entries_cut_from_the_end_of_the_chain(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    stamper.run()
    lines = ledger.chain_file.read_text().splitlines()
    ledger.chain_file.write_text("\n".join(lines[:-1]) + "\n")  # every remaining link still holds
    result = verify_all(scenario.archive_root, ledger, load_roots(tsa.pki["ca"]), store=store)
    assert result.problems == [f"chain entry {len(lines) - 1}: timestamped but missing from the chain (entries were removed)"]
    assert any("1 event(s) of the deletion log are not in the chain yet" in n for n in result.notes)


def test_openssl_ts_verify_accepts_an_exported_token_with_the_tsa_ca(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    stamper.sweep_archive()
    stamper.run()
    config = _config(tmp_path, tsa, store.url)
    item = scenario.paths["img100"]
    done = _cli("proof", "-c", str(config), item, "-o", str(tmp_path / "proof"))
    assert done.returncode == 0, done.stderr
    command = next(line.strip() for line in done.stdout.splitlines() if line.strip().startswith("openssl ts -verify"))
    # README's command, run as printed
    checked = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stdout + checked.stderr
    # and the root in the proof follows from the file's own hash
    proof = json.loads(next((tmp_path / "proof").glob("*.proof.json")).read_text())
    digest = bytes.fromhex(Path(item).name.split(".")[0])
    assert merkle.root_from_path(digest, merkle.path_from_json(proof["merkle_path"])).hex() == proof["merkle_root"]
    # a token with another CA is refused by openssl too
    other = start_tsa(httpserver, tmp_path / "pki-other", path="/o")
    refused = subprocess.run(command.replace(str(tsa.pki["ca"]), str(other.pki["ca"])), shell=True, capture_output=True, text=True)
    assert refused.returncode != 0


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_merkle_paths_lead_to_the_root_for_every_leaf(n):
    leaves = [bytes([i]) * 32 for i in range(n)]
    root = merkle.root(leaves)
    one_pass_root, paths = merkle.root_and_paths(leaves)
    assert one_pass_root == root
    for i, leaf in enumerate(leaves):
        assert merkle.audit_path(leaves, i) == paths[i]
        assert merkle.root_from_path(leaf, merkle.audit_path(leaves, i)) == root
        assert merkle.root_from_path(b"\xff" * 32, merkle.audit_path(leaves, i)) != root


def test_the_daemon_queues_what_it_archives_and_its_evidence_job_stamps_it(store, tmp_path, httpserver):
    from bot.config import parse_config
    from bot.daemon import Daemon

    tsa = start_tsa(httpserver, tmp_path / "pki")
    old = Archive(tmp_path / "archive").put(b"archived before timestamps were configured", "json")
    cfg = parse_config(yaml.safe_dump({"data_dir": str(tmp_path), "evidence": {"tsa_urls": [tsa.url], "tsa_ca_file": str(tsa.pki["ca"])}}))
    daemon = Daemon(cfg, store=store, watchers={})
    new = daemon.archive.put(b"\x89PNG new media", "png")
    assert [i.sha256 for i in daemon.evidence.queued()] == [new.sha256]  # queued as it was archived
    assert "evidence" in daemon.lock_names()
    daemon.run_evidence()
    proofs = EvidenceLedger(tmp_path / "evidence").proofs()
    assert {old.sha256, new.sha256} <= set(proofs)  # the first run also queued what was there before
    assert tsa.requests == 1
    assert any(job.id == "evidence" for job in daemon.build_scheduler().get_jobs())


def test_exports_are_recorded_and_a_changed_export_is_caught(store, tmp_path, httpserver):
    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    config = _config(tmp_path, tsa, store.url)
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()  # an export never creates its folder
    done = _cli("deletions", "export", "-c", str(config), "--format", "html", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert [e["manifest"] for e in ledger.exports()] == [str(out.with_name("report.html.manifest.json"))]
    stamper.run()
    assert _cli("verify", "-c", str(config)).returncode == 0
    out.write_text(out.read_text().replace("Deletion log", "Deletion log (abridged)"))
    bad = _cli("verify", "-c", str(config))
    assert bad.returncode == 1
    assert f"FAIL export {out}: sha256" in bad.stdout and "differs from the manifest" in bad.stdout


def test_a_failing_timestamp_queue_never_fails_archiving(tmp_path, caplog):
    def full_disk(_):
        raise OSError(28, "No space left on device")

    archive = Archive(tmp_path / "archive", on_new=full_disk)
    stored = archive.put(b"media bytes", "jpg")
    assert stored.created and archive.verify(stored.relpath)
    assert "could not queue it for a timestamp" in caplog.text
    # the evidence job's start-up sweep queues what the hook missed
    ledger = EvidenceLedger(tmp_path / "evidence")
    assert Stamper(ledger, None, None, archive).sweep_archive() == 1  # type: ignore[arg-type]
    assert [i.ref for i in ledger.queued()] == [stored.relpath]


def test_config_names_a_tsa_url_that_is_not_one(tmp_path):
    from bot.config import parse_config
    from bot.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config("evidence:\n  tsa_urls: [freetsa.org/tsr]\n")
    assert any("evidence.tsa_urls" in p and "freetsa.org/tsr" in p for p in e.value.problems), e.value.problems


def test_a_backlog_larger_than_a_batch_goes_out_in_several_requests(store, tmp_path, httpserver, monkeypatch):
    from bot.evidence import stamper as stamper_module

    scenario, tsa, ledger, archive, stamper = _setup(store, tmp_path, httpserver)
    monkeypatch.setattr(stamper_module, "MAX_BATCH", 4)
    stamper.sweep_archive()
    report = stamper.run()
    everything = len(archive_files(scenario.archive_root)) + len(ledger.chain())  # files, cards and log entries
    assert report.stamped == everything and report.batches == tsa.requests == -(-everything // 4)
    assert verify_all(scenario.archive_root, ledger, load_roots(tsa.pki["ca"])).ok
