"""``afterimage verify`` (does the evidence still hold?) and ``afterimage proof`` (one item's timestamp, as
files ``openssl ts -verify`` checks without afterimage)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.daemon_cmds import load_or_exit


def _open_store_or_none(cfg):
    """The store, to compare its deletion log with the chain; without it the files are still checked."""
    from bot.store import open_store

    if cfg.store is None and not (cfg.data_dir / "state.db").exists():
        return None  # never create an empty database just to verify
    try:
        return open_store(cfg.store_url)
    except Exception as e:  # an unreachable store must not stop checking the files
        click.echo(f"warning: cannot open the store ({e}); the deletion log is not compared with the chain", err=True)
        return None


@click.command()
@CONFIG_OPTION
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM CA certificates of the TSAs (default: evidence.tsa_ca_file, else the system's).")
@click.option("--manifest", "manifests", multiple=True, type=click.Path(dir_okay=False),
              help="Also check this export manifest (repeatable; exports written with -o are checked anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(config_path, ca_file, manifests, as_json) -> None:
    """Re-hash the archive and check the hash chain, every timestamp token and every export manifest.

    Prints each item that does not hold (which file, which chain entry, which batch) and exits 1 if any."""
    from bot.evidence.ledger import EvidenceLedger
    from bot.evidence.tsa import TsaError, load_roots
    from bot.evidence.verify import to_json, verify_all

    cfg = load_or_exit(config_path)
    if not cfg.archive_path.is_dir() and not cfg.evidence_path.is_dir():
        click.echo(f"nothing to verify: no archive at {cfg.archive_path} and no evidence at {cfg.evidence_path}", err=True)
        sys.exit(1)
    try:
        roots = load_roots(ca_file or cfg.evidence.tsa_ca_file)
    except TsaError as e:
        click.echo(f"warning: {e}; token signatures are not checked", err=True)
        roots = None
    store = _open_store_or_none(cfg)
    try:
        result = verify_all(cfg.archive_path, EvidenceLedger(cfg.evidence_path), roots, [Path(m) for m in manifests], store)
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(to_json(result))
    else:
        for name, n in result.counts.items():
            click.echo(f"checked {n} {name}")
        for note in result.notes:
            click.echo(f"note: {note}")
        for problem in result.problems:
            click.echo(f"FAIL {problem}")
        click.echo("OK: everything holds" if result.ok else f"{len(result.problems)} problem(s) found")
    sys.exit(0 if result.ok else 1)


@click.command()
@CONFIG_OPTION
@click.argument("item")
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True, help="Folder to write the proof files to.")
def proof(config_path, item, output) -> None:
    """Write the timestamp proof of ITEM (an archived file's path or SHA-256, or chain:N) to a folder.

    Writes ITEM.tsr (the TSA's token), ITEM.root (the 32-byte Merkle root the token covers) and
    ITEM.proof.json (the item's hash and Merkle path), and prints the openssl command that checks them."""
    from bot.evidence.ledger import EvidenceLedger

    cfg = load_or_exit(config_path)
    ledger = EvidenceLedger(cfg.evidence_path)
    sha = item.lower()
    if item.startswith("chain:"):
        seq = item[6:]
        sha = next((str(e.get("hash")) for e in ledger.chain() if str(e.get("seq")) == seq), "")
    elif "/" in item or "." in item:
        sha = Path(item).name.split(".", 1)[0].lower()
    found = ledger.proofs([sha]).get(sha)
    if found is None:
        click.echo(f"{item}: no timestamp yet (not archived, or still waiting in the queue)", err=True)
        sys.exit(1)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    name = sha[:16]
    token, root_file, proof_file = out / f"{name}.tsr", out / f"{name}.root", out / f"{name}.proof.json"
    token.write_bytes(found.token_file.read_bytes())
    root_file.write_bytes(bytes.fromhex(found.root))
    proof_file.write_text(json.dumps({
        "item": {"kind": found.kind, "ref": found.ref, "sha256": found.sha256},
        "merkle_root": found.root,
        "merkle_path": found.path,
        "tree": "RFC 6962: leaf = SHA-256(0x00 || item digest); node = SHA-256(0x01 || left || right); "
                "path steps L:<hex> (sibling on the left) or R:<hex>, from the leaf up",
        "timestamp": {"gen_time": found.gen_time, "tsa": found.tsa, "tsa_url": found.tsa_url},
    }, indent=2) + "\n")
    ca = cfg.evidence.tsa_ca_file or "TSA-CA.pem"
    click.echo(f"{found.kind} {found.ref}: timestamped {found.gen_time} by {found.tsa}")
    click.echo(f"wrote {token}, {root_file}, {proof_file}")
    click.echo("check the token with:")
    click.echo(f"  openssl ts -verify -data {shlex.quote(str(root_file))} -in {shlex.quote(str(token))} -CAfile {shlex.quote(str(ca))}")
    click.echo(f"the root follows from the item's sha256 {found.sha256} and the path in {proof_file.name}")
