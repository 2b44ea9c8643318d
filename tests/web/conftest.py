"""The console under Flask's test client: an app on a fresh SQLite store with a reviewer and a viewer."""

from __future__ import annotations

from typing import Any

from bot.config import parse_config
from bot.users import add_user
from bot.web import create_app

URL = "https://review.example.org"


def make_app(tmp_path: Any, csrf: bool = False) -> tuple[Any, Any]:
    """(app, its store) with users ``ana`` (reviewer) and ``vic`` (viewer); CSRF checks off unless ``csrf``."""
    config = parse_config(f"data_dir: {tmp_path}\nwatchers: {{}}\nweb: {{base_url: '{URL}'}}\n")
    app = create_app(config)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=csrf)
    store = app.extensions["afterimage"]["store"]
    add_user(store, "ana", "reviewer", "ana-password-1")
    add_user(store, "vic", "viewer", "vic-password-1")
    return app, store
