"""The data flows one way (watcher -> store -> archive -> hashing -> matching -> cases/alerts; re-checks ->
deletion log -> exports), and so do the imports: a stage never imports one downstream of it. This test reads
every module's imports (module level and inside functions) and fails naming the file and the import that
runs against the flow. Shared foundations (models, errors, redaction, config types, networking) may be
imported by every stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: what every stage may import: plain data types and helpers with no stage of their own
FOUNDATION = ("bot.models", "bot.errors", "bot.redact", "bot.config_base", "bot.net", "bot.files")

#: package -> the only afterimage modules it may import (besides itself and the foundation)
ALLOWED: dict[str, tuple[str, ...]] = {
    # watchers read platforms; they know nothing of what happens to a post afterwards
    "watchers": (),
    # networking is below every stage
    "bot.net": (),
    # the store keeps records; it runs no stage
    "bot.store": (),
    # downloading and sampling media
    "bot.media": (),
    # hashing reads decoded images (and a signal's thresholds from the matching config); matching is
    # downstream of it
    "bot.hashing": ("bot.media", "bot.config"),
    # matching reads the known-media store and hashes
    "bot.matching": ("bot.store", "bot.archive", "bot.hashing", "bot.media", "bot.config"),
}

#: package -> modules it must never import (downstream stages)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bot.deletions": ("bot.export", "bot.web", "bot.commands", "bot.pipeline", "bot.daemon"),
    "bot.export": ("bot.web", "bot.commands", "bot.pipeline", "bot.daemon"),
    "bot.alerts": ("bot.web", "bot.commands", "bot.pipeline", "bot.daemon"),
    "bot.evidence": ("bot.web", "bot.commands", "bot.pipeline", "bot.daemon"),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder in ("bot", "watchers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] in ("bot", "watchers")]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations() -> list[str]:
    bad = []
    for module, path in _modules():
        where = path.relative_to(ROOT)
        for package, allowed in ALLOWED.items():
            if _within(module, (package,)):
                for line, name in _imports(path, module):
                    if not _within(name, (package, *FOUNDATION, *allowed)):
                        bad.append(f"{where}:{line}: {module} imports {name} ({package} may not)")
        for package, forbidden in FORBIDDEN.items():
            if _within(module, (package,)):
                for line, name in _imports(path, module):
                    if _within(name, forbidden):
                        bad.append(f"{where}:{line}: {module} imports {name}, downstream of {package}")
    return bad


def test_no_import_runs_against_the_flow() -> None:
    assert _violations() == []


def test_the_rule_reads_module_and_function_level_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function counts, a relative one is resolved."""
    sample = tmp_path / "sample.py"
    sample.write_text("import bot.models\n\ndef f():\n    from bot.matching.matcher import Matcher\n    from . import index\n")
    assert _imports(sample, "bot.hashing.sample") == [
        (1, "bot.models"),
        (4, "bot.matching.matcher"),
        (5, "bot.hashing"),
    ]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_layer_exists(package: str) -> None:
    """A renamed package would silently make its rule check nothing."""
    assert any(_within(module, (package,)) for module, _ in _modules()), package
