"""The function's two static answers: its OpenAPI document and the page to try it in a browser.

Both are files of this package, read on first request (not at cold start). The page's inline
style and script are allowed by their sha256 in its Content-Security-Policy, which forbids
everything else: no other script, style, font, image or frame, and requests only to its own
origin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from lambda_handler.api import JSON_CONTENT_TYPE, Response

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
PAGE_FILE = Path(__file__).with_name("page.html")
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


@functools.cache
def openapi() -> Response:
    """GET /openapi.json: the API's contract, as written."""
    return Response(
        200, OPENAPI_FILE.read_text(encoding="utf-8"), {"Content-Type": JSON_CONTENT_TYPE}
    )


@functools.cache
def page() -> Response:
    """GET /: the try-it page, with a Content-Security-Policy that allows only itself."""
    html = PAGE_FILE.read_text(encoding="utf-8")
    headers = {
        "Content-Type": HTML_CONTENT_TYPE,
        "Content-Security-Policy": content_security_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(200, html, headers)


def content_security_policy(html: str) -> str:
    """No source but this origin for requests, and only the page's own inline script and style."""
    scripts, styles = (
        " ".join(
            f"'sha256-{_digest(block)}'"
            for block in re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        )
        for tag in ("script", "style")
    )
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _digest(block: str) -> str:
    return base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii")


ROUTES = {"/": page, "/openapi.json": openapi}
