"""The page for people at /ui/: the history, the active model and its monitoring, read from the API.

Static files of the package (api/static/ui/), shipped in the wheel: the page is plain HTML, its
script reads the same JSON endpoints any client reads (nothing written; where reading needs a reader
token, the one it is given at sign-in, kept in the tab's sessionStorage) and draws its charts as SVG,
so it runs under a strict Content-Security-Policy (security.UI_POLICY). The page and its files are
open (access.PUBLIC): it holds no data.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app

STATIC_FOLDER = Path(__file__).parent / "static" / "ui"
PAGE_ENDPOINT = "ui.page"

blp = Blueprint("ui", __name__, url_prefix="/ui", static_folder=STATIC_FOLDER, static_url_path="/static")


@blp.get("/")
def page() -> Response:
    """Serves the page; everything it shows, its script fetches from the API."""
    return current_app.response_class((STATIC_FOLDER / "index.html").read_bytes(), mimetype="text/html")
