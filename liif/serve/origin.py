"""Only the viewer's own page may use its API: a request sent by another site is refused (403).

Any page open in the same browser can send requests to http://127.0.0.1:8000/: a form or `fetch`
POST to /api/upload (which evicts the user's own uploads), an <img> aimed at /api/render (renders
that hold the render slots). The browser does not let that page read the answers, but the request
alone does the harm. Every /api/ request passes three checks; each one stops today's browsers, the
token also older ones and anything that strips the headers:

1. `Sec-Fetch-Site` (Fetch Metadata, set by the browser, never by a page), when present, must be
   `same-origin`. `same-site` is refused too: a page on another port of 127.0.0.1 is the same site.
2. `Origin` (sent with every POST and every cross-origin fetch), when present, must be this server's
   own, `http://` + the Host header (already one of the allowed hosts, TrustedHostMiddleware);
   `null` (a sandboxed frame, a data: URL) is refused.
3. The header `X-LIIF-Token` must hold the token made when the app is created. The page carries it
   (a meta tag filled in when it is served; viewer.js sends it back). Another site can neither read
   the page (the same-origin policy) nor add a custom header to a cross-origin request without a
   CORS preflight, which this server never grants. A cookie would not do: cookies are shared by
   every port of a host, and a SameSite cookie is sent with same-site requests.

A script on this machine (trusted: docs/reliability.md) reads the token from the page like the
browser does (`page_token`).
"""
import hmac
import re
import secrets

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

TOKEN_HEADER = "X-LIIF-Token"
PLACEHOLDER = "__LIIF_TOKEN__"  # in static/index.html, replaced by the token when the page is served
_META = re.compile(r'<meta name="liif-token" content="([A-Za-z0-9_-]+)">')


class Refused(Exception):
    """A request that another site may have sent: HTTP 403."""
    status = 403


def new_token():
    return secrets.token_urlsafe(32)


def page_token(html):
    """The token of a viewer page's HTML (for scripts that use the API as the page does)."""
    match = _META.search(html)
    return match.group(1) if match else None


def check(headers, token):
    """Raise Refused unless `headers` (a request's) come from the viewer's own page."""
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise Refused(f"refused: a request from another site (Sec-Fetch-Site: {site[:40]}); "
                      "only the viewer's own page may use its API")
    origin, host = headers.get("origin"), headers.get("host", "")
    if origin is not None and origin != f"http://{host}":
        raise Refused(f"refused: a request from another origin ({origin[:100]}); "
                      "only the viewer's own page may use its API")
    sent = headers.get(TOKEN_HEADER.lower(), "")
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Refused(f"refused: {'a wrong' if sent else 'no'} {TOKEN_HEADER} header; the viewer's page sends it "
                      "(open the page; a script reads it from the page's liif-token meta tag)")


class SameOriginOnly:
    """ASGI middleware: `check` on every request under /api/. It answers the refusal itself (a
    middleware's exception would bypass the app's exception handlers and become a 500)."""

    def __init__(self, app, token):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            try:
                check(Headers(scope=scope), self.token)
            except Refused as e:
                await JSONResponse({"error": str(e)}, status_code=e.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
