from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deletions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

from store_fixtures import open_store, store  # noqa: E402,F401  (fixtures)
