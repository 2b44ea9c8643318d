"""Exports of the deletion log: CSV, JSON Lines and a self-contained HTML report, each with a checksum
manifest. All three are written from the same rows (:func:`bot.export.rows.deletion_log_rows`), whose
columns are documented once, in :data:`bot.export.rows.COLUMNS`. Exports never write to the store."""

from bot.export.rows import COLUMNS, ExportFilters, ReadOnlyStore, deletion_log_rows
from bot.export.writers import FORMATS, export_to_file, render, render_csv, render_jsonl, verify_manifest

__all__ = [
    "COLUMNS",
    "FORMATS",
    "ExportFilters",
    "ReadOnlyStore",
    "deletion_log_rows",
    "export_to_file",
    "render",
    "render_csv",
    "render_jsonl",
    "verify_manifest",
]
