"""The dashboard: one dependency-free HTML page polling the JSON endpoints.

The page itself is public (it holds no data); the data it fetches (``/topics``...) needs the
API key when keys are configured: the page asks for it, keeps it in the tab's
``sessionStorage`` and sends it as ``X-API-Key``. A strict Content-Security-Policy allows
only the page's own inline script (by hash) and requests to this origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@cache
def dashboard_page() -> tuple[str, str]:
    """The page's HTML and its Content-Security-Policy (read once, on first request)."""
    html = resources.files("queuekit.api").joinpath("static/dashboard.html").read_text("utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _SCRIPT.findall(html)
    )
    policy = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, policy


def dashboard_router() -> APIRouter:
    """``GET /`` and ``GET /dashboard``: the page."""
    router = APIRouter(tags=["dashboard"])

    @router.get("/", include_in_schema=False)
    @router.get("/dashboard", response_class=HTMLResponse, summary="The dashboard page")
    async def dashboard() -> HTMLResponse:
        html, policy = dashboard_page()
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    return router
